"""Reading a MODEL_DIR written by `python -m t5x.train` (gin/t5x/*.gin): what `jaxrec eval` needs.

    MODEL_DIR/config.gin            t5x's operative gin config (macros and bindings as text)
    MODEL_DIR/checkpoint_N/state/   Orbax PyTree {'state': {...}, 'target': params}

The network's shape comes from the checkpoint's parameters (`config_from_params`); what shapes
cannot tell (activation dtype, activations, tied logits, relative-attention distance, epsilon)
from the `T5Config` bindings in config.gin, with `%MACRO` references resolved. The task name and
feature lengths come from the MIXTURE_OR_TASK_NAME / TASK_FEATURE_LENGTHS macros. Parsing is
textual (literal values only), so reading a MODEL_DIR needs neither t5x nor gin's registry.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import os
import re
from typing import Any

CONFIG_FILE = "config.gin"
_CHECKPOINT = re.compile(r"checkpoint_(\d+)")
_MACRO = re.compile(r"^([A-Z_][A-Z0-9_]*)\s*=\s*(.+)$")
SHAPE_FIELDS = (
    "vocab_size",
    "emb_dim",
    "num_heads",
    "num_encoder_layers",
    "num_decoder_layers",
    "head_dim",
    "mlp_dim",
    "logits_via_embedding",
    "relative_attention_num_buckets",
)
_T5CONFIG = re.compile(r"^(?:[\w.]+\.)?T5Config\.(\w+)\s*=\s*(.+)$")


def checkpoint_steps(model_dir: str) -> list[int]:
    """Steps of the `checkpoint_N` directories in `model_dir` (ascending)."""
    from tensorflow.io import gfile  # local paths and gs:// alike

    if not gfile.isdir(model_dir):
        return []
    names = (d.rstrip("/") for d in gfile.listdir(model_dir))
    return sorted(int(m.group(1)) for n in names if (m := _CHECKPOINT.fullmatch(n)))


def is_t5x_model_dir(model_dir: str) -> bool:
    """True when `model_dir` holds t5x's config.gin and at least one `checkpoint_N`."""
    from tensorflow.io import gfile

    return gfile.exists(os.path.join(model_dir, CONFIG_FILE)) and bool(checkpoint_steps(model_dir))


def _logical_lines(text: str) -> list[str]:
    """gin text -> one string per statement (continuations joined, comments dropped)."""
    lines, current = [], ""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if current.strip():
            lines.append(current.strip())
        current = ""
    return lines


def _literal(value: str, macros: dict[str, str], depth: int = 0) -> Any:
    """A gin value as Python; `%MACRO` resolved; raises ValueError for references (`@fn()`)."""
    value = value.strip()
    if value.startswith("%") and depth < 10:
        name = value[1:]
        if name not in macros:
            raise ValueError(f"undefined macro {name}")
        return _literal(macros[name], macros, depth + 1)
    return ast.literal_eval(value)


def read_gin_config(text: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(literal macros, literal `T5Config` bindings) of an operative gin config."""
    raw_macros, raw_fields = {}, {}
    for line in _logical_lines(text):
        if m := _T5CONFIG.match(line):
            raw_fields[m.group(1)] = m.group(2)
        elif m := _MACRO.match(line):
            raw_macros[m.group(1)] = m.group(2)
    macros, fields = {}, {}
    for store, raw in ((macros, raw_macros), (fields, raw_fields)):
        for name, value in raw.items():
            # Configurable references (VOCAB_SIZE = @padded_vocab_size()) are skipped.
            with contextlib.suppress(ValueError, SyntaxError):
                store[name] = _literal(value, raw_macros)
    return macros, fields


def read_config_file(model_dir: str) -> tuple[dict[str, Any], dict[str, Any]]:
    from tensorflow.io import gfile

    with gfile.GFile(os.path.join(model_dir, CONFIG_FILE), "r") as f:
        return read_gin_config(f.read())


def model_config(params: Any, gin_fields: dict[str, Any], overrides: dict[str, Any] | None = None):
    """`T5Config`: shapes from `params`, the other fields from config.gin, then `overrides`."""
    from jaxrec.models.configs import T5Config
    from jaxrec.t5x_interop.checkpoint import config_from_params

    shape_fields = dataclasses.asdict(config_from_params(params))
    known = {f.name for f in dataclasses.fields(T5Config)}
    # The checkpoint decides every shape, whatever config.gin says.
    kept = {k: v for k, v in gin_fields.items() if k in known and k not in SHAPE_FIELDS}
    fields = {**shape_fields, **kept, **(overrides or {})}
    if isinstance(fields.get("mlp_activations"), list):
        fields["mlp_activations"] = tuple(fields["mlp_activations"])
    return T5Config(**fields).without_dropout()


def vocab_info(macros: dict[str, Any]) -> dict[str, Any]:
    """The `vocabulary.json`-like facts `jaxrec eval` reads (task name, feature lengths)."""
    info = {}
    if isinstance(macros.get("MIXTURE_OR_TASK_NAME"), str):
        info["mixture_or_task_name"] = macros["MIXTURE_OR_TASK_NAME"]
    if isinstance(macros.get("TASK_FEATURE_LENGTHS"), dict):
        info["task_feature_lengths"] = macros["TASK_FEATURE_LENGTHS"]
    return info

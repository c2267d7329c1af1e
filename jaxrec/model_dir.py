"""The MODEL_DIR contract: what every jaxrec trainer writes, and the one reader.

Every trainer writes (local paths and gs:// alike):
  model_config.json      the `T5Config` of the network;
  jaxrec_model.json      the record: `kind` ("text": a seqio task's vocabulary, written by
                         `python -m jaxrec.train`; "semantic_id": the semantic-id recipe of
                         `jaxrec reproduce` / `jaxrec demo`), `producer`, `selected_step` (the
                         validation-selected step of a budgeted run, else null: the latest),
                         `status`, and what the kind needs to rebuild its inputs (semantic_id:
                         the index file beside it, extra tokens, history length, beams);
  checkpoints/<step>/    Orbax: `default` = the `TrainState` (step, params, opt_state), `loop`
                         = the training loop's bookkeeping (`jaxrec.training.loop`);
  text kind only:        vocabulary.json (vocab size, EOS id, task name, feature lengths),
                         vocab.model (the SentencePiece model, when it is a local file).
A MODEL_DIR written by `python -m t5x.train` (config.gin + `checkpoint_N/`) is read too
(`jaxrec.t5x_interop.model_dir`).

On several devices (`mesh_shape="auto"`, `"DATAxMODEL"`), the parameters are restored sharded by
the logical axis rules of `jaxrec.partitioning` (as in training) and each batch of prompts is
split over the `data` axis; batch sizes are rounded up to a multiple of it. One host only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec import partitioning
from jaxrec.data.dataset import DataError
from jaxrec.t5x_interop import model_dir as t5x_model_dir

log = logging.getLogger(__name__)


@dataclasses.dataclass
class LoadedModel:
    """A network and its parameters restored from a MODEL_DIR."""

    model: Any  # jaxrec.models.network.Transformer
    params: Any
    step: int
    vocab_info: dict[str, Any]
    compiled: dict[tuple, Callable] = dataclasses.field(default_factory=dict)
    mesh: Any = None  # jax.sharding.Mesh over (data, model), or None: one device
    rules: Any = None  # logical axis rules used with `mesh`

    def function(self, key: tuple, build: Callable[[], Callable]) -> Callable:
        """A jitted function built once per `key` (reused across templates and calls)."""
        if key not in self.compiled:
            self.compiled[key] = build()
        return self.compiled[key]

    def context(self):
        """Mesh and axis rules in scope while tracing and running (a no-op on one device)."""
        if self.mesh is None:
            return contextlib.nullcontext()
        return partitioning.mesh_context(self.mesh, self.rules)

    def batch_size(self, requested: int) -> int:
        """`requested` rounded up to a multiple of the mesh's `data` axis."""
        data = 1 if self.mesh is None else self.mesh.shape["data"]
        return -(-max(requested, 1) // data) * data

    def put(self, rows: np.ndarray) -> jax.Array:
        """A host batch on the device(s): split over `data` on a mesh."""
        if self.mesh is None:
            return jnp.asarray(rows)
        return jax.device_put(rows, partitioning.data_sharding(self.mesh))


RECORD = "jaxrec_model.json"
FORMAT_VERSION = 1


def read_record(model_dir: str) -> dict[str, Any] | None:
    """The MODEL_DIR's `jaxrec_model.json`, or None when it has none."""
    path = os.path.join(model_dir, RECORD)
    return _read_json(path) if _exists(path) else None


def eval_rows_path(model_dir: str, task: str, split: str, at: str) -> str:
    """Where a MODEL_DIR's per-user evaluation rows go by default (`jaxrec eval`, and the
    test of `jaxrec reproduce`): `eval_{task}_{split}_{at}.jsonl`, `at` = `step<N>` or
    `ensemble`."""
    return os.path.join(model_dir, f"eval_{task}_{split}_{at}.jsonl")


def write_rows(path: str, rows: list[dict[str, Any]]) -> None:
    """Per-user rows as JSON lines (local paths and gs:// alike)."""
    from tensorflow.io import gfile

    with gfile.GFile(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def _write_json(path: str, obj: dict[str, Any]) -> None:
    from tensorflow.io import gfile  # local paths and gs:// alike

    if "://" in path:
        with gfile.GFile(path, "w") as f:
            json.dump(obj, f, indent=1, default=str)
        return
    tmp = path + ".tmp"  # a kill never leaves a torn record
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, default=str)
    os.replace(tmp, path)


def write_model_files(model_dir: str, config: Any, record: dict[str, Any]) -> None:
    """model_config.json (unless `config` is None) and jaxrec_model.json (`record` + the
    format version)."""
    if jax.process_index() != 0:
        return
    if config is not None:
        fields = {
            k: (str(v) if k == "dtype" else list(v) if isinstance(v, tuple) else v)
            for k, v in dataclasses.asdict(config).items()
        }
        _write_json(os.path.join(model_dir, "model_config.json"), fields)
    _write_json(os.path.join(model_dir, RECORD), {"format_version": FORMAT_VERSION, **record})


def write_text_model_dir(
    model_dir: str, config: Any, vocab: Any, extra: dict[str, Any], operative_config: str
) -> None:
    """What `python -m jaxrec.train` writes beside its checkpoints: config.gin (the operative
    gin config), model_config.json, jaxrec_model.json (kind "text") and vocabulary.json
    (+ vocab.model when the task's SentencePiece model is a readable file)."""
    import jax
    from tensorflow.io import gfile  # local paths and gs:// alike

    if jax.process_index() != 0:
        return
    with gfile.GFile(os.path.join(model_dir, "config.gin"), "w") as f:
        f.write(operative_config)
    record = {"kind": "text", "producer": "python -m jaxrec.train", "selected_step": None,
              "mixture_or_task_name": extra.get("mixture_or_task_name")}  # fmt: skip
    write_model_files(model_dir, config, record)
    info = {
        "class": f"{type(vocab).__module__}.{type(vocab).__qualname__}",
        "vocab_size": int(vocab.vocab_size),
        "eos_id": vocab.eos_id,
        "pad_id": vocab.pad_id,
        **extra,
    }
    # seqio's SentencePieceVocabulary / jaxrec's RecVocabulary (spm + item tokens).
    spm_file = getattr(vocab, "sentencepiece_model_file", None) or getattr(vocab, "spm_path", None)
    if getattr(vocab, "item_tokens", None):
        info["item_tokens"] = list(vocab.item_tokens)
    if spm_file:
        info["source_sentencepiece_model_file"] = str(spm_file)
    if spm_file and gfile.exists(str(spm_file)):
        gfile.copy(str(spm_file), os.path.join(model_dir, "vocab.model"), overwrite=True)
        info["sentencepiece_model_file"] = "vocab.model"
    with gfile.GFile(os.path.join(model_dir, "vocabulary.json"), "w") as f:
        json.dump(info, f, indent=2)


def update_record(model_dir: str, **fields: Any) -> None:
    """Sets `fields` in the MODEL_DIR's record (e.g. `selected_step` at the end of a run)."""
    if jax.process_index() != 0:
        return
    record = read_record(model_dir) or {"format_version": FORMAT_VERSION}
    _write_json(os.path.join(model_dir, RECORD), {**record, **fields})


def _exists(path: str) -> bool:
    from tensorflow.io import gfile

    return gfile.exists(path)


def _read_json(path: str) -> dict[str, Any]:
    from tensorflow.io import gfile  # local paths and gs:// alike

    try:
        if not gfile.exists(path):
            raise FileNotFoundError(path)
        with gfile.GFile(path, "r") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: not found (is this a jaxrec MODEL_DIR?)") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: line {e.lineno}: invalid JSON ({e.msg})") from None


def checkpoint_manager(model_dir: str) -> Any:
    """The orbax manager of MODEL_DIR/checkpoints: items `default` (the train state) and `loop`
    (the training loop's bookkeeping); atomic writes. Which steps are saved and kept is the
    training loop's `Checkpoints` hook's."""
    import orbax.checkpoint as ocp

    options = ocp.CheckpointManagerOptions(max_to_keep=None, create=True)
    root = model_dir if "://" in model_dir else os.path.abspath(model_dir)
    return ocp.CheckpointManager(
        os.path.join(root, "checkpoints"), options=options, item_names=("default", "loop")
    )


def restore_params(
    model_dir: str, step: int | None = None, param_shardings: Any = None
) -> tuple[Any, int]:
    """Parameters of the checkpoint at `step` (default: latest).

    The target tree is rebuilt from the checkpoint's own metadata, so a checkpoint saved on any
    mesh restores here without knowing the optimizer. Parameters go to the first local device,
    or, with `param_shardings` (a tree of shardings shaped like the parameters), onto a mesh.
    """
    import orbax.checkpoint as ocp
    from tensorflow.io import gfile  # local paths and gs:// alike

    base = model_dir if "://" in model_dir else os.path.abspath(model_dir)
    root = os.path.join(base, "checkpoints")
    names = [d.rstrip("/") for d in gfile.listdir(root)] if gfile.isdir(root) else []
    steps = sorted(int(d) for d in names if d.isdigit())
    if not steps:
        raise DataError(f"{root}: no checkpoints")
    step = steps[-1] if step is None else int(step)
    if step not in steps:
        raise DataError(f"{root}: no checkpoint for step {step} (have {steps})")
    path = os.path.join(root, str(step), "default")
    ckpt = ocp.StandardCheckpointer()
    meta = ckpt.metadata(path)
    tree = getattr(getattr(meta, "item_metadata", meta), "tree", meta)
    if "params" not in tree:
        raise DataError(f"{path}: checkpoint has no 'params' (keys {sorted(tree)})")
    is_array = lambda x: hasattr(x, "shape") and hasattr(x, "dtype")  # noqa: E731
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), tree, is_leaf=is_array
    )
    if param_shardings is not None:
        try:
            target["params"] = jax.tree.map(
                lambda m, s: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=s),
                tree["params"],
                param_shardings,
                is_leaf=is_array,
            )
        except ValueError as e:
            raise DataError(f"{path}: parameters do not match model_config.json ({e})") from None
    return ckpt.restore(path, target)["params"], step


def _param_shardings(model, mesh, rules) -> Any:
    """NamedShardings shaped like the parameters, from their logical axis names."""
    x = jnp.ones((1, 4), jnp.int32)
    boxed = jax.eval_shape(lambda: model.init(jax.random.key(0), x, x, x, enable_dropout=False))
    return partitioning.logical_shardings(boxed["params"], mesh, rules)


def load_model_dir(
    model_dir: str,
    step: int | None = None,
    mesh_shape: str | None = None,
    model_config_path: str | None = None,
) -> LoadedModel:
    """Rebuild the network from `model_config.json` and restore its parameters (sharded over
    a (data, model) mesh of this host's devices when `mesh_shape` is given, e.g. "auto").

    A MODEL_DIR written by `python -m t5x.train` (config.gin + `checkpoint_N/`) is read too
    (see `jaxrec.t5x_interop.model_dir`). `model_config_path` names a `model_config.json`-style file
    whose `T5Config` fields win over what the MODEL_DIR says.
    """
    from jaxrec.models.configs import T5Config
    from jaxrec.models.network import Transformer

    cfg_path = os.path.join(model_dir, "model_config.json")
    overrides = _config_fields(model_config_path) if model_config_path else {}
    if not _exists(cfg_path) and t5x_model_dir.is_t5x_model_dir(model_dir):
        return _load_t5x_model_dir(model_dir, step, mesh_shape, overrides)
    record = read_record(model_dir)
    if record is not None and record.get("kind") == "semantic_id":
        raise DataError(f"{model_dir}: a semantic-id model (jaxrec_model.json kind "
                        "'semantic_id'); load it with jaxrec.model_dir.load_sid_model")  # fmt: skip
    step = (record or {}).get("selected_step") if step is None else step
    fields = {**_config_fields(cfg_path), **overrides}
    config = T5Config(**fields).without_dropout()
    vocab_path = os.path.join(model_dir, "vocabulary.json")
    vocab_info = _read_json(vocab_path) if _exists(vocab_path) else {}
    model = Transformer(config)
    mesh, rules, shardings = _mesh(model, mesh_shape)
    params, step = restore_params(model_dir, step, shardings)
    return _loaded(model_dir, model, params, step, vocab_info, mesh, rules)


def _config_fields(path: str) -> dict[str, Any]:
    from jaxrec.models.configs import T5Config

    fields = _read_json(path)
    known = {f.name for f in dataclasses.fields(T5Config)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise DataError(f"{path}: unknown T5Config field(s) {unknown}")
    if isinstance(fields.get("mlp_activations"), list):
        fields["mlp_activations"] = tuple(fields["mlp_activations"])
    return fields


def _mesh(model, mesh_shape: str | None):
    """(mesh, rules, parameter shardings), or Nones on one device."""
    if mesh_shape is None:
        return None, None, None
    if jax.process_count() > 1:
        raise ValueError("sharded evaluation runs on one host; got several processes")
    mesh = partitioning.create_mesh(mesh_shape, jax.local_devices())
    rules = partitioning.standard_logical_axis_rules()
    return mesh, rules, _param_shardings(model, mesh, rules)


def _loaded(model_dir, model, params, step, vocab_info, mesh, rules) -> LoadedModel:
    where = f"mesh {dict(mesh.shape)}" if mesh is not None else "one device"
    log.info("restored %s step %d on %s", model_dir, step, where)
    return LoadedModel(model, params, step, vocab_info, mesh=mesh, rules=rules)


def _load_t5x_model_dir(
    model_dir: str, step: int | None, mesh_shape: str | None, overrides: dict[str, Any]
) -> LoadedModel:
    """A t5x MODEL_DIR: parameters of `checkpoint_{step}` (default latest), config from the
    checkpoint's shapes and config.gin."""
    from jaxrec.models.network import Transformer
    from jaxrec.t5x_interop.checkpoint import load_t5x_checkpoint

    steps = t5x_model_dir.checkpoint_steps(model_dir)
    step = steps[-1] if step is None else int(step)
    if step not in steps:
        raise DataError(f"{model_dir}: no checkpoint_{step} (have {steps})")
    _, params = load_t5x_checkpoint(os.path.join(model_dir, f"checkpoint_{step}"))
    macros, gin_fields = t5x_model_dir.read_config_file(model_dir)
    config = t5x_model_dir.model_config(params, gin_fields, overrides)
    model = Transformer(config)
    mesh, rules, shardings = _mesh(model, mesh_shape)
    if shardings is None:
        device = jax.local_devices()[0]
        params = jax.tree.map(lambda x: jax.device_put(x, device), params)
    else:
        params = jax.tree.map(jax.device_put, params, shardings)
    info = t5x_model_dir.vocab_info(macros)
    return _loaded(model_dir, model, params, step, info, mesh, rules)


@dataclasses.dataclass
class SidModel:
    """A semantic-id recommender restored from a MODEL_DIR: `rec` (a
    `jaxrec.recipes.sid_retrieval.SidRetrieval`), its parameters, the step and the record."""

    rec: Any
    params: Any
    step: int
    record: dict[str, Any]
    index_path: str

    @property
    def fusion_weight(self) -> float | None:
        """The dense head's weight of a hybrid model (`jaxrec.recipes.hybrid`), else None."""
        w = self.record.get("fusion_weight")
        return None if w is None else float(w)

    @property
    def num_beams(self) -> int:
        return int(self.record.get("num_beams", 20))

    @property
    def batch_size(self) -> int:
        return int(self.record.get("eval_batch_size", 32))


def is_sid_model_dir(model_dir: str) -> bool:
    record = read_record(model_dir)
    return record is not None and record.get("kind") == "semantic_id"


def load_sid_model(
    model_dir: str, step: int | None = None, model_config_path: str | None = None
) -> SidModel:
    """Rebuild a semantic-id MODEL_DIR's recommender (network, vocabulary over its index,
    constraint trie) and restore the parameters of `step` (default: the selected step, else
    the latest)."""
    from jaxrec.indexing.schemes import load_index
    from jaxrec.indexing.sid_vocab import SidVocabulary
    from jaxrec.models.configs import T5Config
    from jaxrec.recipes.sid_retrieval import SidRetrieval

    record = read_record(model_dir)
    if record is None or record.get("kind") != "semantic_id":
        raise DataError(f"{model_dir}: not a semantic-id MODEL_DIR (no {RECORD} of kind "
                        "'semantic_id')")  # fmt: skip
    if "index" not in record:
        raise DataError(f"{model_dir}: holds no trained model yet (status "
                        f"{record.get('status')!r}); resume its run first")  # fmt: skip
    fields = _config_fields(os.path.join(model_dir, "model_config.json"))
    if model_config_path:
        fields.update(_config_fields(model_config_path))
    config = T5Config(**fields).without_dropout()
    index_path = os.path.join(model_dir, record["index"])
    if not _exists(index_path):
        raise DataError(f"{index_path}: not found (the index {model_dir} was trained on)")
    index = load_index(index_path)
    vocab = SidVocabulary.from_index(index).with_extra_tokens(record.get("extra_tokens", ()))
    rec = SidRetrieval(config, vocab, int(record["history"]), bool(record["item_inputs"]))
    if step is None:
        step = record.get("selected_step")
    params, step = restore_params(model_dir, step)
    log.info("restored %s (semantic ids, %d items) step %d", model_dir, index.num_items, step)
    return SidModel(rec, params, step, record, index_path)

"""Model-driven evaluation: a trained MODEL_DIR + a prepared dataset -> metrics, per-user rows.

MODEL_DIR is what `jaxrec.train` writes: `model_config.json` (the `T5Config`), `vocabulary.json`
(vocab size, EOS id, the task name and feature lengths), `vocab.model` when the SentencePiece
model is a local file, and Orbax checkpoints under `checkpoints/<step>/default` (a `TrainState`:
step, params, opt_state).

Tasks (prompts come from `jaxrec.tasks.examples.eval_examples`, i.e. exactly the registered
task's validation/test inputs):
  retrieval  constrained beam search over the whole catalogue -> Recall/NDCG@{1,5,10,20}
  ranking    the 100 fixed candidates scored by their sequence log-likelihood -> HR/NDCG@K
  rating     greedy generation parsed as a 1-5 rating -> RMSE/MAE (+ unparsable count)

On several devices (`mesh="auto"`, `"DATAxMODEL"`), the parameters are restored sharded by the
logical axis rules of `jaxrec.partitioning` (as in training) and each batch of prompts is split
over the `data` axis; batch sizes are rounded up to a multiple of it. One host only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec import evaluation
from jaxrec.data.dataset import DataError
from jaxrec.decoding import Constraint, leaf_sequences, sequences_to_items
from jaxrec.generation import make_generate_fn
from jaxrec.indexing.trie import PrefixTable, build_prefix_table

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
        from jaxrec.partitioning import mesh_context

        return (
            contextlib.nullcontext() if self.mesh is None else mesh_context(self.mesh, self.rules)
        )

    def batch_size(self, requested: int) -> int:
        """`requested` rounded up to a multiple of the mesh's `data` axis."""
        data = 1 if self.mesh is None else self.mesh.shape["data"]
        return -(-max(requested, 1) // data) * data

    def put(self, rows: np.ndarray) -> jax.Array:
        """A host batch on the device(s): split over `data` on a mesh."""
        if self.mesh is None:
            return jnp.asarray(rows)
        from jaxrec.partitioning import data_sharding

        return jax.device_put(rows, data_sharding(self.mesh))


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


def restore_params(
    model_dir: str, step: int | None = None, param_shardings: dict[str, Any] | None = None
) -> tuple[Any, int]:
    """Parameters of the checkpoint at `step` (default: latest).

    The target tree is rebuilt from the checkpoint's own metadata, so a checkpoint saved on any
    mesh restores here without knowing the optimizer. Parameters go to the first local device,
    or, with `param_shardings` (`"decoder/layers_0/.../kernel"` -> sharding), onto a mesh.
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
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    shardings = param_shardings or {}

    def target_leaf(path, m):
        keys = [str(getattr(k, "key", k)) for k in path]
        on_mesh = keys[:1] == ["params"] and shardings.get("/".join(keys[1:]))
        return jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=on_mesh or device)

    target = jax.tree_util.tree_map_with_path(
        target_leaf, tree, is_leaf=lambda x: hasattr(x, "shape") and hasattr(x, "dtype")
    )
    restored = ckpt.restore(path, target)
    if "params" not in restored:
        raise DataError(f"{path}: checkpoint has no 'params' (keys {sorted(restored)})")
    return restored["params"], step


def _param_shardings(model, mesh, rules) -> dict[str, Any]:
    """`"a/b/kernel"` -> NamedSharding of every parameter, from its logical axis names."""
    from jaxrec.partitioning import logical_shardings

    x = jnp.ones((1, 4), jnp.int32)
    boxed = jax.eval_shape(lambda: model.init(jax.random.key(0), x, x, x, enable_dropout=False))
    shardings = logical_shardings(boxed["params"], mesh, rules)
    flat = jax.tree_util.tree_leaves_with_path(
        shardings, is_leaf=lambda v: isinstance(v, jax.sharding.NamedSharding)
    )
    return {"/".join(str(getattr(k, "key", k)) for k in path): v for path, v in flat}


def load_model_dir(
    model_dir: str, step: int | None = None, mesh_shape: str | None = None
) -> LoadedModel:
    """Rebuild the network from `model_config.json` and restore its parameters (sharded over
    a (data, model) mesh of this host's devices when `mesh_shape` is given, e.g. "auto")."""
    from jaxrec.models.configs import T5Config
    from jaxrec.models.network import Transformer

    cfg_path = os.path.join(model_dir, "model_config.json")
    fields = _read_json(cfg_path)
    known = {f.name for f in dataclasses.fields(T5Config)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise DataError(f"{cfg_path}: unknown T5Config field(s) {unknown}")
    config = T5Config(**fields).replace(dropout_rate=0.0)
    vocab_path = os.path.join(model_dir, "vocabulary.json")
    vocab_info = _read_json(vocab_path) if _exists(vocab_path) else {}
    model = Transformer(config)
    mesh = rules = shardings = None
    if mesh_shape is not None:
        from jaxrec import partitioning

        if jax.process_count() > 1:
            raise ValueError("sharded evaluation runs on one host; got several processes")
        mesh = partitioning.create_mesh(mesh_shape, jax.local_devices())
        rules = partitioning.standard_logical_axis_rules()
        shardings = _param_shardings(model, mesh, rules)
    params, step = restore_params(model_dir, step, shardings)
    where = f"mesh {dict(mesh.shape)}" if mesh is not None else "one device"
    log.info("restored %s step %d on %s", model_dir, step, where)
    return LoadedModel(model, params, step, vocab_info, mesh=mesh, rules=rules)


def encode_prompts(encode: Callable[[str], Sequence[int]], texts, length: int, eos_id: int):
    """[n, length] int32: token ids + EOS, trimmed like seqio (keep the start), 0-padded."""
    out = np.zeros((len(texts), length), np.int32)
    for i, text in enumerate(texts):
        ids = list(encode(text))[: length - 1] + [eos_id]
        out[i, : len(ids)] = ids
    return out


def item_table(encode: Callable[[str], Sequence[int]], strings: Sequence[str], eos_id: int):
    """Prefix table over every item's rendered target (what the model was trained to emit)."""
    return build_prefix_table([list(encode(s)) for s in strings], eos_id)


def _batches(n: int, batch_size: int, what: str):
    """Index arrays of fixed size (the last one padded with row 0) and how many are real."""
    t0 = time.perf_counter()
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(start + batch_size, n))
        real = len(idx)
        yield np.concatenate([idx, np.zeros(batch_size - real, int)]), real
        done = start + real
        rate = done / max(time.perf_counter() - t0, 1e-9)
        log.info("%s: %d/%d users (%.1f users/s)", what, done, n, rate)


def retrieve(
    loaded: LoadedModel,
    inputs: np.ndarray,
    table: PrefixTable,
    num_beams: int = 20,
    num_returns: int | None = None,
    batch_size: int = 16,
    constrained: bool = True,
    max_items: int = 20,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ranked item lists for encoded prompts `inputs [n, length]`.

    Returns:
      items [n, max_items] (-1 padded), invalid [n, num_returns] and scores [n, num_returns].
    """
    key = ("generate", table.eos_id, num_beams, num_returns, table.max_length)
    generate = loaded.function(
        key,
        lambda: make_generate_fn(
            loaded.model, table.eos_id, num_beams, num_returns, max_decode_len=table.max_length
        ),
    )
    constraint = Constraint.from_table(table) if constrained else None
    lookup = leaf_sequences(table)
    items, invalid, scores = [], [], []
    for idx, real in _batches(len(inputs), loaded.batch_size(batch_size), "retrieval"):
        with loaded.context():
            seqs, sc = generate(loaded.params, loaded.put(inputs[idx]), constraint)
        seqs, sc = np.asarray(seqs)[:real], np.asarray(sc)[:real]
        it, inv = sequences_to_items(seqs, sc, table, max_items, lookup)
        items.append(it), invalid.append(inv), scores.append(sc)
    return np.concatenate(items), np.concatenate(invalid), np.concatenate(scores)


def make_score_fn(model) -> Callable:
    """Jitted `(params, inputs [b, L], targets [b, c, T]) -> [b, c]` summed target log-probs.

    Targets end with EOS and are 0-padded; the encoder runs once per prompt.
    """

    @jax.jit
    def score(params, inputs, targets):
        b, c, t = targets.shape
        variables = {"params": params}
        encoded = model.apply(variables, inputs, enable_dropout=False, method=model.encode)
        encoded = jnp.repeat(encoded, c, axis=0)
        flat = targets.reshape(b * c, t)
        dec_in = jnp.pad(flat[:, :-1], ((0, 0), (1, 0)))  # shifted right, 0 = start token
        logits = model.apply(
            variables,
            encoded,
            jnp.repeat(inputs, c, axis=0),
            dec_in,
            flat,
            enable_dropout=False,
            method=model.decode,
        )
        logp = jax.nn.log_softmax(logits.astype(jnp.float32))
        tok = jnp.take_along_axis(logp, flat[..., None], axis=-1)[..., 0]
        return jnp.where(flat > 0, tok, 0.0).sum(-1).reshape(b, c)

    return score


def score_candidates(
    loaded: LoadedModel,
    inputs: np.ndarray,
    candidates: np.ndarray,
    item_tokens: Sequence[Sequence[int]],
    eos_id: int,
    batch_size: int = 4,
) -> np.ndarray:
    """[n, num_candidates] log-likelihood of each candidate item as the target (-1: -inf)."""
    length = max(len(item_tokens[i]) for i in np.unique(candidates) if i >= 0) + 1
    targets = np.zeros(candidates.shape + (length,), np.int32)
    for (u, k), item in np.ndenumerate(candidates):
        seq = list(item_tokens[max(item, 0)]) + [eos_id]
        targets[u, k, : len(seq)] = seq
    score = loaded.function(("score",), lambda: make_score_fn(loaded.model))
    out = []
    for idx, real in _batches(len(inputs), loaded.batch_size(batch_size), "ranking"):
        with loaded.context():
            s = score(loaded.params, loaded.put(inputs[idx]), loaded.put(targets[idx]))
        out.append(np.asarray(s)[:real])
    return np.where(candidates >= 0, np.concatenate(out), -np.inf)


def generate_text(
    loaded: LoadedModel,
    inputs: np.ndarray,
    decode: Callable[[Sequence[int]], str],
    eos_id: int,
    max_decode_len: int = 8,
    batch_size: int = 16,
) -> list[str]:
    """Greedy (1-beam) unconstrained generation, decoded to text up to EOS."""
    generate = loaded.function(
        ("generate", eos_id, 1, 1, max_decode_len),
        lambda: make_generate_fn(loaded.model, eos_id, 1, 1, max_decode_len=max_decode_len),
    )
    texts: list[str] = []
    for idx, real in _batches(len(inputs), loaded.batch_size(batch_size), "rating"):
        with loaded.context():
            seqs, _ = generate(loaded.params, loaded.put(inputs[idx]), None)
        for row in np.asarray(seqs)[:real, 0].tolist():
            row = row[: row.index(eos_id)] if eos_id in row else row
            texts.append(decode([t for t in row if t > 0]))
    return texts


def evaluate(
    loaded: LoadedModel,
    examples: Sequence[Any],
    task: str,
    encode: Callable[[str], Sequence[int]],
    decode: Callable[[Sequence[int]], str],
    item_strings: Sequence[str],
    eos_id: int,
    input_length: int,
    num_beams: int = 20,
    batch_size: int = 16,
    constrained: bool = True,
    ks: Sequence[int] = evaluation.DEFAULT_KS,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Metrics and per-user records for one task over `EvalExample`s of one template."""
    if not examples:
        raise DataError(f"no {task} examples to evaluate")
    inputs = encode_prompts(encode, [e.inputs for e in examples], input_length, eos_id)
    users = [int(e.user) for e in examples]
    targets = np.array([e.target_item for e in examples], np.int64)
    if task == "retrieval":
        table = item_table(encode, item_strings, eos_id)
        items, invalid, scores = retrieve(
            loaded, inputs, table, num_beams, None, batch_size, constrained, max(ks)
        )
        ranks = evaluation.target_ranks(items, targets)
        metrics = evaluation.metrics_from_ranks(ranks, ks)
        metrics["invalid_rate"] = evaluation.invalid_rate(invalid, np.isfinite(scores))
        rows = [
            {"user": u, "target": int(t), "items": [int(i) for i in it if i >= 0],
             "rank": int(r) or None}
            for u, t, it, r in zip(users, targets, items, ranks, strict=True)
        ]  # fmt: skip
    elif task == "ranking":
        # Tiny catalogues can give fewer than 100 candidates: pad with -1, scored -inf.
        width = max(len(e.candidates) for e in examples)
        cands = np.full((len(examples), width), -1, np.int64)
        for u, e in enumerate(examples):
            cands[u, : len(e.candidates)] = e.candidates
        item_tokens = [list(encode(s)) for s in item_strings]
        scores = score_candidates(loaded, inputs, cands, item_tokens, eos_id)
        col = np.argmax(cands == targets[:, None], axis=1)
        if not np.all(cands[np.arange(len(cands)), col] == targets):
            raise DataError("ranking examples: the target is missing from its candidates")
        target_scores = scores[np.arange(len(scores)), col]
        ranks = (scores >= target_scores[:, None]).sum(axis=1)  # ties count against the target
        metrics = {
            k.replace("recall@", "hr@"): v
            for k, v in evaluation.metrics_from_ranks(ranks, ks).items()
        }
        order = np.argsort(-scores, axis=1, kind="stable")
        rows = [
            {"user": u, "target": int(t), "items": [int(c[j]) for j in o[: max(ks)] if c[j] >= 0],
             "rank": int(r)}
            for u, t, c, o, r in zip(users, targets, cands, order, ranks, strict=True)
        ]  # fmt: skip
    elif task == "rating":
        texts = generate_text(loaded, inputs, decode, eos_id, batch_size=batch_size)
        truth = [float(e.target_rating) for e in examples]
        metrics = evaluation.rating_metrics(texts, truth)
        rows = [
            {"user": u, "target_rating": r, "output": o, "parsed": evaluation.parse_rating(o)}
            for u, r, o in zip(users, truth, texts, strict=True)
        ]
    else:
        raise ValueError(f"task must be retrieval, ranking or rating, got {task!r}")
    metrics["num_users"] = len(examples)
    return metrics, rows


def infer_item_repr(task_name: str) -> str | None:
    """The item representation in a registered task name `{dataset}_{repr}_{task}`."""
    from jaxrec.tasks.items import ITEM_REPRS

    padded = f"_{task_name}_"
    for r in sorted(ITEM_REPRS, key=len, reverse=True):  # "id_title" before "id"
        if f"_{r}_" in padded:
            return r
    return None


def evaluate_model_dir(
    model_dir: str,
    dataset_dir: str,
    split: str = "test",
    task: str = "retrieval",
    checkpoint_step: int | None = None,
    index_path: str | None = None,
    item_repr: str | None = None,
    num_beams: int = 20,
    batch_size: int = 16,
    templates: Sequence[int] = (0,),
    input_length: int | None = None,
    constrained: bool = True,
    max_users: int | None = None,
    mesh_shape: str | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Evaluate a MODEL_DIR on a prepared dataset's split; returns (metrics, per-user rows).

    Prompts, vocabulary and item strings come from the task registry, exactly as in training.
    With several templates the headline figures are their mean and each template's figures
    are under "templates".
    """
    from jaxrec.tasks import examples as ex_lib
    from jaxrec.tasks import registry

    loaded = load_model_dir(model_dir, checkpoint_step, mesh_shape)
    info = loaded.vocab_info
    item_repr = item_repr or infer_item_repr(info.get("mixture_or_task_name", "")) or "sid"
    spm = info.get("sentencepiece_model_file")
    spm = os.path.join(model_dir, spm) if spm else None
    names = registry.register_dataset_tasks(
        dataset_dir, index_path=index_path, item_repr=item_repr, spm_path=spm, tasks=(task,)
    )
    if not names:
        raise DataError(f"{dataset_dir}: task {task!r} is not available for this dataset")
    source = registry.source_of(names[0])
    vocab = source.vocabulary
    model_vocab = loaded.model.config.vocab_size
    if info.get("vocab_size") not in (None, vocab.vocab_size) or vocab.vocab_size > model_vocab:
        raise DataError(
            f"{model_dir}: the model was trained with vocab_size {info.get('vocab_size')} "
            f"(embedding {model_vocab}) but {dataset_dir} with item_repr {item_repr!r} gives "
            f"{vocab.vocab_size}; pass the training index / item_repr"
        )
    lengths = info.get("task_feature_lengths") or {}
    input_length = input_length or lengths.get("inputs") or 512

    per_template, rows = {}, []
    metrics: dict[str, Any] = {}
    for t in templates:
        opts = dataclasses.replace(source.options, eval_template=t)
        exs = ex_lib.eval_examples(task, source.dataset, source.renderer, split, opts)
        exs = exs[:max_users] if max_users else exs
        metrics, t_rows = evaluate(
            loaded, exs, task, vocab.encode, vocab.decode, source.renderer.strings,
            vocab.eos_id, input_length, num_beams, batch_size, constrained,
        )  # fmt: skip
        per_template[str(t)] = metrics
        rows += [dict(r, template=t) for r in t_rows]
    result = evaluation.mean_over_templates(per_template) if len(templates) > 1 else metrics
    result = dict(result, num_users=per_template[str(templates[0])]["num_users"])
    result.update(task=task, split=split, step=loaded.step, item_repr=item_repr)
    if len(templates) > 1:
        result["templates"] = per_template
    return result, rows

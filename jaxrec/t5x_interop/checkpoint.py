"""T5X checkpoints, local or on GCS: the legacy T5X layout and Orbax PyTree checkpoints.

Legacy layout (t5x `Checkpointer`, as published for FLAN-T5 under
`gs://t5-data/pretrained_models/t5x/`): `checkpoint_N/checkpoint` is a msgpack file
`{'version': 3, 'optimizer': {'target': params, 'state': {...}}}` whose leaves are numpy arrays
(small or unpartitioned values) or TensorStore zarr specs with paths relative to the checkpoint
directory (`target.encoder.layers_0.attention.key.kernel/`, gzip chunks). Checkpoints written by
newer t5x keep the msgpack under `checkpoint_N/state/checkpoint`; both are read. Current t5x
(Orbax `CheckpointManager`) writes an Orbax PyTree `{'state': {'step', 'param_states'},
'target': params}` under `checkpoint_N/state/`; Orbax PyTree checkpoints are read when the tree
holds `target` (or is the parameter tree itself), from `checkpoint_N/state` or the directory.
Optimizer state is ignored when reading. Use through `jaxrec.models.checkpoints`.

Paths may be local or remote (`gs://bucket/...`, anything `tf.io.gfile` reads): the msgpack
goes through gfile, array leaves through TensorStore's `gcs` driver (Google default
credentials, as on a Cloud TPU VM), Orbax checkpoints through Orbax's own path handling.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxrec.models.configs import T5Config

Params = dict[str, Any]


def config_from_params(params: Mapping[str, Any], **overrides: Any) -> T5Config:
    """Infers a `T5Config` from parameter shapes (T5X checkpoints carry no config).

    Fields that shapes cannot tell (dropout, max distance, epsilon, activation function)
    keep the FLAN-T5 values unless overridden.
    """
    enc, dec = params["encoder"], params["decoder"]
    vocab, emb = np.shape(params["token_embedder"]["embedding"])
    heads, buckets = np.shape(enc["relpos_bias"]["rel_embedding"])
    layer0 = enc["layers_0"]
    joined = np.shape(layer0["attention"]["query"]["kernel"])[1]
    mlp = layer0["mlp"]
    gated = "wi_0" in mlp
    mlp_dim = np.shape(mlp["wi_0" if gated else "wi"]["kernel"])[1]
    count = lambda stack: sum(1 for k in stack if re.fullmatch(r"layers_\d+", k))
    fields = dict(
        vocab_size=int(vocab),
        emb_dim=int(emb),
        num_heads=int(heads),
        num_encoder_layers=count(enc),
        num_decoder_layers=count(dec),
        head_dim=int(joined) // int(heads),
        mlp_dim=int(mlp_dim),
        mlp_activations=("gelu", "linear") if gated else ("relu",),
        logits_via_embedding="logits_dense" not in dec,
        relative_attention_num_buckets=int(buckets),
    )
    fields.update(overrides)
    return T5Config(**fields)


def _is_ts_spec(x: Any) -> bool:
    return isinstance(x, Mapping) and "driver" in x and "kvstore" in x


def _is_remote(path: str) -> bool:
    return "://" in path


def kvstore_spec(ckpt_dir: str, rel: str) -> dict[str, str]:
    """TensorStore kvstore of the array `rel` (relative, as t5x writes it) in `ckpt_dir`."""
    if ckpt_dir.startswith("gs://"):
        bucket, _, prefix = ckpt_dir[len("gs://") :].partition("/")
        if not bucket:
            raise ValueError(f"{ckpt_dir}: no bucket in the GCS path")
        return {"driver": "gcs", "bucket": bucket, "path": "/".join(p for p in (prefix, rel) if p)}
    if _is_remote(ckpt_dir):
        raise ValueError(f"{ckpt_dir}: TensorStore arrays are read from local paths or gs:// only")
    return {"driver": "file", "path": os.path.join(ckpt_dir, rel)}


def _read_ts_leaf(spec: Mapping[str, Any], ckpt_dir: str) -> np.ndarray:
    import tensorstore as ts

    spec = json.loads(json.dumps(spec))  # deep copy of plain JSON
    kvstore = spec["kvstore"]
    # Relative paths (as t5x writes them) may sit in kvstore.path or, for older
    # tensorstore versions and GCS-written checkpoints, in spec.path.
    rel = kvstore.pop("path", None) or spec.pop("path", None)
    if rel is None:
        raise ValueError(f"{ckpt_dir}: TensorStore spec without a path: {spec}")
    spec["kvstore"] = kvstore_spec(ckpt_dir, rel)
    return np.asarray(ts.open(spec, open=True, read=True).result().read().result())


def _find_msgpack(path: str) -> str | None:
    from tensorflow.io import gfile

    candidates = (path, os.path.join(path, "checkpoint"), os.path.join(path, "state", "checkpoint"))
    for candidate in candidates:
        if gfile.exists(candidate) and not gfile.isdir(candidate):
            return candidate
    return None


def load_t5x_checkpoint(path: str, config: T5Config | None = None) -> tuple[T5Config, Params]:
    """Reads the parameters (`target`) of a T5X checkpoint (local or `gs://`).

    Args:
      path: a `checkpoint_N` directory (legacy T5X msgpack + TensorStore layout, or an Orbax
        PyTree checkpoint) or the msgpack `checkpoint` file itself, e.g.
        `gs://t5-data/pretrained_models/t5x/flan_t5_base/checkpoint_1184000`.
      config: the model configuration; inferred from the parameter shapes when None.

    Returns:
      (config, params) with float32 numpy leaves; optimizer state is ignored.
    """
    from tensorflow.io import gfile

    if not gfile.exists(path):
        raise FileNotFoundError(f"{path}: T5X checkpoint not found")
    msgpack_file = _find_msgpack(path)
    if msgpack_file is not None:
        from flax import serialization

        with gfile.GFile(msgpack_file, "rb") as f:
            contents = serialization.msgpack_restore(f.read())
        if "optimizer" not in contents or "target" not in contents["optimizer"]:
            raise ValueError(f"{msgpack_file}: not a T5X checkpoint (no optimizer/target)")
        ckpt_dir = os.path.dirname(msgpack_file)
        target = contents["optimizer"]["target"]

        def read(node):
            if _is_ts_spec(node):
                return _read_ts_leaf(node, ckpt_dir).astype(np.float32)
            if isinstance(node, Mapping):
                return {k: read(v) for k, v in node.items()}
            return np.asarray(node, dtype=np.float32)

        params = read(target)
    else:
        params = _load_orbax(path)
    params = _strip_param_states(params)
    return (config or config_from_params(params)), params


def _orbax_item_dir(path: str) -> str:
    """The Orbax PyTree directory of a checkpoint: current t5x writes `checkpoint_N/state`
    (next to `dataset/` and `_CHECKPOINT_METADATA`); plain PyTree checkpoints are the
    directory itself."""
    from tensorflow.io import gfile

    state = os.path.join(path, "state")
    if gfile.isdir(state) and gfile.exists(os.path.join(state, "_METADATA")):
        return state
    return path


def _load_orbax(path: str) -> Params:
    import orbax.checkpoint as ocp

    item = _orbax_item_dir(path if _is_remote(path) else os.path.abspath(path))
    try:
        with ocp.PyTreeCheckpointer() as ckpt:
            meta = ckpt.metadata(item)
            tree = getattr(getattr(meta, "item_metadata", meta), "tree", meta)
            target = _restore_target(tree)
            tree = ckpt.restore(item, args=ocp.args.PyTreeRestore(restore_args=target))
    except Exception as e:  # orbax raises several types for "not a checkpoint"
        raise ValueError(f"{path}: neither a T5X msgpack nor an Orbax checkpoint ({e})") from e
    for key in ("target", "params"):
        while isinstance(tree, Mapping) and key in tree:
            tree = tree[key]
    if not isinstance(tree, Mapping) or "encoder" not in tree:
        raise ValueError(f"{path}: no T5 parameter tree (target/encoder...) in the checkpoint")
    return _to_numpy(tree)


def _restore_target(tree: Any) -> Any:
    """Orbax restore args reading every array leaf as a host numpy array (no devices)."""
    import jax
    import orbax.checkpoint as ocp

    is_array = lambda m: hasattr(m, "shape") and hasattr(m, "dtype")
    return jax.tree.map(
        lambda m: ocp.RestoreArgs(restore_type=np.ndarray) if is_array(m) else ocp.RestoreArgs(),
        tree,
        is_leaf=is_array,
    )


def _to_numpy(tree: Any) -> Any:
    if isinstance(tree, Mapping):
        return {k: _to_numpy(v) for k, v in tree.items()}
    return np.asarray(tree, dtype=np.float32)


def _strip_param_states(params: Params) -> Params:
    return {k: v for k, v in params.items() if k in ("token_embedder", "encoder", "decoder")}


# t5x's Adafactor factors the second moment of a parameter of rank <= 2 over its two largest
# dimensions when the smaller of them has at least this many entries (its default).
ADAFACTOR_MIN_DIM_SIZE_TO_FACTOR = 128


def adafactor_param_state(
    shape: tuple[int, ...], min_dim_size_to_factor: int = ADAFACTOR_MIN_DIM_SIZE_TO_FACTOR
) -> dict[str, np.ndarray]:
    """The zero optimizer state t5x's `Adafactor` (default hyper-parameters: factored second
    moments, no momentum) creates for a parameter of rank <= 2.

    Factored: `v_row` is `shape` without its largest dimension, `v_col` without the second
    largest (ties: the later axis counts as the larger), `v` and `m` are placeholders of shape
    [1]. Otherwise `v` has the parameter's shape.
    """
    one = np.zeros((1,), np.float32)
    state = {"m": one, "v": one, "v_col": one, "v_row": one}
    order = np.argsort(shape, kind="stable")
    if len(shape) >= 2 and shape[order[-2]] >= min_dim_size_to_factor:
        largest, second = int(order[-1]), int(order[-2])
        state["v_row"] = np.zeros(np.delete(shape, largest), np.float32)
        state["v_col"] = np.zeros(np.delete(shape, second), np.float32)
    else:
        state["v"] = np.zeros(shape, np.float32)
    return state


def adafactor_param_states(params: Mapping[str, Any]) -> Params:
    """`adafactor_param_state` of every parameter, in the parameter tree's layout."""
    return {
        k: adafactor_param_states(v)
        if isinstance(v, Mapping)
        else adafactor_param_state(tuple(np.shape(v)))
        for k, v in params.items()
    }


def save_t5x_checkpoint(
    path: str,
    params: Mapping[str, Any],
    step: int = 0,
    param_states: Mapping[str, Any] | None = None,
) -> str:
    """Writes `params` in the legacy T5X layout: `path/checkpoint_{step}/checkpoint` (msgpack)
    plus one gzip-compressed zarr TensorStore array per parameter, as t5x's `Checkpointer`
    does for partitioned parameters. Returns the checkpoint directory.

    The optimizer state holds the step and `param_states` (default: the zero state of t5x's
    Adafactor, `adafactor_param_states`), so t5x restores the checkpoint with its default
    `RestoreCheckpointConfig` (e.g. as INITIAL_CHECKPOINT_PATH of gin/t5x/finetune_jaxrec.gin).
    Optimizer moments start from zero, as after `resize_vocab` they must.
    """
    import tensorstore as ts
    from flax import serialization

    ckpt_dir = os.path.join(path, f"checkpoint_{step}")
    os.makedirs(ckpt_dir, exist_ok=True)

    def write(name: str, value: Any) -> Any:
        value = np.asarray(value, dtype=np.float32)
        rel = name.replace("/", ".")
        spec = {
            "driver": "zarr",
            "dtype": "float32",
            "kvstore": {"driver": "file", "path": rel},
            "metadata": {
                "chunks": list(value.shape),
                "compressor": {"id": "gzip", "level": 1},
                "shape": list(value.shape),
            },
        }
        absolute = json.loads(json.dumps(spec))
        absolute["kvstore"]["path"] = os.path.join(ckpt_dir, rel)
        store = ts.open(absolute, create=True, delete_existing=True).result()
        store.write(value).result()
        return spec

    def walk(node: Mapping[str, Any], prefix: str) -> dict[str, Any]:
        out = {}
        for key, value in node.items():
            name = f"{prefix}/{key}"
            out[key] = walk(value, name) if isinstance(value, Mapping) else write(name, value)
        return out

    if param_states is None:
        param_states = adafactor_param_states(params)
    # Adafactor's states are vectors (factored) or small: kept inline in the msgpack, as numpy
    # arrays. (t5x reads TensorStore leaves onto devices with the state's logical axes, and
    # its placeholders have none.)
    inline = lambda node: {  # noqa: E731
        k: inline(v) if isinstance(v, Mapping) else np.asarray(v, np.float32)
        for k, v in node.items()
    }
    state = {"step": np.int32(step), "param_states": inline(param_states)}
    contents = {"version": 3, "optimizer": {"target": walk(params, "target"), "state": state}}
    with open(os.path.join(ckpt_dir, "checkpoint"), "wb") as f:
        f.write(serialization.msgpack_serialize(contents))
    return ckpt_dir

"""Import and export of T5 weights: Hugging Face (`T5ForConditionalGeneration`) and T5X.

All functions work on plain nested dicts of numpy arrays in the parameter tree of
`jaxrec.models.network` (t5x's minimal T5 layout).

Hugging Face: a directory with `config.json` and `model.safetensors` (read with the safetensors
numpy API, no torch needed) or `pytorch_model.bin` (needs torch). HF `Linear` weights are
`[out, in]` and are transposed; the relative attention bias lives in block 0 of each stack and is
`[buckets, heads]`. Neither HF nor t5x scale attention logits by 1/sqrt(d), so the projection
weights map unchanged; a tied output layer (original T5) multiplies by emb_dim**-0.5 in both.

T5X (legacy msgpack + TensorStore layout, Orbax PyTree): see `jaxrec.t5x_interop.checkpoint`;
`load_t5x_checkpoint` and `save_t5x_checkpoint` are re-exported here.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxrec.models.configs import T5Config
from jaxrec.t5x_interop.checkpoint import (  # noqa: F401  (re-exported public API)
    config_from_params,
    load_t5x_checkpoint,
    save_t5x_checkpoint,
)

Params = dict[str, Any]

_ACTIVATIONS = {"gelu": "gelu_exact", "gelu_new": "gelu", "gelu_pytorch_tanh": "gelu"}

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- Hugging Face


def config_from_hf(hf: Mapping[str, Any]) -> T5Config:
    """`T5Config` from a Hugging Face T5 `config.json` dict."""
    proj = hf.get("feed_forward_proj", "relu")
    gated = proj.startswith("gated-")
    act = proj.split("-")[-1]
    if proj == "gated-gelu":
        act = "gelu_new"  # HF's gated-gelu is the tanh approximation
    act = _ACTIVATIONS.get(act, act)
    return T5Config(
        vocab_size=hf["vocab_size"],
        emb_dim=hf["d_model"],
        num_heads=hf["num_heads"],
        num_encoder_layers=hf["num_layers"],
        num_decoder_layers=hf.get("num_decoder_layers") or hf["num_layers"],
        head_dim=hf["d_kv"],
        mlp_dim=hf["d_ff"],
        mlp_activations=(act, "linear") if gated else (act,),
        dropout_rate=hf.get("dropout_rate", 0.1),
        logits_via_embedding=_scales_tied_logits(hf),
        relative_attention_num_buckets=hf.get("relative_attention_num_buckets", 32),
        relative_attention_max_distance=hf.get("relative_attention_max_distance", 128),
        layer_norm_epsilon=hf.get("layer_norm_epsilon", 1e-6),
    )


def _scales_tied_logits(hf: Mapping[str, Any]) -> bool:
    # Original T5 ties the output layer to the embedding and rescales by emb_dim**-0.5; T5 v1.1
    # and FLAN-T5 do neither. transformers >= 5 always writes tie_word_embeddings=true and
    # records the rescaling as scale_decoder_outputs instead.
    return bool(hf.get("scale_decoder_outputs", hf.get("tie_word_embeddings", True)))


def config_to_hf(config: T5Config) -> dict[str, Any]:
    """Hugging Face `config.json` dict of a `T5ForConditionalGeneration` with this shape."""
    acts = config.mlp_activations
    act = {"gelu": "gelu", "gelu_exact": "gelu"}.get(acts[0], acts[0])
    if acts[0] == "gelu_exact" and len(acts) == 2:
        raise ValueError("HF has no gated exact-GELU feed-forward")
    proj = f"gated-{act}" if len(acts) == 2 else act
    return {
        "architectures": ["T5ForConditionalGeneration"],
        "model_type": "t5",
        "vocab_size": config.vocab_size,
        "d_model": config.emb_dim,
        "d_kv": config.head_dim,
        "d_ff": config.mlp_dim,
        "num_layers": config.num_encoder_layers,
        "num_decoder_layers": config.num_decoder_layers,
        "num_heads": config.num_heads,
        "relative_attention_num_buckets": config.relative_attention_num_buckets,
        "relative_attention_max_distance": config.relative_attention_max_distance,
        "dropout_rate": config.dropout_rate,
        "layer_norm_epsilon": config.layer_norm_epsilon,
        "initializer_factor": 1.0,
        "feed_forward_proj": proj,
        "is_encoder_decoder": True,
        "tie_word_embeddings": config.logits_via_embedding,
        "scale_decoder_outputs": config.logits_via_embedding,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "decoder_start_token_id": 0,
        "use_cache": True,
    }


def _layer_map(config: T5Config) -> dict[str, tuple[str, bool]]:
    """t5x parameter path -> (HF state-dict name, transpose?)."""
    names: dict[str, tuple[str, bool]] = {
        "token_embedder/embedding": ("shared.weight", False),
        "encoder/relpos_bias/rel_embedding": (
            "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
            True,
        ),
        "decoder/relpos_bias/rel_embedding": (
            "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
            True,
        ),
        "encoder/encoder_norm/scale": ("encoder.final_layer_norm.weight", False),
        "decoder/decoder_norm/scale": ("decoder.final_layer_norm.weight", False),
    }
    if not config.logits_via_embedding:
        names["decoder/logits_dense/kernel"] = ("lm_head.weight", True)
    wi = ["wi"] if len(config.mlp_activations) == 1 else ["wi_0", "wi_1"]

    def attention(ours: str, theirs: str):
        for a, b in (("query", "q"), ("key", "k"), ("value", "v"), ("out", "o")):
            names[f"{ours}/{a}/kernel"] = (f"{theirs}.{b}.weight", True)

    def mlp(ours: str, theirs: str):
        for w in [*wi, "wo"]:
            names[f"{ours}/mlp/{w}/kernel"] = (f"{theirs}.DenseReluDense.{w}.weight", True)

    for i in range(config.num_encoder_layers):
        ours, theirs = f"encoder/layers_{i}", f"encoder.block.{i}.layer"
        attention(f"{ours}/attention", f"{theirs}.0.SelfAttention")
        names[f"{ours}/pre_attention_layer_norm/scale"] = (f"{theirs}.0.layer_norm.weight", False)
        mlp(ours, f"{theirs}.1")
        names[f"{ours}/pre_mlp_layer_norm/scale"] = (f"{theirs}.1.layer_norm.weight", False)
    for i in range(config.num_decoder_layers):
        ours, theirs = f"decoder/layers_{i}", f"decoder.block.{i}.layer"
        attention(f"{ours}/self_attention", f"{theirs}.0.SelfAttention")
        names[f"{ours}/pre_self_attention_layer_norm/scale"] = (
            f"{theirs}.0.layer_norm.weight",
            False,
        )
        attention(f"{ours}/encoder_decoder_attention", f"{theirs}.1.EncDecAttention")
        names[f"{ours}/pre_cross_attention_layer_norm/scale"] = (
            f"{theirs}.1.layer_norm.weight",
            False,
        )
        mlp(ours, f"{theirs}.2")
        names[f"{ours}/pre_mlp_layer_norm/scale"] = (f"{theirs}.2.layer_norm.weight", False)
    return names


def _unflatten(flat: Mapping[str, np.ndarray]) -> Params:
    tree: Params = {}
    for path, value in flat.items():
        node = tree
        *parents, leaf = path.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested parameter dict -> {'encoder/layers_0/...': array}."""
    flat = {}
    for key, value in params.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, path + "/"))
        else:
            flat[path] = value
    return flat


def _read_hf_state_dict(path: str) -> dict[str, np.ndarray]:
    safetensors_file = os.path.join(path, "model.safetensors")
    index_file = os.path.join(path, "model.safetensors.index.json")
    bin_file = os.path.join(path, "pytorch_model.bin")
    if os.path.exists(safetensors_file) or os.path.exists(index_file):
        from safetensors.numpy import load_file

        if os.path.exists(safetensors_file):
            return dict(load_file(safetensors_file))
        with open(index_file) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        state: dict[str, np.ndarray] = {}
        for shard in shards:
            state.update(load_file(os.path.join(path, shard)))
        return state
    if os.path.exists(bin_file):
        try:
            import torch
        except ImportError as e:
            raise ImportError(
                f"{bin_file}: reading pytorch_model.bin needs torch (pip install torch), or "
                "convert the checkpoint to model.safetensors"
            ) from e
        state = torch.load(bin_file, map_location="cpu", weights_only=True)
        return {k: v.detach().float().numpy() for k, v in state.items()}
    raise FileNotFoundError(f"{path}: no model.safetensors or pytorch_model.bin")


def load_hf_checkpoint(path: str) -> tuple[T5Config, Params]:
    """Reads a Hugging Face `T5ForConditionalGeneration` directory.

    Args:
      path: directory with `config.json` and `model.safetensors` (or a sharded safetensors index,
        or `pytorch_model.bin`).

    Returns:
      (config, params): params as a nested dict of float32 numpy arrays.
    """
    if "://" in path:
        raise ValueError(
            f"{path}: Hugging Face checkpoints are read from a local directory; copy it first "
            "(e.g. gsutil -m cp -r)"
        )
    config_file = os.path.join(path, "config.json")
    if not os.path.exists(config_file):
        raise FileNotFoundError(f"{config_file} not found")
    with open(config_file) as f:
        hf_config = json.load(f)
    if hf_config.get("model_type", "t5") not in ("t5", "mt5"):
        raise ValueError(f"{config_file}: model_type {hf_config['model_type']!r} is not T5")
    config = config_from_hf(hf_config)
    state = _read_hf_state_dict(path)
    if "shared.weight" not in state:  # some exports keep only the per-stack tied copies
        for alt in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"):
            if alt in state:
                state["shared.weight"] = state[alt]
                break
    if not config.logits_via_embedding and "lm_head.weight" not in state:
        # Unscaled output layer sharing the embedding (transformers >= 5 saves T5 v1.1 models
        # created in memory this way): untie it here, with the same values.
        state["lm_head.weight"] = state["shared.weight"]
    flat = {}
    for ours, (theirs, transpose) in _layer_map(config).items():
        if theirs not in state:
            raise ValueError(f"{path}: weight {theirs} missing from the checkpoint")
        value = np.asarray(state[theirs], dtype=np.float32)
        flat[ours] = np.ascontiguousarray(value.T) if transpose else value
    return config, _unflatten(flat)


def to_hf_state_dict(config: T5Config, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Parameter tree -> Hugging Face state dict (numpy float32)."""
    flat = flatten_params(params)
    state = {}
    for ours, (theirs, transpose) in _layer_map(config).items():
        value = np.asarray(flat[ours], dtype=np.float32)
        state[theirs] = np.ascontiguousarray(value.T) if transpose else value
    return state


def save_hf_checkpoint(path: str, config: T5Config, params: Mapping[str, Any]) -> None:
    """Writes `config.json` + `model.safetensors` loadable by `T5ForConditionalGeneration`."""
    from safetensors.numpy import save_file

    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config_to_hf(config), f, indent=2)
    save_file(to_hf_state_dict(config, params), os.path.join(path, "model.safetensors"))


# ------------------------------------------------------------------------- vocabulary


def resize_vocab(
    params: Mapping[str, Any], new_vocab_size: int, rng: Any, pad_to_multiple: int = 1
) -> Params:
    """Grows or shrinks `token_embedder/embedding` and `decoder/logits_dense/kernel`.

    New embedding rows (added item tokens) are drawn from a normal distribution with the
    per-dimension mean and std of the existing rows; new output-layer columns likewise from the
    existing columns. Existing rows are kept; shrinking truncates.

    Args:
      params: parameter tree (unboxed).
      new_vocab_size: target number of tokens.
      rng: a `jax.random` key or an int seed.
      pad_to_multiple: round the size up to a multiple of this (128 on TPU).
    """
    size = -(-new_vocab_size // pad_to_multiple) * pad_to_multiple
    seed = rng if isinstance(rng, int) else int(np.asarray(_key_data(rng)).ravel()[-1])
    gen = np.random.default_rng(seed)
    out = _copy_tree(params)
    emb = np.asarray(params["token_embedder"]["embedding"], dtype=np.float32)  # [vocab, embed]
    out["token_embedder"]["embedding"] = _resize_rows(emb, size, gen)
    if "logits_dense" in params.get("decoder", {}):
        kernel = np.asarray(params["decoder"]["logits_dense"]["kernel"], dtype=np.float32)
        out["decoder"]["logits_dense"]["kernel"] = _resize_rows(kernel.T, size, gen).T
    return out


def _key_data(rng: Any) -> Any:
    import jax

    if hasattr(rng, "dtype") and jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(rng)
    return rng


def _resize_rows(rows: np.ndarray, size: int, gen: np.random.Generator) -> np.ndarray:
    if size <= rows.shape[0]:
        return rows[:size].copy()
    mean, std = rows.mean(axis=0), rows.std(axis=0)
    new = gen.normal(size=(size - rows.shape[0], rows.shape[1])) * std + mean
    return np.concatenate([rows, new.astype(rows.dtype)], axis=0)


def _copy_tree(tree: Mapping[str, Any]) -> Params:
    return {k: _copy_tree(v) if isinstance(v, Mapping) else v for k, v in tree.items()}


def load_initial_checkpoint(path: str) -> tuple[T5Config | None, Params]:
    """(config or None, params) from a Hugging Face directory (`config.json` + weights) or a
    T5X checkpoint (local or gs://): what `INITIAL_CHECKPOINT_PATH` names."""
    from tensorflow.io import gfile  # local paths and gs:// alike

    if gfile.exists(os.path.join(path, "config.json")):
        log.info("loading Hugging Face checkpoint %s", path)
        return load_hf_checkpoint(path)
    log.info("loading T5X checkpoint %s", path)
    loaded = load_t5x_checkpoint(path)
    return loaded if isinstance(loaded, tuple) else (None, loaded)

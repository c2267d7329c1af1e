"""Hyper-parameters of the T5 v1.1 / FLAN-T5 network and the named sizes.

The field names follow t5x's minimal T5 network (`t5x/examples/t5/network.py`, `T5Config`) so that
gin files written for t5x read naturally here; the relative-attention fields use Hugging Face's
names because t5x hard-codes those values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp

# FLAN-T5 pads the 32,100-token SentencePiece vocabulary to a multiple of 128.
FLAN_T5_VOCAB_SIZE = 32128


@dataclasses.dataclass(frozen=True)
class T5Config:
    """Global hyper-parameters of the encoder-decoder Transformer.

    Attributes:
      vocab_size: rows of the shared token embedding and columns of the output layer.
      emb_dim: model width (`d_model`).
      num_heads: attention heads per attention block.
      num_encoder_layers: encoder blocks.
      num_decoder_layers: decoder blocks.
      head_dim: width of one head (`d_kv`); heads * head_dim need not equal emb_dim.
      mlp_dim: hidden width of the feed-forward block (`d_ff`).
      mlp_activations: one activation per input projection; ('gelu', 'linear') is gated GELU
        with parameters `wi_0`, `wi_1`, a single entry gives an ungated MLP with `wi`.
      dropout_rate: dropout on embeddings, block outputs, MLP hidden and attention weights.
      decoder_dropout_rate: the decoder's dropout when set (else `dropout_rate`). A
        from-scratch semantic-id recommender wants a well-regularised encoder (item-id
        embeddings seen a few dozen times each) and a decoder free to memorise each item's
        codes.
      logits_via_embedding: tie the output layer to the embedding (original T5); FLAN-T5 and
        T5 v1.1 are untied.
      dtype: activation dtype ('float32' or 'bfloat16'); parameters are always float32.
      float32_attention_logits: compute attention logits and softmax in float32.
      relative_attention_num_buckets: relative-position buckets per direction pair.
      relative_attention_max_distance: distance at which the buckets saturate.
      layer_norm_epsilon: epsilon of the RMS norms.
      encoder_causal: the encoder attends only to earlier positions (and itself). With it, the
        encoding of a prefix of the input does not depend on what follows, so one pass over a
        user's sequence serves every next-item target ("prefix-shared" training, see
        `jaxrec.recipes.prefix_shared`). FLAN-T5 and TIGER are bidirectional (False).
      num_input_items: with item-level encoder inputs, an item-id embedding of this many
        items is added to each position's code embeddings; the inputs then carry the item id
        + 1 as their last column (`[batch, length, k + 1]`). 0: codes only (TIGER).
      scale_item_logits: the dense item head (`adapters.next_item_logits`, the next-item loss
        and hybrid retrieval) divides its logits, encoder output · item-id embedding, by
        sqrt(emb_dim), as T5 does for tied output embeddings, so they start at unit scale.
        Unscaled (False, the first hybrid models), a 12,101-item catalogue starts with logits
        of std ~11, and on Beauty the encoder collapsed onto one output for every user.
      cross_recency_bias: cross-attention gets a learned per-head bias by how far back an
        encoder position lies from the latest one the decoder may see (`layers.RecencyBias`);
        meant for causal item-level encoders, which cannot mark their last position.
    """

    vocab_size: int = FLAN_T5_VOCAB_SIZE
    emb_dim: int = 512
    num_heads: int = 8
    num_encoder_layers: int = 6
    num_decoder_layers: int = 6
    head_dim: int = 64
    mlp_dim: int = 2048
    mlp_activations: Sequence[str] = ("gelu", "linear")
    dropout_rate: float = 0.1
    decoder_dropout_rate: float | None = None
    logits_via_embedding: bool = False
    dtype: Any = "float32"
    float32_attention_logits: bool = True
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6
    encoder_causal: bool = False
    num_input_items: int = 0
    cross_recency_bias: bool = False
    scale_item_logits: bool = False

    def __post_init__(self):
        # gin and JSON give lists; keep the dataclass hashable (flax module attributes must be).
        object.__setattr__(self, "mlp_activations", tuple(self.mlp_activations))

    @property
    def activation_dtype(self) -> jnp.dtype:
        return jnp.dtype(self.dtype)

    def replace(self, **changes: Any) -> T5Config:
        return dataclasses.replace(self, **changes)

    def without_dropout(self) -> T5Config:
        """The same network with no dropout anywhere (for inference and loading)."""
        return self.replace(dropout_rate=0.0, decoder_dropout_rate=None)


def _flan(emb_dim: int, num_heads: int, layers: int, mlp_dim: int) -> T5Config:
    return T5Config(
        emb_dim=emb_dim,
        num_heads=num_heads,
        num_encoder_layers=layers,
        num_decoder_layers=layers,
        head_dim=64,
        mlp_dim=mlp_dim,
    )


# Published FLAN-T5 (= T5 v1.1 LM-adapted) shapes; parameter counts in the comments.
CONFIGS: dict[str, T5Config] = {
    # For tests and the CPU demo.
    "tiny": T5Config(
        vocab_size=512,
        emb_dim=64,
        num_heads=4,
        num_encoder_layers=2,
        num_decoder_layers=2,
        head_dim=16,
        mlp_dim=128,
    ),
    # TIGER (Rajput et al. 2023): 4+4 layers, d_model 128, 6 x 64 heads, d_ff 1024.
    "tiger": T5Config(
        emb_dim=128,
        num_heads=6,
        num_encoder_layers=4,
        num_decoder_layers=4,
        head_dim=64,
        mlp_dim=1024,
    ),
    "small": _flan(512, 6, 8, 1024),  # 76,961,152
    "base": _flan(768, 12, 12, 2048),  # 247,577,856
    "large": _flan(1024, 16, 24, 2816),  # 783,150,080
    "xl": _flan(2048, 32, 24, 5120),  # 2,849,757,184
    "xxl": _flan(4096, 64, 24, 10240),  # 11,135,332,352
}


def get_config(name: str, vocab_size: int | None = None, **overrides: Any) -> T5Config:
    """Returns the named configuration ('tiny', 'tiger', 'small', ..., 'xxl').

    Args:
      name: one of `CONFIGS`, optionally prefixed 'flan_t5_' (as in the gin file names).
      vocab_size: replaces the vocabulary size (e.g. after adding item tokens).
      **overrides: any other `T5Config` field.
    """
    key = name.removeprefix("flan_t5_").removeprefix("flan-t5-")
    if key not in CONFIGS:
        raise ValueError(f"unknown model config {name!r}; known: {', '.join(CONFIGS)}")
    config = CONFIGS[key]
    if vocab_size is not None:
        overrides["vocab_size"] = vocab_size
    return config.replace(**overrides) if overrides else config

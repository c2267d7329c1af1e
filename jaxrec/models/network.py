"""The T5 v1.1 / FLAN-T5 encoder-decoder network in Flax linen.

Parameter tree (t5x's minimal T5, so T5X checkpoints map one to one):
  token_embedder/embedding                                     [vocab, embed]
  encoder/relpos_bias/rel_embedding                            [heads, buckets]
  encoder/layers_{i}/pre_attention_layer_norm/scale            [embed]
  encoder/layers_{i}/attention/{query,key,value}/kernel        [embed, heads*kv]
  encoder/layers_{i}/attention/out/kernel                      [heads*kv, embed]
  encoder/layers_{i}/pre_mlp_layer_norm/scale
  encoder/layers_{i}/mlp/{wi_0,wi_1}/kernel, mlp/wo/kernel     [embed, mlp], [mlp, embed]
  encoder/encoder_norm/scale
  decoder/relpos_bias/rel_embedding
  decoder/layers_{i}/{pre_self_attention_layer_norm, self_attention,
                      pre_cross_attention_layer_norm, encoder_decoder_attention,
                      pre_mlp_layer_norm, mlp}
  decoder/decoder_norm/scale
  decoder/logits_dense/kernel                                  [embed, vocab] (if untied)

`Transformer.init` returns parameters boxed with logical axis names (`flax.linen.meta.unbox`
strips them; `nn.get_partition_spec` reads them). The relative position bias and the masks are
combined into one additive bias per stack, computed once and shared by all its layers.

Incremental decoding (t5x's convention): create the cache with
`Transformer(cfg).init(rng, enc_tokens, dec_tokens, dec_tokens, decode=True)` with `dec_tokens`
of shape `[batch, max_decode_length]` (or via `jax.eval_shape`), then call `Transformer.decode`
with one token per step, `decode=True`, `mutable=['cache']`. The cache holds
`decoder/cache_index` (a scalar, the step) and, per layer, `[batch, ...]` key/value arrays; every
cache leaf except the scalars named `cache_index` has the batch as its leading axis.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jaxrec.models import layers
from jaxrec.models.configs import T5Config

__all__ = ["T5Config", "Transformer", "Encoder", "Decoder"]

Array = jax.Array


def _dropout(config: T5Config, x: Array, deterministic: bool) -> Array:
    return nn.Dropout(config.dropout_rate, broadcast_dims=(-2,))(x, deterministic=deterministic)


def _attention(config: T5Config, name: str, cross: bool = False) -> layers.MultiHeadAttention:
    return layers.MultiHeadAttention(
        num_heads=config.num_heads,
        head_dim=config.head_dim,
        dtype=config.activation_dtype,
        dropout_rate=config.dropout_rate,
        float32_logits=config.float32_attention_logits,
        is_cross_attention=cross,
        name=name,
    )


def _norm(config: T5Config, name: str) -> layers.LayerNorm:
    return layers.LayerNorm(config.layer_norm_epsilon, config.activation_dtype, name=name)


def _mlp(config: T5Config) -> layers.MlpBlock:
    return layers.MlpBlock(
        config.mlp_dim,
        config.mlp_activations,
        config.dropout_rate,
        config.activation_dtype,
        name="mlp",
    )


def _relpos(config: T5Config) -> layers.RelativePositionBiases:
    return layers.RelativePositionBiases(
        config.relative_attention_num_buckets,
        config.relative_attention_max_distance,
        config.num_heads,
        config.activation_dtype,
        name="relpos_bias",
    )


def input_mask(encoder_input_tokens: Array) -> Array:
    """`[batch, length]` True at real positions of token-level (`[batch, length]`) or
    item-level (`[batch, length, k]`, padding = first token 0) encoder inputs."""
    if encoder_input_tokens.ndim == 3:
        return encoder_input_tokens[..., 0] > 0
    return encoder_input_tokens > 0


def prefix_cross_mask(
    decoder_target_tokens: Array,
    decoder_cross_positions: Array,
    encoder_valid: Array,
    encoder_segment_ids: Array | None = None,
) -> Array:
    """Cross-attention mask `[batch, 1, target_length, input_length]` of prefix-shared rows.

    Decoder token i sees encoder position j iff j <= decoder_cross_positions[i], j is a real
    position and (when packed) j lies in the same segment as decoder_cross_positions[i].
    """
    length = encoder_valid.shape[1]
    cross = decoder_cross_positions  # [batch, target_length]
    mask = jnp.arange(length)[None, None, :] <= cross[:, :, None]
    mask &= encoder_valid[:, None, :] & (decoder_target_tokens > 0)[:, :, None]
    if encoder_segment_ids is not None:
        own = jnp.take_along_axis(encoder_segment_ids, jnp.clip(cross, 0, length - 1), axis=1)
        mask &= encoder_segment_ids[:, None, :] == own[:, :, None]
    return mask[:, None]


def recency_distance(encoder_valid: Array, decoder_cross_positions: Array | None) -> Array:
    """`[batch, q, input_length]` (q = target length, or 1): latest visible encoder position
    minus each encoder position. The latest is `decoder_cross_positions` (prefix-shared rows)
    or, for left-aligned histories, the last real position of the row."""
    length = encoder_valid.shape[1]
    if decoder_cross_positions is None:
        latest = jnp.sum(encoder_valid, axis=1, keepdims=True) - 1  # [batch, 1]
    else:
        latest = decoder_cross_positions  # [batch, q]
    return latest[:, :, None] - jnp.arange(length)[None, None, :]


class EncoderLayer(nn.Module):
    """Pre-norm self-attention + MLP block."""

    config: T5Config

    @nn.compact
    def __call__(self, x: Array, bias: Array, deterministic: bool) -> Array:
        cfg = self.config
        y = _norm(cfg, "pre_attention_layer_norm")(x)
        y = _attention(cfg, "attention")(y, y, bias, deterministic=deterministic)
        x = x + _dropout(cfg, y, deterministic)
        y = _norm(cfg, "pre_mlp_layer_norm")(x)
        y = _mlp(cfg)(y, deterministic)
        x = x + _dropout(cfg, y, deterministic)
        return layers.constrain(x, ("batch", "length", "embed"))


class DecoderLayer(nn.Module):
    """Pre-norm causal self-attention, cross-attention and MLP block."""

    config: T5Config

    @nn.compact
    def __call__(
        self,
        y: Array,
        encoded: Array,
        self_bias: Array,
        cross_bias: Array,
        deterministic: bool,
        decode: bool,
        decode_position: Array | None,
        cross_cache: str = "auto",
    ) -> Array:
        cfg = self.config
        kwargs = dict(deterministic=deterministic, decode=decode, decode_position=decode_position)
        z = _norm(cfg, "pre_self_attention_layer_norm")(y)
        z = _attention(cfg, "self_attention")(z, z, self_bias, **kwargs)
        y = y + _dropout(cfg, z, deterministic)
        z = _norm(cfg, "pre_cross_attention_layer_norm")(y)
        z = _attention(cfg, "encoder_decoder_attention", cross=True)(
            z, encoded, cross_bias, cross_cache=cross_cache, **kwargs
        )
        y = y + _dropout(cfg, z, deterministic)
        z = _norm(cfg, "pre_mlp_layer_norm")(y)
        z = _mlp(cfg)(z, deterministic)
        y = y + _dropout(cfg, z, deterministic)
        return layers.constrain(y, ("batch", "length", "embed"))


class Encoder(nn.Module):
    """Embedding dropout, encoder layers and the final norm."""

    config: T5Config
    shared_embedding: nn.Module

    @nn.compact
    def __call__(self, tokens: Array, mask: Array, deterministic: bool) -> Array:
        """`tokens [batch, length]` (or `[batch, length, k]` item tokens), boolean
        `mask [batch, 1, length, length]` -> encodings `[batch, length, embed]`."""
        cfg = self.config
        length = tokens.shape[1]
        # One additive bias for all layers: relative positions + padding/segment mask.
        bias = _relpos(cfg)(length, length, bidirectional=True)  # [1, heads, length, length]
        bias = bias + layers.mask_to_bias(mask, bias.dtype)  # [batch, heads, length, length]
        if tokens.ndim == 3 and cfg.num_input_items:  # [batch, length, k + 1]: codes, id + 1
            item = layers.Embed(cfg.num_input_items + 1, cfg.emb_dim, cfg.activation_dtype,
                                name="item_embedder")  # fmt: skip
            x = self.shared_embedding.sum_tokens(tokens[..., :-1]) + item(tokens[..., -1])
        elif tokens.ndim == 3:  # [batch, length, k]: one position per item, its k tokens summed
            x = self.shared_embedding.sum_tokens(tokens)
        else:
            x = self.shared_embedding(tokens)
        x = _dropout(cfg, x, deterministic)
        for i in range(cfg.num_encoder_layers):
            x = EncoderLayer(cfg, name=f"layers_{i}")(x, bias, deterministic)
        x = _norm(cfg, "encoder_norm")(x)
        return _dropout(cfg, x, deterministic)


class Decoder(nn.Module):
    """Decoder layers, final norm and the output projection."""

    config: T5Config
    shared_embedding: nn.Module

    @nn.compact
    def __call__(
        self,
        encoded: Array,
        tokens: Array,
        self_mask: Array | None,
        cross_mask: Array,
        deterministic: bool,
        decode: bool = False,
        max_decode_length: int | None = None,
        cross_cache: str = "auto",
        cross_distance: Array | None = None,
    ) -> Array:
        """Returns logits `[batch, length, vocab]` (float32).

        `cross_distance [batch, length or 1, input_length]`: recency of each encoder position
        for `config.cross_recency_bias`."""
        cfg = self.config
        stepping = decode and self.has_variable("cache", "cache_index")
        position = None
        if stepping:
            length = max_decode_length or self._cached_length()
            index = self.variable("cache", "cache_index")
            position = index.value
            index.value = position + 1
            # Row `position` of the causal relative-position bias: [1, heads, 1, length].
            bias = _relpos(cfg)(length, length, bidirectional=False)
            bias = lax.dynamic_slice_in_dim(bias, position, 1, axis=2)
            causal = jnp.arange(length) <= position
            self_bias = bias + layers.mask_to_bias(causal, bias.dtype)[None, None, None]
        else:
            if decode:  # the call that creates the cache
                self.variable("cache", "cache_index", lambda: jnp.array(0, jnp.int32))
            length = tokens.shape[1]
            self_bias = _relpos(cfg)(length, length, bidirectional=False)
            if self_mask is not None:
                self_bias = self_bias + layers.mask_to_bias(self_mask, self_bias.dtype)
        cross_bias = layers.mask_to_bias(cross_mask, cfg.activation_dtype)
        if cfg.cross_recency_bias:
            recency = layers.RecencyBias(cfg.num_heads, dtype=cfg.activation_dtype,
                                         name="recency_bias")  # fmt: skip
            cross_bias = cross_bias + recency(cross_distance)

        y = _dropout(cfg, self.shared_embedding(tokens), deterministic)
        for i in range(cfg.num_decoder_layers):
            y = DecoderLayer(cfg, name=f"layers_{i}")(
                y, encoded, self_bias, cross_bias, deterministic, decode, position, cross_cache
            )
        y = _norm(cfg, "decoder_norm")(y)
        y = _dropout(cfg, y, deterministic)
        if cfg.logits_via_embedding:
            # Tied output layer: rescale as Mesh TF T5 does.
            return self.shared_embedding.attend(y) / jnp.sqrt(y.shape[-1])
        logits_dense = layers.Dense(
            cfg.emb_dim, cfg.vocab_size, ("embed", "vocab"), dtype=jnp.float32, name="logits_dense"
        )
        return layers.constrain(logits_dense(y), ("batch", "length", "vocab"))

    def _cached_length(self) -> int:
        cache = self.variables["cache"]["layers_0"]["self_attention"]
        return cache["cached_key"].shape[-1]


class Transformer(nn.Module):
    """Encoder-decoder Transformer with t5x's `__call__`/`encode`/`decode` interface."""

    config: T5Config

    def setup(self):
        cfg = self.config
        self.shared_embedding = layers.Embed(
            cfg.vocab_size, cfg.emb_dim, cfg.activation_dtype, name="token_embedder"
        )
        self.encoder = Encoder(cfg, self.shared_embedding)
        decoder_cfg = (
            cfg
            if cfg.decoder_dropout_rate is None
            else cfg.replace(dropout_rate=cfg.decoder_dropout_rate)
        )
        self.decoder = Decoder(decoder_cfg, self.shared_embedding)

    def encode(
        self,
        encoder_input_tokens: Array,
        encoder_segment_ids: Array | None = None,
        enable_dropout: bool = True,
    ) -> Array:
        """`[batch, input_length]` token ids (0 = padding) -> `[batch, input_length, embed]`.

        Item-level inputs are `[batch, input_length, k]`: position p is one item given by its
        k semantic-id tokens, embedded as their sum (a position whose first token is 0 is
        padding). With `config.encoder_causal` position p attends to positions <= p only.
        """
        tokens = encoder_input_tokens
        if tokens.ndim not in (2, 3):
            raise ValueError(
                f"encoder_input_tokens must be [batch, length] or [batch, length, k], "
                f"got {tokens.shape}"
            )
        valid = input_mask(tokens)
        mask = layers.make_attention_mask(valid, valid)
        if encoder_segment_ids is not None:
            mask &= layers.make_attention_mask(encoder_segment_ids, encoder_segment_ids, jnp.equal)
        if self.config.encoder_causal:
            length = tokens.shape[1]
            mask &= (jnp.arange(length)[:, None] >= jnp.arange(length)[None, :])[None, None]
        return self.encoder(tokens, mask, deterministic=not enable_dropout)

    def decode(
        self,
        encoded: Array,
        encoder_input_tokens: Array,
        decoder_input_tokens: Array,
        decoder_target_tokens: Array,
        encoder_segment_ids: Array | None = None,
        decoder_segment_ids: Array | None = None,
        decoder_positions: Array | None = None,
        enable_dropout: bool = True,
        decode: bool = False,
        max_decode_length: int | None = None,
        cross_cache: str = "auto",
        decoder_cross_positions: Array | None = None,
    ) -> Array:
        """Decoder logits `[batch, target_length, vocab]` given the encoder outputs.

        `encoder_input_tokens` only provides the padding mask. `decoder_positions` is accepted
        for t5x compatibility; relative positions within a packed segment need no offsets.
        With `decode=True` the inputs are one token per step (see the module docstring);
        `encoded` may then have one row per query while the decoder tokens have `n` rows per
        query (beams), and `cross_cache` ("auto", "fill", "reuse") says when the
        cross-attention projects the encoder outputs (see `layers.MultiHeadAttention`).

        `decoder_cross_positions [batch, target_length]` (prefix-shared training): decoder
        token i attends only to encoder positions j <= decoder_cross_positions[i] of the same
        encoder segment, i.e. to the prefix of the history that precedes its target.
        """
        del decoder_positions
        enc_valid = input_mask(encoder_input_tokens)
        cross_distance = None
        if self.config.cross_recency_bias:
            cross_distance = recency_distance(enc_valid, decoder_cross_positions)
        if decoder_cross_positions is not None:
            if decode:
                raise ValueError("decoder_cross_positions is for teacher-forced training")
            self_mask = layers.make_decoder_mask(decoder_target_tokens, decoder_segment_ids)
            cross_mask = prefix_cross_mask(
                decoder_target_tokens, decoder_cross_positions, enc_valid, encoder_segment_ids
            )
        elif decode:
            if encoder_segment_ids is not None or decoder_segment_ids is not None:
                raise ValueError("packed segment ids cannot be used with decode=True")
            self_mask = None
            cross_mask = enc_valid[:, None, None, :]  # [batch, 1, 1, input_length]
        else:
            self_mask = layers.make_decoder_mask(decoder_target_tokens, decoder_segment_ids)
            cross_mask = layers.make_attention_mask(decoder_target_tokens > 0, enc_valid)
            if encoder_segment_ids is not None:
                if decoder_segment_ids is None:
                    raise ValueError("encoder_segment_ids given without decoder_segment_ids")
                cross_mask &= layers.make_attention_mask(
                    decoder_segment_ids, encoder_segment_ids, jnp.equal
                )
        return self.decoder(
            encoded,
            decoder_input_tokens,
            self_mask,
            cross_mask,
            deterministic=not enable_dropout,
            decode=decode,
            max_decode_length=max_decode_length,
            cross_cache=cross_cache,
            cross_distance=cross_distance,
        )

    def __call__(
        self,
        encoder_input_tokens: Array,
        decoder_input_tokens: Array,
        decoder_target_tokens: Array,
        encoder_segment_ids: Array | None = None,
        decoder_segment_ids: Array | None = None,
        encoder_positions: Array | None = None,
        decoder_positions: Array | None = None,
        *,
        enable_dropout: bool = True,
        decode: bool = False,
        decoder_cross_positions: Array | None = None,
    ) -> Array:
        """Teacher-forced logits `[batch, target_length, vocab]` (float32).

        `decoder_input_tokens` is `decoder_target_tokens` shifted right with 0 as the start
        token (per segment when packed); token 0 is padding and is masked out. What training
        does with the logits (and with the encoder's outputs, e.g. the semantic-id recipe's
        next-item loss) is the model adapter's (`jaxrec.models.adapters`): the network is
        forward-only.
        """
        del encoder_positions
        encoded = self.encode(
            encoder_input_tokens, encoder_segment_ids, enable_dropout=enable_dropout
        )
        logits = self.decode(
            encoded,
            encoder_input_tokens,
            decoder_input_tokens,
            decoder_target_tokens,
            encoder_segment_ids=encoder_segment_ids,
            decoder_segment_ids=decoder_segment_ids,
            decoder_positions=decoder_positions,
            enable_dropout=enable_dropout,
            decode=decode,
            decoder_cross_positions=decoder_cross_positions,
        )
        return logits

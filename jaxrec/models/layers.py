"""Building blocks of the T5 v1.1 network: RMS norm, dense, embedding, relative position biases,
multi-head attention (with the incremental-decoding cache) and the gated MLP.

Conventions follow t5x's minimal T5 (`t5x/examples/t5/layers.py`): parameters are float32 with
logical axis names (`vocab`, `embed`, `joined_kv`, `mlp`, `heads`, `relpos_buckets`), dense
kernels are stored 2-D (`[in, out]`), attention logits are not scaled by 1/sqrt(head_dim) (the
scale is folded into the query initialiser), and dropout is broadcast along the length axis.
The logical-to-mesh rules live in `jaxrec.partitioning`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Array = jax.Array
Initializer = Callable[..., Array]

# Additive bias of masked attention logits (finite, so fully masked rows stay NaN-free).
NEG_INF = -1e10

default_kernel_init = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")


def constrain(x: Array, axes: tuple[str | None, ...]) -> Array:
    """Logical sharding constraint (a no-op unless logical axis rules and a mesh are active)."""
    return nn.with_logical_constraint(x, axes)


class LayerNorm(nn.Module):
    """T5 layer norm: RMS normalisation with a learned scale, no mean and no bias."""

    epsilon: float = 1e-6
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        x32 = jnp.asarray(x, jnp.float32)
        mean_square = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
        scale = self.param(
            "scale",
            nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
            (x.shape[-1],),
            jnp.float32,
        )
        return (x32 * lax.rsqrt(mean_square + self.epsilon) * scale).astype(self.dtype)


@jax.custom_vjp
def matmul(x: Array, kernel: Array) -> Array:
    """`x [n, in] @ kernel [in, out]` with a hand-written weight gradient.

    Left to itself, XLA:CPU transposes the wide operand of the weight-gradient matmul inside the
    elementwise fusion that produces it (strided accesses), which made the MLP backward pass
    3-4x slower than its matmuls.
    """
    return jnp.dot(x, kernel)


def _matmul_fwd(x, kernel):
    return jnp.dot(x, kernel), (x, kernel)


def _matmul_bwd(residuals, dy):
    x, kernel = residuals
    dx = jnp.dot(dy, kernel.T)
    # Transpose the narrower of x [n, in] and dy [n, out]; the barrier keeps the transpose a
    # plain copy instead of a strided loop over the producer's fused elementwise ops.
    if x.shape[1] <= dy.shape[1]:
        dkernel = jnp.dot(lax.optimization_barrier(x.T), dy)
    else:
        dkernel = jnp.dot(lax.optimization_barrier(dy.T), x).T
    return dx, dkernel


matmul.defvjp(_matmul_fwd, _matmul_bwd)


class Dense(nn.Module):
    """Bias-free linear map from `in_features` to `features` with a 2-D `[in, out]` kernel.

    `features` may be a tuple (e.g. `(heads, head_dim)`): the output is reshaped to it. With
    `in_axes=2` the last two input axes are contracted (the attention output projection).
    """

    in_features: int
    features: int | tuple[int, ...]
    kernel_axes: tuple[str, str]
    in_axes: int = 1
    dtype: Any = jnp.float32
    kernel_init: Initializer = default_kernel_init

    def setup(self):
        out = int(np.prod(self.features))
        self.kernel = self.param(
            "kernel",
            nn.with_logical_partitioning(self.kernel_init, self.kernel_axes),
            (self.in_features, out),
            jnp.float32,
        )

    def __call__(self, x: Array) -> Array:
        batch_shape = x.shape[: x.ndim - self.in_axes]
        x2d = x.reshape(-1, self.in_features).astype(self.dtype)
        y = matmul(x2d, self.kernel.astype(self.dtype))
        features = self.features if isinstance(self.features, tuple) else (self.features,)
        return y.reshape(*batch_shape, *features)


class Embed(nn.Module):
    """Token embedding `[vocab, embed]`, looked up with a gather (cheaper than t5x's one-hot
    contraction on CPU; GSPMD partitions gathers on TPU)."""

    num_embeddings: int
    features: int
    dtype: Any = jnp.float32
    embedding_init: Initializer = nn.initializers.normal(stddev=1.0)

    def setup(self):
        self.embedding = self.param(
            "embedding",
            nn.with_logical_partitioning(self.embedding_init, ("vocab", "embed")),
            (self.num_embeddings, self.features),
            jnp.float32,
        )

    def __call__(self, tokens: Array) -> Array:
        if not jnp.issubdtype(tokens.dtype, jnp.integer):
            raise ValueError(f"token ids must be integers, got {tokens.dtype}")
        x = jnp.take(self.embedding, tokens, axis=0).astype(self.dtype)
        return constrain(x, ("batch", "length", "embed"))

    def sum_tokens(self, tokens: Array) -> Array:
        """`[batch, length, k]` ids -> `[batch, length, embed]`: the sum of each position's k
        token embeddings (an item given as its k semantic-id tokens, one encoder position)."""
        if not jnp.issubdtype(tokens.dtype, jnp.integer):
            raise ValueError(f"token ids must be integers, got {tokens.dtype}")
        x = jnp.take(self.embedding, tokens, axis=0).sum(axis=-2).astype(self.dtype)
        return constrain(x, ("batch", "length", "embed"))

    def attend(self, query: Array) -> Array:
        """Logits against the embedding (tied output layer), in float32."""
        return jnp.dot(query.astype(jnp.float32), self.embedding.T)


def relative_position_buckets(
    query_length: int,
    key_length: int,
    bidirectional: bool,
    num_buckets: int,
    max_distance: int,
) -> np.ndarray:
    """T5's bucket of every (query, key) offset: `[query_length, key_length]` int32.

    Half the buckets are exact small distances, the rest grow logarithmically up to
    `max_distance`; bidirectional buckets split the range between keys before and after the
    query. Computed in numpy float32 on static shapes (the same values as Mesh TF, t5x and
    Hugging Face).
    """
    offset = np.arange(key_length)[None, :] - np.arange(query_length)[:, None]  # key - query
    n = -offset
    bucket = np.zeros_like(n)
    if bidirectional:
        num_buckets //= 2
        bucket += (n < 0).astype(n.dtype) * num_buckets
        n = np.abs(n)
    else:
        n = np.maximum(n, 0)
    max_exact = num_buckets // 2
    ratio = n.astype(np.float32) / np.float32(max_exact) + np.finfo(np.float32).eps
    large = max_exact + (
        np.log(ratio) / np.float32(np.log(max_distance / max_exact)) * (num_buckets - max_exact)
    ).astype(np.int32)
    large = np.minimum(large, num_buckets - 1)
    bucket += np.where(n < max_exact, n, large)
    return bucket.astype(np.int32)


class RelativePositionBiases(nn.Module):
    """Per-head learned bias of each relative-position bucket, shared by a whole stack."""

    num_buckets: int
    max_distance: int
    num_heads: int
    dtype: Any = jnp.float32
    embedding_init: Initializer = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")

    @nn.compact
    def __call__(self, query_length: int, key_length: int, bidirectional: bool = True) -> Array:
        """Returns the bias `[1, heads, query_length, key_length]`."""
        table = self.param(
            "rel_embedding",
            nn.with_logical_partitioning(self.embedding_init, ("heads", "relpos_buckets")),
            (self.num_heads, self.num_buckets),
            jnp.float32,
        )
        buckets = relative_position_buckets(
            query_length, key_length, bidirectional, self.num_buckets, self.max_distance
        )
        # A gather with static indices: [heads, buckets] -> [heads, q, k].
        bias = jnp.take(table, jnp.asarray(buckets), axis=1)
        return bias[None].astype(self.dtype)


class RecencyBias(nn.Module):
    """Per-head learned bias of cross-attention by recency: how many items an encoder position
    lies before the decoder's latest visible one (0 = the latest; `max_distance - 1` and
    beyond share one entry).

    A causal encoder cannot mark its last position (a position never sees what follows), and
    T5's cross-attention has no position bias, so without this the decoder cannot tell the
    most recent history item from earlier ones.
    """

    num_heads: int
    max_distance: int = 32
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, distance: Array) -> Array:
        """`distance [batch, q, k]` int -> bias `[batch, heads, q, k]`."""
        table = self.param(
            "rel_embedding",
            nn.with_logical_partitioning(nn.initializers.zeros, ("heads", "relpos_buckets")),
            (self.num_heads, self.max_distance),
            jnp.float32,
        )
        d = jnp.clip(distance, 0, self.max_distance - 1)
        return jnp.moveaxis(jnp.take(table, d, axis=1), 0, 1).astype(self.dtype)


def mask_to_bias(mask: Array, dtype: Any = jnp.float32) -> Array:
    """Boolean attention mask -> additive bias (0 where attended, NEG_INF elsewhere)."""
    return jnp.where(mask, jnp.zeros((), dtype), jnp.asarray(NEG_INF, dtype))


def make_attention_mask(query_input: Array, key_input: Array, pairwise_fn=jnp.multiply) -> Array:
    """`[batch, q]` x `[batch, k]` -> boolean mask `[batch, 1, q, k]`."""
    mask = pairwise_fn(query_input[:, :, None], key_input[:, None, :])
    return mask[:, None].astype(bool)


def make_decoder_mask(
    decoder_target_tokens: Array, decoder_segment_ids: Array | None = None
) -> Array:
    """Causal mask over non-padding target positions (and within segments when packed)."""
    length = decoder_target_tokens.shape[-1]
    causal = jnp.arange(length)[:, None] >= jnp.arange(length)[None, :]  # [q, k]
    valid = decoder_target_tokens > 0
    mask = make_attention_mask(valid, valid) & causal[None, None]
    if decoder_segment_ids is not None:
        mask &= make_attention_mask(decoder_segment_ids, decoder_segment_ids, jnp.equal)
    return mask


class MultiHeadAttention(nn.Module):
    """Multi-head dot-product attention with an additive bias (mask + relative positions).

    Decoding cache (collection 'cache', created by the first call with `decode=True`):
      self-attention: `cached_key`, `cached_value` `[batch, heads, max_length, head_dim]`,
        written at position `decode_position` each step;
      cross-attention: `cached_key`, `cached_value` `[batch, heads, input_length, head_dim]`,
        the projected encoder outputs, computed at the step where `decode_position == 0`
        and reused afterwards.

    Shared keys/values: `inputs_q` may have `n` times as many rows as `inputs_kv` (rows
    `b * n .. (b + 1) * n - 1` attend to key row `b`), e.g. the beams of one query attending to
    its encoder outputs. The queries are then folded into one `[n * q]` block per key row, so
    the keys are read once per query instead of once per beam.
    """

    num_heads: int
    head_dim: int
    dtype: Any = jnp.float32
    dropout_rate: float = 0.0
    float32_logits: bool = True
    is_cross_attention: bool = False
    kernel_init: Initializer = nn.initializers.variance_scaling(1.0, "fan_in", "normal")

    @nn.compact
    def __call__(
        self,
        inputs_q: Array,
        inputs_kv: Array,
        bias: Array | None,
        *,
        deterministic: bool,
        decode: bool = False,
        decode_position: Array | None = None,
        cross_cache: str = "auto",
    ) -> Array:
        """Attends `inputs_q [batch, q, embed]` to `inputs_kv [batch, k, embed]`.

        Args:
          bias: additive logits bias broadcastable to `[batch, heads, q, k]`; in a decoding step
            `[batch or 1, heads or 1, 1, max_length]` for self-attention.
          deterministic: disables dropout.
          decode: use (and on the first call create) the decoding cache.
          decode_position: scalar int32 index of the current decoding step.
          cross_cache: how a decoding cross-attention gets the encoder keys/values: "auto"
            (t5x's convention: project them when `decode_position == 0`, else reuse the
            cache), "fill" (project now) or "reuse" (read the cache). Decoders that know the
            step statically pass "fill"/"reuse" and skip a per-step conditional copy.

        Returns:
          `[batch, q, embed]`.
        """
        embed = inputs_q.shape[-1]
        heads, depth = self.num_heads, self.head_dim

        def projection(name, init):
            return Dense(
                embed, (heads, depth), ("embed", "joined_kv"), dtype=self.dtype,
                kernel_init=init, name=name,
            )  # fmt: skip

        # T5 does not divide logits by sqrt(depth): the scale is folded into the query init.
        query_init = lambda *a: self.kernel_init(*a) / jnp.sqrt(depth).astype(a[-1])
        query_proj = projection("query", query_init)
        key_proj = projection("key", self.kernel_init)
        value_proj = projection("value", self.kernel_init)
        query = constrain(query_proj(inputs_q), ("batch", "length", "heads", "kv"))

        cache_ready = decode and self.has_variable("cache", "cached_key")
        if decode and self.is_cross_attention:
            key, value = self._cross_cache(
                key_proj, value_proj, inputs_kv, decode_position, cache_ready, cross_cache
            )
        else:
            key = _heads_first(key_proj(inputs_kv))
            value = _heads_first(value_proj(inputs_kv))
            if decode:
                key, value = self._self_cache(key, value, decode_position, cache_ready)
        # key, value: [kv_batch, heads, k, depth] (the decoding caches' own layout, read in
        # place). Batched matmuls with heads ahead of the rows are much cheaper on XLA:CPU than
        # einsums over [batch, length, heads, depth] (no transposes inside the dot fusions).
        batch, q_len = query.shape[:2]
        query = _heads_first(_fold_queries(query, key.shape[0], bias))  # [kv_b, h, n * q, d]

        if self.float32_logits:
            query, key = query.astype(jnp.float32), key.astype(jnp.float32)
        logits = jnp.matmul(query, jnp.swapaxes(key, -1, -2))  # [kv_batch, heads, n * q, k]
        if bias is not None:
            logits = logits + bias.astype(logits.dtype)
        weights = jax.nn.softmax(logits.astype(jnp.float32)).astype(self.dtype)
        if not deterministic and self.dropout_rate > 0.0:
            # Broadcast along the query axis, as t5x and Mesh TF do.
            weights = nn.Dropout(self.dropout_rate, broadcast_dims=(-2,))(
                weights, deterministic=False
            )
        x = jnp.matmul(weights, value.astype(self.dtype))  # [kv_batch, heads, n * q, depth]
        x = jnp.swapaxes(x, 1, 2).reshape(batch, q_len, heads, depth)
        out = Dense(
            heads * depth, embed, ("joined_kv", "embed"), in_axes=2, dtype=self.dtype,
            kernel_init=self.kernel_init, name="out",
        )  # fmt: skip
        return out(x)

    def _self_cache(self, key, value, position, cache_ready):
        """Writes this step's key/value `[batch, heads, 1, depth]` into the cache; returns the
        cached sequence `[batch, heads, max_length, depth]` (later positions are masked)."""
        cached_key = self.variable("cache", "cached_key", jnp.zeros, key.shape, key.dtype)
        cached_value = self.variable("cache", "cached_value", jnp.zeros, value.shape, value.dtype)
        if not cache_ready:  # the initialising call: shapes only
            return key, value
        if key.shape[2] != 1:
            raise ValueError(f"cached decoding feeds one token per step, got length {key.shape[2]}")
        start = (0, 0, position, 0)
        cached_key.value = lax.dynamic_update_slice(cached_key.value, key, start)
        cached_value.value = lax.dynamic_update_slice(cached_value.value, value, start)
        return cached_key.value, cached_value.value

    def _cross_cache(self, key_proj, value_proj, inputs_kv, position, cache_ready, mode):
        """Projects the encoder outputs once (at position 0) and reuses them afterwards.

        Returns key and value in the cache's layout `[batch, heads, input_length, depth]`.
        """
        if mode not in ("auto", "fill", "reuse"):
            raise ValueError(f"cross_cache must be 'auto', 'fill' or 'reuse', got {mode!r}")
        heads, depth, dtype = self.num_heads, self.head_dim, self.dtype
        w_key, w_value = key_proj.kernel, value_proj.kernel

        def project(_):
            kv = inputs_kv.astype(dtype)
            shape = (*kv.shape[:2], heads, depth)
            key = jnp.dot(kv, w_key.astype(dtype)).reshape(shape)
            value = jnp.dot(kv, w_value.astype(dtype)).reshape(shape)
            return _heads_first(key), _heads_first(value)

        if not cache_ready:  # the initialising call: create the cache
            key, value = project(None)
            self.variable("cache", "cached_key", jnp.zeros, key.shape, key.dtype)
            self.variable("cache", "cached_value", jnp.zeros, value.shape, value.dtype)
            return key, value
        cached_key = self.variable("cache", "cached_key")
        cached_value = self.variable("cache", "cached_value")
        if mode == "reuse":
            return cached_key.value, cached_value.value
        if mode == "fill":
            key, value = project(None)
        else:
            key, value = lax.cond(
                position == 0, project, lambda c: c, (cached_key.value, cached_value.value)
            )
        cached_key.value, cached_value.value = key, value
        return key, value


def _heads_first(x: Array) -> Array:
    """`[batch, length, heads, depth]` -> `[batch, heads, length, depth]`."""
    return constrain(jnp.swapaxes(x, 1, 2), ("batch", "heads", "length", "kv"))


def _fold_queries(query: Array, kv_batch: int, bias: Array | None) -> Array:
    """`query [n * kv_batch, q, h, d]` -> `[kv_batch, n * q, h, d]` (see `MultiHeadAttention`)."""
    batch, q_len = query.shape[:2]
    if batch == kv_batch:
        return query
    if batch % kv_batch:
        raise ValueError(
            f"attention: {batch} query rows cannot share {kv_batch} key rows (not a multiple)"
        )
    if bias is not None and (bias.shape[0] not in (1, kv_batch) or bias.shape[2] != 1):
        raise ValueError(
            "attention with shared key rows needs a bias of shape [1 or key rows, heads or 1, "
            f"1, keys], got {bias.shape}"
        )
    return query.reshape(kv_batch, (batch // kv_batch) * q_len, *query.shape[2:])


class MlpBlock(nn.Module):
    """Feed-forward block; ('gelu', 'linear') is T5 v1.1's gated GELU (tanh approximation)."""

    intermediate_dim: int
    activations: Sequence[str] = ("gelu", "linear")
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32
    kernel_init: Initializer = default_kernel_init

    @nn.compact
    def __call__(self, x: Array, deterministic: bool) -> Array:
        embed = x.shape[-1]
        hidden = None
        for i, name in enumerate(self.activations):
            dense_name = "wi" if len(self.activations) == 1 else f"wi_{i}"
            h = Dense(
                embed, self.intermediate_dim, ("embed", "mlp"), dtype=self.dtype,
                kernel_init=self.kernel_init, name=dense_name,
            )(x)  # fmt: skip
            h = _activation(name)(h)
            hidden = h if hidden is None else hidden * h
        hidden = nn.Dropout(self.dropout_rate, broadcast_dims=(-2,))(
            hidden, deterministic=deterministic
        )
        hidden = constrain(hidden, ("batch", "length", "mlp"))
        return Dense(
            self.intermediate_dim, embed, ("mlp", "embed"), dtype=self.dtype,
            kernel_init=self.kernel_init, name="wo",
        )(hidden)  # fmt: skip


def _activation(name: str) -> Callable[[Array], Array]:
    if name == "linear":
        return lambda x: x
    if name in ("gelu", "gelu_new", "gelu_pytorch_tanh"):
        return lambda x: nn.gelu(x, approximate=True)
    if name == "gelu_exact":
        return lambda x: nn.gelu(x, approximate=False)
    if hasattr(nn, name):
        return getattr(nn, name)
    raise ValueError(f"unknown activation {name!r}")

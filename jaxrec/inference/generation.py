"""Beam-search generation with the Flax T5 network: the encoder runs once per query, the
decoder steps through a KV cache, the whole search is one jitted function.

    generate = make_generate_fn(Transformer(cfg), eos_id=1, num_beams=20, max_decode_len=5)
    seqs, scores = generate(params, encoder_tokens, Constraint.from_table(table))
    # seqs [batch, num_returns, max_decode_len], scores [batch, num_returns], best first

Beams of one query share their encoder outputs: the first decoder step runs on one row per
query and projects the encoder outputs into a cross-attention cache with one row per query;
later steps run on one row per beam, and the network folds each query's beams onto that row
(`layers.MultiHeadAttention`), so the keys/values are neither copied to the beams nor reordered.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrec.inference.decoding import Constraint, DecodingState, beam_search

# Cache leaves of the network's cross-attention: equal for all beams of a query.
CROSS_ATTENTION = "encoder_decoder_attention"


def init_cache(model: nn.Module, batch: int, input_shape: int | tuple, max_decode_len: int):
    """Zero decoding cache for `batch` rows (shapes from `jax.eval_shape`, no FLOPs).

    `input_shape` is the input length, or `(length, k)` for item-level inputs.
    """
    input_shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
    enc = jnp.ones((batch,) + input_shape, jnp.int32)
    dec = jnp.ones((batch, max_decode_len), jnp.int32)
    shapes = jax.eval_shape(
        functools.partial(model.init, decode=True, enable_dropout=False),
        jax.random.PRNGKey(0),
        enc,
        dec,
        dec,
    )["cache"]
    return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def make_generate_fn(
    model: nn.Module,
    eos_id: int,
    num_beams: int = 20,
    num_returns: int | None = None,
    max_decode_len: int = 5,
    alpha: float = 0.0,
) -> Callable:
    """Jitted `(params, encoder_tokens, constraint | None) -> (seqs, scores)`.

    `encoder_tokens` is `[batch, len]`, or `[batch, len, k]` item-level inputs.

    `params` is the network's parameter tree (unboxed); `constraint` a `Constraint` or None for
    unconstrained search. Shapes are static: each new batch or input length compiles once.
    """

    @jax.jit
    def generate(params, encoder_tokens: jnp.ndarray, constraint: Constraint | None):
        batch = encoder_tokens.shape[0]
        variables = {"params": params}
        encoded = model.apply(
            variables, encoder_tokens, enable_dropout=False, method=model.encode
        )  # [batch, input_length, embed]

        def tokens_to_logits(ds: DecodingState):
            # Rows b * num_beams .. (b + 1) * num_beams - 1 (or row b on the unexpanded first
            # step) belong to query b; the cross-attention shares query b's keys and values.
            logits, mutated = model.apply(
                {"params": params, "cache": ds.cache},
                encoded,
                encoder_tokens,
                ds.cur_token,
                ds.cur_token,
                enable_dropout=False,
                decode=True,
                max_decode_length=max_decode_len,
                # The unexpanded first step projects the encoder outputs, later steps reuse them.
                cross_cache="fill" if ds.cur_token.shape[0] == batch else "reuse",
                mutable=["cache"],
                method=model.decode,
            )
            return logits[:, 0], mutated["cache"]

        return beam_search(
            jnp.zeros((batch, max_decode_len), jnp.int32),
            init_cache(model, batch, encoder_tokens.shape[1:], max_decode_len),
            tokens_to_logits,
            eos_id,
            num_decodes=num_beams,
            alpha=alpha,
            max_decode_len=max_decode_len,
            constraint=constraint,
            num_returns=num_returns,
            expand_after_first_step=True,
            per_query_cache=lambda path: CROSS_ATTENTION in path,
        )

    return generate

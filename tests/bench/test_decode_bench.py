"""The decode benchmark's FLOP accounting, checked against XLA's own cost analysis."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.bench.decode import matmul_flops_per_batch
from jaxrec.inference.decoding import expand_rows
from jaxrec.inference.generation import CROSS_ATTENTION, init_cache
from jaxrec.models.configs import get_config
from jaxrec.models.network import Transformer

CFG = get_config("tiger", vocab_size=1027, dropout_rate=0.0)


def _xla_flops(fn, *args) -> float:
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    return float((cost[0] if isinstance(cost, list) else cost)["flops"])


def test_matmul_flops_match_xla_cost_analysis():
    model = Transformer(CFG)
    batch, length, beams, steps = 2, 40, 8, 5
    enc = jnp.ones((batch, length), jnp.int32)
    shapes = jax.eval_shape(model.init, jax.random.key(0), enc, enc[:, :steps], enc[:, :steps])
    params = nn.meta.unbox(jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes))
    params = params["params"]

    def decode(params, encoded, tokens, cache, mode):
        return model.apply(
            {"params": params, "cache": cache}, encoded, enc, tokens, tokens,
            enable_dropout=False, decode=True, max_decode_length=steps, mutable=["cache"],
            method=Transformer.decode, cross_cache=mode,
        )  # fmt: skip

    def first_step(params, tokens):  # encoder, keys/values, one decoder row per query
        encoded = model.apply({"params": params}, enc, enable_dropout=False, method=model.encode)
        return decode(params, encoded, tokens, init_cache(model, batch, length, steps), "fill")

    encoded = jnp.zeros((batch, length, CFG.emb_dim))
    cache = expand_rows(
        init_cache(model, batch, length, steps), beams, skip=lambda p: CROSS_ATTENTION in p
    )
    beam_step = lambda p, t, c: decode(p, encoded, t, c, "reuse")  # noqa: E731
    xla_first = _xla_flops(first_step, params, jnp.ones((batch, 1), jnp.int32))
    xla_beam_step = _xla_flops(beam_step, params, jnp.ones((batch * beams, 1), jnp.int32), cache)

    ours_first = matmul_flops_per_batch(CFG, batch, length, beams, 1)
    ours_beam_step = matmul_flops_per_batch(CFG, batch, length, beams, steps) - ours_first
    # XLA also counts the elementwise work (norms, softmax, GELU): a few percent on top.
    np.testing.assert_allclose(ours_first, xla_first, rtol=0.05)
    np.testing.assert_allclose(ours_beam_step, (steps - 1) * xla_beam_step, rtol=0.05)
    assert ours_first < xla_first and ours_beam_step < (steps - 1) * xla_beam_step

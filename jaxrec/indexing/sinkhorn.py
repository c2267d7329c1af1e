"""Sinkhorn-Knopp "uniform semantic mapping" (LC-Rec) computed in log space.

LC-Rec balances the last RQ-VAE level by solving an entropic optimal-transport problem between
the items of a batch and the codes of the level: every code should receive the same share of
items. Its implementation forms `exp(-d / epsilon)` directly, which with `epsilon = 0.003` and
distances rescaled to [-1, 1] reaches `exp(333)`: it only works in float64. Here the same
iteration runs on log-potentials with `logsumexp`, so float32 is exact enough and nothing
overflows for any epsilon > 0.

    log_plan = -d / eps
    repeat:   log_plan -= logsumexp over items  (each code gets 1/K of the mass)
              log_plan -= logsumexp over codes  (each item gets 1/n of the mass)
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp


def center_distances(distances: jax.Array) -> jax.Array:
    """Rescale `distances` to [-1, 1] (LC-Rec's convention, so epsilon means the same thing)."""
    hi = jnp.max(distances)
    lo = jnp.min(distances)
    middle = (hi + lo) / 2
    amplitude = hi - middle + 1e-5
    return (distances - middle) / amplitude


@functools.partial(jax.jit, static_argnames=("iterations",))
def sinkhorn_log_plan(distances: jax.Array, epsilon: float, iterations: int = 50) -> jax.Array:
    """Log of the balanced transport plan between items and codes.

    Args:
      distances: [n, K] item-to-code distances (any scale; rescaled to [-1, 1] first).
      epsilon: entropic regularisation (LC-Rec uses 0.003); smaller is closer to argmin.
      iterations: Sinkhorn iterations (static).

    Returns:
      [n, K] float32 log-plan scaled so every row sums to 1 (a distribution over codes per
      item); column sums approach n / K, the uniform share.
    """
    n, k = distances.shape
    log_plan = -center_distances(distances.astype(jnp.float32)) / epsilon
    log_n = math.log(n)
    log_k = math.log(k)

    def step(_, lp):  # lp: [n, K]
        lp = lp - jax.nn.logsumexp(lp, axis=0, keepdims=True) - log_k
        lp = lp - jax.nn.logsumexp(lp, axis=1, keepdims=True) - log_n
        return lp

    log_plan = jax.lax.fori_loop(0, iterations, step, log_plan)
    return log_plan + log_n


@functools.partial(jax.jit, static_argnames=("iterations",))
def sinkhorn_codes(distances: jax.Array, epsilon: float, iterations: int = 50) -> jax.Array:
    """[n] int32 balanced code per item: argmax of the Sinkhorn plan of `distances` [n, K]."""
    return jnp.argmax(sinkhorn_log_plan(distances, epsilon, iterations), axis=1).astype(jnp.int32)

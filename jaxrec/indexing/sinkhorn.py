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

Big catalogues (`sinkhorn_log_plan_chunked`): the plan is `-d / eps + u[:, None] + v[None, :]`
with an item potential u [n] and a code potential v [K], and u is a function of v (the row
step). So the state carried between iterations is v alone, and one iteration is one pass over
the items in chunks: per chunk, u from v, then the chunk's column logsumexp, merged across
chunks. Memory is the [n, K] distances plus O(chunk x K).
"""

from __future__ import annotations

import functools
import logging
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

log = logging.getLogger(__name__)


def center_distances(distances: jax.Array, lo=None, hi=None) -> jax.Array:
    """Rescale `distances` to [-1, 1] (LC-Rec's convention, so epsilon means the same thing).

    `lo` / `hi`: the minimum and maximum to rescale by (default: those of `distances`; a chunk
    of a catalogue passes the whole catalogue's)."""
    hi = jnp.max(distances) if hi is None else hi
    lo = jnp.min(distances) if lo is None else lo
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


@functools.partial(jax.jit, static_argnames=("num_items", "with_rows"))
def _chunk_columns(distances, v, lo, hi, epsilon, *, num_items: int, with_rows: bool):
    """One chunk [c, K] of a Sinkhorn iteration: the column logsumexp [K] of its plan, with the
    item potentials u [c] of the row step for the code potentials v [K] (zero before the first
    column step); the caller merges the columns across chunks."""
    log_kernel = -center_distances(distances.astype(jnp.float32), lo, hi) / epsilon  # [c, K]
    if with_rows:
        u = -jax.nn.logsumexp(log_kernel + v[None, :], axis=1) - math.log(num_items)  # [c]
        log_kernel = log_kernel + u[:, None]
    return jax.nn.logsumexp(log_kernel, axis=0)  # [K]


@functools.partial(jax.jit, static_argnames=("num_items",))
def _chunk_plan(distances, v, lo, hi, epsilon, *, num_items: int):
    """The final log-plan rows [c, K] of one chunk (scaled as `sinkhorn_log_plan`'s)."""
    log_kernel = -center_distances(distances.astype(jnp.float32), lo, hi) / epsilon  # [c, K]
    u = -jax.nn.logsumexp(log_kernel + v[None, :], axis=1) - math.log(num_items)  # [c]
    return log_kernel + u[:, None] + v[None, :] + math.log(num_items)


def sinkhorn_log_plan_chunked(
    distances: np.ndarray,
    epsilon: float,
    iterations: int = 50,
    chunk_rows: int = 1 << 16,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """`sinkhorn_log_plan` of a catalogue too big to transform at once, chunk by chunk.

    Args:
      distances: [n, K] item-to-code distances on the host.
      epsilon, iterations: as for `sinkhorn_log_plan`.
      chunk_rows: items per chunk (device memory is O(chunk_rows x K)).
      out: optional float32 [n, K] array for the result; it may be `distances` itself (the
        distances are then overwritten, chunk by chunk, after the last iteration).

    Returns:
      The [n, K] float32 log-plan, equal to `sinkhorn_log_plan(distances, ...)` up to float
      rounding (the iterations are written with potentials instead of in place).
    """
    n, k = distances.shape
    chunk_rows = max(1, min(chunk_rows, n))
    lo, hi = jnp.float32(distances.min()), jnp.float32(distances.max())
    eps = jnp.float32(epsilon)
    v = jnp.zeros(k, jnp.float32)  # [K] code potentials
    start = time.perf_counter()
    for it in range(iterations):
        column = jnp.full(k, -jnp.inf, jnp.float32)  # running logsumexp over items [K]
        for i in range(0, n, chunk_rows):
            col = _chunk_columns(distances[i : i + chunk_rows], v, lo, hi, eps,
                                 num_items=n, with_rows=it > 0)  # fmt: skip
            column = jnp.logaddexp(column, col)
        v = -column - math.log(k)
        if it == 0 or (it + 1) % 10 == 0:
            elapsed = time.perf_counter() - start
            log.info("sinkhorn: iteration %d/%d over %d items (%.1f s, %.0f items/s)",
                     it + 1, iterations, n, elapsed, n * (it + 1) / elapsed)  # fmt: skip
    out = np.empty((n, k), np.float32) if out is None else out
    for i in range(0, n, chunk_rows):
        out[i : i + chunk_rows] = np.asarray(
            _chunk_plan(distances[i : i + chunk_rows], v, lo, hi, eps, num_items=n)
        )
    return out

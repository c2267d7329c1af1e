"""Seeded, jitted Lloyd k-means: RQ-VAE codebook initialisation (LC-Rec's k-means init) and the
sub-space codebooks of product quantization (`opq`)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def squared_distances(x: jax.Array, centroids: jax.Array) -> jax.Array:
    """[n, K] squared Euclidean distances between rows of x [n, d] and centroids [K, d]."""
    x2 = jnp.sum(x * x, axis=-1, keepdims=True)  # [n, 1]
    c2 = jnp.sum(centroids * centroids, axis=-1)  # [K]
    return jnp.maximum(x2 - 2.0 * x @ centroids.T + c2[None, :], 0.0)


@functools.partial(jax.jit, static_argnames=("iterations",))
def lloyd(x: jax.Array, centroids: jax.Array, iterations: int) -> jax.Array:
    """`iterations` Lloyd steps on x [n, d] from `centroids` [k, d]; returns [k, d].

    An empty cluster keeps its previous centroid, so duplicated inputs cannot produce NaNs.
    """
    k = centroids.shape[0]

    def step(_, c):  # c: [k, d]
        assign = jnp.argmin(squared_distances(x, c), axis=1)  # [n]
        one_hot = jax.nn.one_hot(assign, k, dtype=x.dtype)  # [n, k]
        counts = one_hot.sum(axis=0)  # [k]
        sums = one_hot.T @ x  # [k, d]
        return jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1.0)[:, None], c)

    return jax.lax.fori_loop(0, iterations, step, centroids)


@functools.partial(jax.jit, static_argnames=("k", "iterations"))
def kmeans(x: jax.Array, key: jax.Array, k: int, iterations: int = 50) -> jax.Array:
    """Cluster x [n, d] into k centroids [k, d] (`lloyd` from k rows drawn without
    replacement, with replacement when n < k)."""
    n = x.shape[0]
    idx = jax.random.choice(key, n, (k,), replace=n < k)
    return lloyd(x, x[idx], iterations)

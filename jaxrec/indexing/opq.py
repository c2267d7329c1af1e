"""Long unordered semantic ids by optimized product quantization (OPQ), as RPG uses them.

An item's long id is `num_codebooks` codes, one per sub-space of a rotated embedding: the
embedding [D] (whitened PCA to `pca_dim` dimensions) is rotated by an orthogonal R, cut into
`num_codebooks` blocks of `pca_dim / num_codebooks` dims and each block is replaced by the
nearest of `codebook_size` centroids of its sub-space. Unlike the residual (RQ-VAE) ids the
codes are unordered, so a model can predict them in parallel and score every item of the
catalogue as the sum of its codes' scores (`jaxrec.baselines.rpg`).

OPQ (Ge et al., CVPR 2013, non-parametric): alternate k-means in every sub-space (warm
started) with the rotation that best maps the embeddings onto their reconstruction
(orthogonal Procrustes: R = U Vᵀ for X̃ᵀ Ŷ = U S Vᵀ). Everything is seeded; the same inputs,
seed and settings give the same codes.

Two items can share every code (identical embeddings always do); `shared_ids` counts them, and
a model scoring by codes cannot tell such items apart (ties are ranked by item id).
"""

from __future__ import annotations

import dataclasses
import logging
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.data.dataset import DataError
from jaxrec.indexing import kmeans

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class LongIds:
    codes: np.ndarray  # [num_items, num_codebooks] int32 in [0, codebook_size)
    rotation: np.ndarray  # [pca_dim, pca_dim] orthogonal
    centroids: np.ndarray  # [num_codebooks, codebook_size, pca_dim / num_codebooks]
    distortion: list[float]  # mean squared reconstruction error after each round
    shared: int  # items whose full id another item also has


def whitened_pca(x: np.ndarray, dim: int) -> np.ndarray:
    """x [n, D] centred and projected on its top `dim` principal axes, each scaled to unit
    variance: [n, dim] float32."""
    x = np.asarray(x, np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    scale = s[:dim] / np.sqrt(max(len(x) - 1, 1))
    return (x @ vt[:dim].T / np.maximum(scale, 1e-12)).astype(np.float32)


def _blocks(z: jax.Array, m: int) -> jax.Array:
    """[n, D] -> [m, n, D / m] sub-vectors."""
    n, d = z.shape
    return z.reshape(n, m, d // m).transpose(1, 0, 2)


@jax.jit
def assign(z: jax.Array, centroids: jax.Array) -> jax.Array:
    """Codes [n, M] of z [n, D] (already rotated) under `centroids` [M, K, D/M]."""
    blocks = _blocks(z, centroids.shape[0])
    return jax.lax.map(
        lambda bc: jnp.argmin(kmeans.squared_distances(bc[0], bc[1]), axis=1), (blocks, centroids)
    ).T.astype(jnp.int32)


@jax.jit
def reconstruct(codes: jax.Array, centroids: jax.Array) -> jax.Array:
    """[n, D] concatenation of each item's code centroids."""
    m = centroids.shape[0]
    parts = centroids[jnp.arange(m)[None, :], codes]  # [n, M, D/M]
    return parts.reshape(codes.shape[0], -1)


def _refine(z: jax.Array, centroids: jax.Array, iterations: int) -> jax.Array:
    blocks = _blocks(z, centroids.shape[0])
    return jax.lax.map(lambda bc: kmeans.lloyd(bc[0], bc[1], iterations), (blocks, centroids))


def shared_ids(codes: np.ndarray) -> int:
    """Number of items whose full id [M] is also another item's."""
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    return int((counts[inverse.reshape(-1)] > 1).sum())


def check_widths(num_codebooks: int, codebook_size: int, pca_dim: int) -> None:
    """DataError unless the sub-spaces split `pca_dim` evenly (checked before any work)."""
    if num_codebooks < 1 or codebook_size < 2:
        raise DataError(f"--num-codebooks {num_codebooks} / --codebook-size {codebook_size}: "
                        "need at least 1 codebook of at least 2 codes")  # fmt: skip
    if pca_dim % num_codebooks:
        raise DataError(f"--pca-dim {pca_dim} is not a multiple of --num-codebooks {num_codebooks}")


def long_ids(
    embeddings: np.ndarray,
    num_codebooks: int = 32,
    codebook_size: int = 256,
    pca_dim: int = 128,
    seed: int = 0,
    rounds: int = 10,
    iterations: int = 10,
    source: str = "embeddings",
) -> LongIds:
    """OPQ long ids of `embeddings` [num_items, D]; see the module docstring.

    `rounds` alternations of `iterations` Lloyd steps and a Procrustes rotation, then a final
    `4 * iterations` Lloyd steps under the last rotation.
    """
    n, d = embeddings.shape
    check_widths(num_codebooks, codebook_size, pca_dim)
    if pca_dim > min(n, d):
        raise DataError(
            f"{source}: --pca-dim {pca_dim} exceeds what {n} items x {d} dims can give "
            f"({min(n, d)}); pass a smaller --pca-dim (a multiple of {num_codebooks})"
        )
    t0 = time.perf_counter()
    x = jnp.asarray(whitened_pca(embeddings, pca_dim))  # [n, D]
    key_rot, key_init = jax.random.split(jax.random.PRNGKey(seed))
    rotation, _ = jnp.linalg.qr(jax.random.normal(key_rot, (pca_dim, pca_dim)))
    z = x @ rotation
    keys = jax.random.split(key_init, num_codebooks)
    blocks = _blocks(z, num_codebooks)  # [M, n, D/M]
    centroids = jnp.stack(
        [kmeans.kmeans(blocks[m], keys[m], codebook_size, iterations) for m in range(num_codebooks)]
    )  # [M, K, D/M]
    distortion = []
    for r in range(rounds):
        codes = assign(z, centroids)
        y = reconstruct(codes, centroids)  # [n, D] in the rotated space
        distortion.append(float(jnp.mean(jnp.sum((z - y) ** 2, axis=1))))
        u, _, vt = jnp.linalg.svd(x.T @ y)
        rotation = u @ vt
        z = x @ rotation
        centroids = _refine(z, centroids, iterations)
        log.info("opq round %d/%d: distortion %.4f", r + 1, rounds, distortion[-1])
    centroids = _refine(z, centroids, 4 * iterations)
    codes = np.asarray(assign(z, centroids))
    distortion.append(float(jnp.mean(jnp.sum((z - reconstruct(codes, centroids)) ** 2, axis=1))))
    shared = shared_ids(codes)
    log.info(
        "opq: %d items -> %d x %d codes, distortion %.4f (of %.1f), %d item(s) share their id "
        "(%.1f s)", n, num_codebooks, codebook_size, distortion[-1], float(pca_dim), shared,
        time.perf_counter() - t0,
    )  # fmt: skip
    if shared > 0.01 * n:
        log.warning(
            "%s: %d of %d items (%.0f%%) share their whole id with another item; a model scoring "
            "items by their codes cannot tell them apart. Items with equal embeddings always "
            "share; joining collaborative embeddings (e.g. 'auto+2*transitions') separates them",
            source, shared, n, 100 * shared / n,
        )  # fmt: skip
    return LongIds(codes, np.asarray(rotation), np.asarray(centroids), distortion, shared)

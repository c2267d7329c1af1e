import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.indexing.sinkhorn import (
    center_distances,
    sinkhorn_codes,
    sinkhorn_log_plan,
    sinkhorn_log_plan_chunked,
)


def _distances(n, k, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 8)).astype(np.float32)
    c = rng.normal(size=(k, 8)).astype(np.float32)
    return ((z[:, None, :] - c[None, :, :]) ** 2).sum(-1).astype(np.float32)


def _reference_plan_float64(d, eps, iterations):
    """LC-Rec's exp-space algorithm; only safe in float64 and for moderate 1/eps."""
    d = np.asarray(center_distances(jnp.asarray(d)), np.float64)
    q = np.exp(-d / eps)
    q /= q.sum()
    n, k = q.shape
    for _ in range(iterations):
        q /= q.sum(axis=0, keepdims=True) * k
        q /= q.sum(axis=1, keepdims=True) * n
    return q * n


def test_stable_in_float32_with_tiny_epsilon():
    d = jnp.asarray(_distances(512, 64))
    # The naive formulation overflows in float32: this is what log space avoids.
    with np.errstate(over="ignore"):
        naive = np.exp(-np.asarray(center_distances(d)) / np.float32(0.003))
    assert not np.isfinite(naive).all()
    log_plan = sinkhorn_log_plan(d, 0.003, 100)
    assert log_plan.dtype == jnp.float32
    assert bool(jnp.isfinite(log_plan).all())
    plan = np.exp(np.asarray(log_plan, np.float64))
    np.testing.assert_allclose(plan.sum(axis=1), 1.0, atol=1e-4)
    # Column marginals approach the uniform share n / K = 8.
    assert np.abs(plan.sum(axis=0) - 8.0).max() < 0.5


def test_matches_float64_reference_where_it_is_computable():
    d = _distances(128, 16, seed=1)
    ours = np.exp(np.asarray(sinkhorn_log_plan(jnp.asarray(d), 0.05, 30), np.float64))
    ref = _reference_plan_float64(d, 0.05, 30)
    np.testing.assert_allclose(ours, ref, atol=2e-4)


def test_codes_are_balanced_and_follow_distances():
    n, k = 1024, 32
    d = _distances(n, k, seed=2)
    balanced = np.bincount(np.asarray(sinkhorn_codes(jnp.asarray(d), 0.003, 200)), minlength=k)
    greedy = np.bincount(d.argmin(axis=1), minlength=k)
    assert balanced.max() - balanced.min() < greedy.max() - greedy.min()
    assert balanced.max() <= 2 * n // k
    # A huge epsilon-free case: if each item is nearest to its own code, it keeps it.
    eye = 1.0 - np.eye(k, dtype=np.float32)
    assert np.array_equal(np.asarray(sinkhorn_codes(jnp.asarray(eye), 0.003, 50)), np.arange(k))


@pytest.mark.parametrize("eps", [1e-4, 0.003, 1.0])
def test_no_nan_for_any_epsilon_and_scale(eps):
    d = jnp.asarray(_distances(64, 16, seed=3) * 1e4)  # large raw distances
    assert bool(jnp.isfinite(sinkhorn_log_plan(d, eps, 20)).all())


@pytest.mark.parametrize("chunk_rows", [100, 333, 2048])
def test_chunked_plan_equals_the_one_piece_plan(chunk_rows):
    d = _distances(1000, 32, seed=3) * 7.0  # any scale: both rescale by the global range
    whole = np.asarray(sinkhorn_log_plan(jnp.asarray(d), 0.003, 50))
    chunked = sinkhorn_log_plan_chunked(d, 0.003, 50, chunk_rows)
    # The same iteration with potentials: equal up to float32 rounding (values reach ~1/eps).
    np.testing.assert_allclose(chunked, whole, atol=2e-3, rtol=2e-5)
    np.testing.assert_array_equal(chunked.argmax(axis=1), whole.argmax(axis=1))
    # In place: the distances buffer becomes the plan.
    buffer = d.copy()
    out = sinkhorn_log_plan_chunked(buffer, 0.003, 50, chunk_rows, out=buffer)
    assert out is buffer
    np.testing.assert_array_equal(buffer, chunked)

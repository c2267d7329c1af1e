"""Big-catalogue policies of the RQ-VAE: a step budget in whole epochs and k-means on a
sample; both leave catalogues below their thresholds exactly as before."""

import dataclasses

import numpy as np

from jaxrec.indexing.build import rqvae_index
from jaxrec.indexing.embed import synthetic_embeddings
from jaxrec.indexing.rqvae import RQVAEConfig, planned_epochs, train_rqvae

SMALL = RQVAEConfig(hidden_dims=(32,), latent_dim=8, levels=2, codes=8, batch_size=64,
                    epochs=3, kmeans_iterations=5)  # fmt: skip


def test_planned_epochs():
    cfg = RQVAEConfig()
    assert planned_epochs(12_101, cfg) == 200  # Beauty: unchanged
    assert planned_epochs(40_960, cfg) == 200  # the largest unchanged catalogue
    assert planned_epochs(100_000, cfg) == 81  # 98 steps per epoch, 8,000 steps
    assert planned_epochs(10_000_000, cfg) == 1  # at least one epoch
    assert planned_epochs(10_000_000, dataclasses.replace(cfg, max_steps=0)) == 200


def test_thresholds_leave_small_catalogues_unchanged():
    x = synthetic_embeddings(300, dim=24, seed=1)
    a = train_rqvae(x, SMALL)
    b = train_rqvae(x, dataclasses.replace(SMALL, max_steps=0, kmeans_sample=0))
    np.testing.assert_array_equal(a.assign(x)[0], b.assign(x)[0])
    assert len(a.epoch_seconds) == 3


def test_big_catalogue_policies_apply():
    x = synthetic_embeddings(600, dim=24, seed=2)
    cfg = dataclasses.replace(SMALL, max_steps=12, kmeans_sample=100)  # 10 steps per epoch
    index, report = rqvae_index(x, cfg)
    assert report["epochs"] == 1 and report["collisions"] == 0 and index.num_items == 600
    other = train_rqvae(x, dataclasses.replace(cfg, kmeans_sample=0))
    assert not np.array_equal(other.params["codebooks"], train_rqvae(x, cfg).params["codebooks"])


def test_chunked_assignment_equals_the_one_piece_assignment():
    # Big catalogues are assigned chunk by chunk (encoder, argmin levels, then Sinkhorn over
    # the stored distances); the result must be the one-piece assignment's.
    x = synthetic_embeddings(700, dim=24, seed=3)
    trained = train_rqvae(x, SMALL)
    codes, cost = trained.assign(x)
    plain, plain_cost = trained.assign(x, use_sinkhorn=False)
    assert not np.array_equal(codes, plain)  # Sinkhorn moves some items: a real check
    for chunk_rows in (128, 700, 1000):
        c, k, p = trained.assign_all(x, chunk_rows=chunk_rows)
        np.testing.assert_array_equal(c, codes)
        np.testing.assert_array_equal(p, plain)
        np.testing.assert_allclose(k, cost, atol=2e-3, rtol=2e-5)
        c, k, p = trained.assign_all(x, use_sinkhorn=False, chunk_rows=chunk_rows)
        np.testing.assert_array_equal(c, plain)
        np.testing.assert_allclose(k, plain_cost, rtol=1e-5, atol=1e-6)


def test_codebook_usage_is_per_level_when_a_collision_level_is_added():
    # Learnt levels over their K codes; the collision level over its own range (a wide range
    # there must not shrink the learnt levels' usage, as it once did at a million items).
    from jaxrec.indexing.build import _level_statistics

    codes = np.array([[0, 1, 0], [0, 1, 1], [0, 1, 2], [3, 2, 0]])
    stats = _level_statistics(codes, RQVAEConfig(levels=2, codes=4))
    assert stats["codebook_usage"] == [0.5, 0.5, 1.0]
    assert len(stats["perplexity"]) == 3

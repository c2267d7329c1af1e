import numpy as np
import pytest

from jaxrec.data.dataset import DataError
from jaxrec.indexing import opq
from jaxrec.indexing.embed import synthetic_embeddings


def small_ids(emb, seed=0, rounds=4):
    return opq.long_ids(emb, num_codebooks=4, codebook_size=16, pca_dim=16, seed=seed,
                        rounds=rounds, iterations=5)  # fmt: skip


def test_whitened_pca_has_unit_uncorrelated_columns():
    x = synthetic_embeddings(500, 48, seed=1)
    z = opq.whitened_pca(x, 12)
    assert z.shape == (500, 12) and z.dtype == np.float32
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.cov(z, rowvar=False), np.eye(12), atol=1e-3)


def test_codes_are_the_nearest_centroids_of_the_rotated_embedding():
    ids = small_ids(synthetic_embeddings(400, 48, seed=0))
    assert ids.codes.shape == (400, 4) and ids.codes.dtype == np.int32
    assert ids.codes.min() >= 0 and ids.codes.max() < 16
    np.testing.assert_allclose(ids.rotation @ ids.rotation.T, np.eye(16), atol=1e-4)
    # Brute force: each block of x R is closest to its own code's centroid.
    z = opq.whitened_pca(synthetic_embeddings(400, 48, seed=0), 16) @ ids.rotation
    for m in range(4):
        block = z[:, 4 * m : 4 * m + 4]  # [n, 4]
        d = ((block[:, None, :] - ids.centroids[m][None]) ** 2).sum(-1)  # [n, 16]
        chosen = d[np.arange(400), ids.codes[:, m]]
        np.testing.assert_allclose(chosen, d.min(axis=1), rtol=1e-4, atol=1e-5)


def test_rotation_rounds_lower_the_distortion_and_seed_fixes_the_codes():
    emb = synthetic_embeddings(400, 48, seed=2)
    ids = small_ids(emb, rounds=6)
    assert ids.distortion[-1] < ids.distortion[0]
    again = small_ids(emb, rounds=6)
    np.testing.assert_array_equal(ids.codes, again.codes)
    other = small_ids(emb, seed=1, rounds=6)
    assert not np.array_equal(ids.codes, other.codes)


def test_shared_ids_counts_items_whose_whole_id_repeats():
    codes = np.array([[1, 2], [1, 2], [1, 3], [0, 2], [0, 2], [0, 2], [5, 5]])
    assert opq.shared_ids(codes) == 5
    # Identical embeddings always share their id.
    emb = synthetic_embeddings(200, 48, seed=3)
    emb[10] = emb[20] = emb[30]
    ids = small_ids(emb)
    assert (ids.codes[10] == ids.codes[20]).all() and (ids.codes[20] == ids.codes[30]).all()
    assert ids.shared == opq.shared_ids(ids.codes) >= 3


def test_bad_widths_are_one_line_errors():
    emb = synthetic_embeddings(50, 24, seed=0)
    with pytest.raises(DataError, match="--pca-dim 10 is not a multiple of --num-codebooks 4"):
        opq.long_ids(emb, 4, 8, pca_dim=10)
    with pytest.raises(DataError, match=r"items.npy: --pca-dim 32 exceeds .* 50 items x 24 dims"):
        opq.long_ids(emb, 4, 8, pca_dim=32, source="items.npy")

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.data.dataset import Dataset, Item
from jaxrec.indexing.build import build_index, code_statistics
from jaxrec.indexing.collisions import count_colliding
from jaxrec.indexing.embed import synthetic_embeddings
from jaxrec.indexing.kmeans import kmeans
from jaxrec.indexing.rqvae import RQVAEConfig, train_rqvae

TINY = RQVAEConfig(
    hidden_dims=(32,),
    latent_dim=8,
    levels=3,
    codes=16,
    batch_size=64,
    epochs=6,
    kmeans_iterations=10,
    sk_iterations=30,
    sk_train_iterations=3,
)  # one compiled variant for every test here (Sinkhorn in training included)


@pytest.fixture(scope="module")
def data():
    return synthetic_embeddings(300, 48, seed=0, clusters=8, sub=4)


@pytest.fixture(scope="module")
def dataset():
    items = [Item(str(i)) for i in range(300)]
    seqs = [np.array([i, (i + 1) % 300, (i + 7) % 300]) for i in range(300)]
    return Dataset(name="t", users=[str(u) for u in range(300)], sequences=seqs, items=items)


def test_training_learns_and_codes_are_valid(data):
    trained = train_rqvae(data, TINY, log_every=1)
    losses = [h["loss"] for h in trained.history]
    assert len(losses) == TINY.epochs and all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    codes, cost = trained.assign(data)
    assert codes.shape == (300, 3) and codes.dtype == np.int32
    assert codes.min() >= 0 and codes.max() < 16 and cost.shape == (300, 16)
    recon = trained.reconstruct(codes)
    assert recon.shape == data.shape
    mse = float(np.mean((recon - data) ** 2))
    assert mse < float(np.var(data, axis=0).sum() / data.shape[1])  # beats predicting the mean
    stats = code_statistics(codes, 16)
    assert all(0 < u <= 1 for u in stats["codebook_usage"])
    assert all(1 <= p <= 16 for p in stats["perplexity"])


def test_same_seed_gives_identical_index_file(data, dataset, tmp_path):
    paths = []
    for run, seed in enumerate((0, 0, 1)):
        index, report = build_index(dataset, "rqvae", data, dataclasses.replace(TINY, seed=seed))
        assert report["collisions"] == 0 and index.num_colliding_items() == 0
        assert report["collisions_before_resolution"] >= 0 and report["levels"] >= 3
        paths.append(tmp_path / f"{run}.json")
        index.to_json(str(paths[-1]))
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()


def test_sinkhorn_during_training_and_resolution_of_duplicates(dataset):
    # 100 distinct rows, each three times: duplicates must collide before resolution.
    base = synthetic_embeddings(100, 48, seed=3, clusters=4, sub=4)
    x = np.repeat(base, 3, axis=0)
    config = dataclasses.replace(TINY, epochs=2)
    index, report = build_index(dataset, "rqvae", x, config)
    assert report["collisions_before_resolution"] >= 200
    assert report["collisions"] == 0 and index.num_colliding_items() == 0
    kept, report2 = build_index(dataset, "rqvae", x, config, resolve=False)
    assert kept.num_colliding_items() == report2["collisions"] >= 200


def test_kmeans_handles_duplicates_without_nan():
    import jax

    x = jnp.asarray(np.repeat(np.eye(4, dtype=np.float32), 10, axis=0))  # 4 distinct points
    c = kmeans(x, jax.random.PRNGKey(0), 8, 10)
    assert bool(jnp.isfinite(c).all())
    d = ((x[:, None] - c[None]) ** 2).sum(-1).min(axis=1)
    assert float(d.max()) < 1e-6  # every point is a centroid


@pytest.mark.parametrize("method", ["random", "sequential", "title"])
def test_other_methods_report_the_same_fields(dataset, method):
    if method == "title":
        items = [Item(str(i), title=f"thing {i % 250}") for i in range(300)]
        dataset = dataclasses.replace(dataset, items=items)
    index, report = build_index(dataset, method)
    assert index.num_items == 300 and index.num_colliding_items() == 0
    assert report["collisions"] == 0
    assert report["collisions_before_resolution"] == (50 if method == "title" else 0)
    if method != "title":
        assert count_colliding(np.array([list(t) for t in index.tokens])) == 0
        assert report["codebook_usage"][-1] == 1.0

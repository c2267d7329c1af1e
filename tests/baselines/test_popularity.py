import math

import numpy as np
import pytest

from jaxrec.baselines import popularity, ranking
from jaxrec.data.dataset import Dataset, Item


@pytest.fixture
def tiny() -> Dataset:
    # train parts: u0 [0, 1], u1 [1, 2], u2 [1]  ->  counts 0:1, 1:3, 2:1, 3:0, 4:0
    seqs = [[0, 1, 2, 3], [1, 2, 4, 0], [1, 3, 2]]
    return Dataset(
        name="tiny",
        users=["a", "b", "c"],
        sequences=seqs,
        items=[Item(original_id=f"i{i}") for i in range(5)],
    )


def test_counts_and_ranked_list(tiny):
    model = popularity.Popularity(tiny)
    np.testing.assert_array_equal(model.counts, [1, 3, 1, 0, 0])
    # Equal counts keep id order.
    assert model.recommend(0, 3) == [1, 0, 2]
    # u0's test history is [0, 1, 2]: only unseen items remain.
    assert model.recommend(0, 3, exclude_history=True) == [3, 4]
    # Validation history of u1 is [1, 2].
    assert model.recommend(1, 2, split="validation", exclude_history=True) == [0, 3]


def test_evaluate_all_items(tiny):
    m = popularity.evaluate(tiny, "test")
    # test targets 3, 0, 2 rank 4, 2, 3 in the list [1, 0, 2, 3, 4]
    assert m["num_users"] == 3
    assert m["recall@1"] == 0.0
    assert m["recall@5"] == 1.0
    expect = (1 / math.log2(5) + 1 / math.log2(3) + 1 / math.log2(4)) / 3
    assert m["ndcg@5"] == pytest.approx(expect)
    assert m["ndcg@10"] == pytest.approx(expect)


def test_evaluate_history_excluded(tiny):
    m = popularity.evaluate(tiny, "test", exclude_history=True)
    # ranks 1, 1, 2 once history items are removed
    assert m["recall@1"] == pytest.approx(2 / 3)
    assert m["ndcg@5"] == pytest.approx((1 + 1 + 1 / math.log2(3)) / 3)


def test_validation_split_uses_second_to_last(tiny):
    m = popularity.evaluate(tiny, "validation")
    # validation targets 2, 4, 3 rank 3, 5, 4
    assert m["recall@1"] == 0.0
    assert m["recall@5"] == 1.0
    assert m["ndcg@1"] == 0.0
    assert m["ndcg@5"] == pytest.approx(
        (1 / math.log2(4) + 1 / math.log2(6) + 1 / math.log2(5)) / 3
    )


def test_target_ranks_ties_and_exclusion():
    scores = np.array([[0.5, 0.9, 0.5, 0.1], [1.0, 1.0, 1.0, 1.0]])
    np.testing.assert_array_equal(ranking.target_ranks(scores, np.array([2, 3])), [3, 4])
    excl = ranking.history_mask([np.array([1]), np.array([0, 3])], np.array([2, 3]), 4)
    # the target itself is never excluded
    assert not excl[1, 3]
    np.testing.assert_array_equal(ranking.target_ranks(scores, np.array([2, 3]), excl), [2, 3])


def test_metrics_from_ranks_definitions():
    m = ranking.metrics_from_ranks(np.array([1, 2, 11]))
    assert m["recall@1"] == pytest.approx(1 / 3)
    assert m["recall@10"] == pytest.approx(2 / 3)
    assert m["recall@20"] == 1.0
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3)) / 3)
    assert m["ndcg@20"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(12)) / 3)
    with pytest.raises(ValueError):
        ranking.metrics_from_ranks(np.array([0]))

"""Metrics against straightforward textbook implementations on hand-made rankings."""

import math

import numpy as np
import pytest

from jaxrec.inference import metrics as ev


def textbook(ranked_lists, targets, k):
    """Recall@k and NDCG@k, written the obvious way (one relevant item per user)."""
    hits, dcg = 0.0, 0.0
    for lst, t in zip(ranked_lists, targets, strict=True):
        top = [i for i in lst if i >= 0][:k]
        rels = [1.0 if i == t else 0.0 for i in top]
        hits += sum(rels)
        dcg += sum(r / math.log2(pos + 2) for pos, r in enumerate(rels))  # idcg = 1
    return hits / len(targets), dcg / len(targets)


def test_hand_computed_values():
    ranked = np.array([[5, 3, 9], [1, 2, 3], [7, 8, -1], [4, 4, 4]])
    targets = np.array([3, 1, 2, 9])
    np.testing.assert_array_equal(ev.target_ranks(ranked, targets), [2, 1, 0, 0])
    m = ev.retrieval_metrics(ranked, targets, ks=(1, 2, 5))
    assert m["recall@1"] == 0.25 and m["recall@2"] == 0.5 and m["recall@5"] == 0.5
    assert m["ndcg@1"] == 0.25
    assert m["ndcg@2"] == pytest.approx((1 / math.log2(3) + 1) / 4)


def test_random_rankings_match_textbook():
    rng = np.random.default_rng(0)
    users, items, length = 300, 60, 20
    ranked = np.stack([rng.permutation(items)[:length] for _ in range(users)])
    for u, n in enumerate(rng.integers(length // 2, length + 1, size=users)):
        ranked[u, n:] = -1  # shorter lists are padded at the end
    targets = rng.integers(0, items, size=users)
    got = ev.retrieval_metrics(ranked, targets)
    for k in ev.DEFAULT_KS:
        rec, ndcg = textbook(ranked.tolist(), targets.tolist(), k)
        assert got[f"recall@{k}"] == pytest.approx(rec)
        assert got[f"ndcg@{k}"] == pytest.approx(ndcg)
    assert got["recall@1"] <= got["recall@5"] <= got["recall@20"]


def test_candidate_metrics_match_textbook_and_ties_are_pessimistic():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(200, 100))
    for col in (0, 7):
        got = ev.candidate_metrics(scores, target_column=col)
        lists = [list(np.argsort(-row, kind="stable")) for row in scores]
        for k in ev.DEFAULT_KS:
            hr, ndcg = textbook(lists, [col] * len(lists), k)
            assert got[f"hr@{k}"] == pytest.approx(hr)
            assert got[f"ndcg@{k}"] == pytest.approx(ndcg)
    flat = ev.candidate_metrics(np.zeros((5, 100)))
    assert flat["hr@20"] == 0.0
    np.testing.assert_array_equal(ev.candidate_ranks(np.zeros((2, 100))), [100, 100])


def test_ranked_list_ranks_skip_non_candidates():
    ranked = np.array([[50, 3, 3, 8], [9, 9, 9, 9]])
    ranks = ev.ranked_list_ranks(ranked, np.array([8, 4]), np.array([[3, 8, 4], [4, 5, 6]]))
    np.testing.assert_array_equal(ranks, [2, 0])


def test_invalid_rate_counts_only_returned_slots():
    invalid = np.array([[True, False, False, True], [False, False, True, True]])
    assert ev.invalid_rate(invalid) == 0.5
    returned = np.array([[True, True, True, False], [True, True, False, False]])
    assert ev.invalid_rate(invalid, returned) == pytest.approx(1 / 5)


def test_rating_metrics_count_unparsable_outputs():
    outputs = ["4", "2.5", " 5 stars", "great!", "7", "1.0", ""]
    targets = [5.0, 2.0, 5.0, 3.0, 4.0, 2.0, 1.0]
    m = ev.rating_metrics(outputs, targets)
    errs = np.array([4 - 5, 2.5 - 2, 5 - 5, 1 - 2])
    assert m["rmse"] == pytest.approx(float(np.sqrt(np.mean(errs**2))))
    assert m["mae"] == pytest.approx(float(np.mean(np.abs(errs))))
    assert m["unparsable_ratings"] == 3 and m["num_ratings"] == 7
    assert math.isnan(ev.rating_metrics(["x"], [3.0])["rmse"])


def test_mean_over_templates():
    per = {"t0": {"recall@1": 0.2, "ndcg@1": 0.2}, "t1": {"recall@1": 0.4, "ndcg@1": 0.4}}
    assert ev.mean_over_templates(per) == pytest.approx({"recall@1": 0.3, "ndcg@1": 0.3})

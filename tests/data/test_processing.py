"""Processing conventions: k-core, chronological ties, leave-one-out, negatives, remapping."""

import numpy as np
import pytest

from jaxrec.data.dataset import DataError, Item
from jaxrec.data.formats import Interactions
from jaxrec.data.processing import PrepareOptions, build_dataset, kcore_filter, sample_negatives


def _inter(rows, source="test"):
    inter = Interactions(source=source)
    for u, i, t in rows:
        inter.append(u, i, 4.0, t)
    return inter


def test_kcore_is_iterated_until_stable():
    # u3 has 2 items -> removed at k=2? No: k=3. Removing u3 drops item c below 3, which in
    # turn drops u1 below 3: only iteration finds the stable core {u0, u2} x {a, b, d}.
    pairs = [
        ("u0", "a"),
        ("u0", "b"),
        ("u0", "d"),
        ("u1", "a"),
        ("u1", "b"),
        ("u1", "c"),
        ("u2", "a"),
        ("u2", "b"),
        ("u2", "d"),
        ("u3", "c"),
        ("u3", "d"),
        ("u4", "c"),
        ("u4", "d"),
    ]
    keep, stats = kcore_filter(pairs, 3)
    kept = {p for p, k in zip(pairs, keep, strict=True) if k}
    for u, i in kept:
        assert sum(1 for uu, _ in kept if uu == u) >= 3
        assert sum(1 for _, ii in kept if ii == i) >= 3
    assert stats["kcore_rounds"] >= 2
    assert stats["kcore_removed_interactions"] == len(pairs) - len(kept)


def test_chronological_order_keeps_ties_in_file_order_not_id_order():
    rows = [("u", "z", 5), ("u", "b", 1), ("u", "y", 3), ("u", "a", 3), ("u", "c", 9)]
    ds = build_dataset(
        _inter(rows), None, "t", PrepareOptions(kcore=0, num_negatives=0, item_order="first_seen")
    )
    original = [ds.items[i].original_id for i in ds.sequences[0]]
    assert original == ["b", "y", "a", "z", "c"]  # y before a: file order among ties


def test_leave_one_out_split_and_history_cap():
    rows = [("u", f"i{k}", k) for k in range(30)]
    ds = build_dataset(
        _inter(rows), None, "t", PrepareOptions(kcore=0, num_negatives=0, item_order="first_seen")
    )
    test, valid = ds.example(0, "test"), ds.example(0, "validation")
    assert ds.items[test.target].original_id == "i29"
    assert ds.items[valid.target].original_id == "i28"
    assert len(test.history) == 20 and test.history[-1] == valid.target
    assert len(valid.history) == 20
    train = list(ds.examples("train"))
    assert len(train) == 27  # targets at positions 1..27
    assert all(ex.target not in (test.target, valid.target) for ex in train)
    assert ds.example(0, "test", history_cap=5).history == test.history[-5:]


def test_short_users_are_removed_and_counted():
    rows = [("u0", "a", 1), ("u0", "b", 2), ("u0", "c", 3), ("u1", "a", 1), ("u1", "b", 2)]
    ds = build_dataset(_inter(rows), None, "t", PrepareOptions(kcore=0, num_negatives=0))
    assert ds.num_users == 1
    assert ds.metadata["filters"]["short_users_removed"] == 1
    assert ds.metadata["filters"]["short_user_interactions_removed"] == 2


def test_duplicates_removed_and_counted():
    rows = [("u", "a", 1), ("u", "b", 2), ("u", "a", 3), ("u", "c", 4)]
    ds = build_dataset(_inter(rows), None, "t", PrepareOptions(kcore=0, num_negatives=0))
    assert ds.num_interactions == 3
    assert ds.metadata["filters"]["duplicate_interactions_removed"] == 1


def test_negatives_are_fixed_unseen_and_seeded():
    rng = np.random.default_rng(0)
    seqs = [rng.choice(300, size=20, replace=False) for _ in range(50)]
    a = sample_negatives(seqs, 300, 99, seed=1)
    b = sample_negatives(seqs, 300, 99, seed=1)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (50, 99)
    for seq, neg in zip(seqs, a, strict=True):
        assert len(set(neg.tolist())) == 99
        assert not set(neg.tolist()) & set(seq.tolist())
    assert not np.array_equal(a, sample_negatives(seqs, 300, 99, seed=2))
    with pytest.raises(DataError, match="fewer than 99 items"):
        sample_negatives(seqs, 110, 99, seed=0)


def test_shuffled_ids_hide_the_order_leak_of_sequential_ids():
    # Items introduced in sequence order, as S3-Rec/P5 number them: ids leak order.
    rng = np.random.default_rng(0)
    rows, t = [], 0
    for u in range(200):
        start = int(rng.integers(0, 400))
        for k in range(6):
            rows.append((f"u{u}", str(start + k), t))
            t += 1
    shuffled = build_dataset(_inter(rows), None, "t", PrepareOptions(kcore=0, num_negatives=0))
    assert shuffled.metadata["leakage"]["test_target_is_max_history_plus_one"] < 0.05
    assert shuffled.metadata["leakage"]["source_ids_test_target_is_max_history_plus_one"] > 0.9


def test_items_missing_from_meta_are_an_error():
    rows = [("u", "a", 1), ("u", "b", 2), ("u", "c", 3)]
    meta = {"a": Item("a", title="A"), "b": Item("b", title="B")}
    with pytest.raises(DataError, match=r"meta\.json\.gz: 1 item\(s\) .* no metadata record"):
        build_dataset(
            _inter(rows),
            meta,
            "t",
            PrepareOptions(kcore=0, num_negatives=0),
            meta_path="meta.json.gz",
        )

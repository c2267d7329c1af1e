"""Collision resolution tracks only the prefixes that collide; the result equals resolving
with a table of every prefix (the straightforward algorithm), on catalogues of any shape."""

import numpy as np
import pytest

from jaxrec.indexing.collisions import count_colliding, resolve_codes, row_ids


def resolve_reference(codes, num_codes, cost=None):
    """Every prefix's used codes in a dict; groups in sorted order; members by item id."""
    codes = np.array(codes, dtype=np.int64)
    used = {}
    for row in codes:
        used.setdefault(tuple(row[:-1]), np.zeros(num_codes, bool))[row[-1]] = True
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    order = np.argsort(inverse.reshape(-1), kind="stable")
    groups = [g for g in np.split(order, np.cumsum(counts)[:-1]) if len(g) > 1]
    for group in groups:
        current = codes[group[0], -1]
        if cost is not None:
            group = group[np.argsort(cost[group, current], kind="stable")]
        taken = used[tuple(codes[group[0], :-1])]
        for item in sorted(group[1:].tolist()):
            free = np.flatnonzero(~taken)
            if not len(free):
                break
            pick = free[np.argmin(cost[item, free])] if cost is not None else free[
                np.argmin(np.abs(free - current))]  # fmt: skip
            codes[item, -1] = pick
            taken[pick] = True
    return codes


@pytest.mark.parametrize("seed", range(12))
def test_equals_the_straightforward_algorithm(seed):
    rng = np.random.default_rng(seed)
    n, levels, k = int(rng.integers(2, 300)), int(rng.integers(1, 4)), int(rng.integers(2, 9))
    codes = rng.integers(0, k, (n, levels))
    cost = rng.random((n, k)).round(1) if seed % 2 else None  # ties included
    got, res = resolve_codes(codes, k, cost)
    want = resolve_reference(codes, k, cost)
    np.testing.assert_array_equal(got[:, :levels], want)
    assert res.colliding_after == 0 and count_colliding(got) == 0


def test_row_ids_order_rows_like_np_unique():
    rng = np.random.default_rng(0)
    for rows in (rng.integers(-3, 4, (500, 3)), rng.integers(0, 2**40, (200, 3)),
                 np.zeros((5, 0), int)):  # fmt: skip
        ids, counts = row_ids(rows)
        _, inverse, want = np.unique(rows, axis=0, return_inverse=True, return_counts=True)
        np.testing.assert_array_equal(ids, inverse.reshape(-1))
        np.testing.assert_array_equal(counts, want)


def test_a_million_items_resolve_in_seconds():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, (1_000_000, 4))
    codes[:, :2] %= 64  # about 2,000 collisions
    resolved, res = resolve_codes(codes, 256)
    assert res.colliding_before > 1000 and res.colliding_after == 0

import json
import logging

import numpy as np
import pytest

from jaxrec.indexing.collisions import count_colliding, resolve_codes, resolve_index
from jaxrec.indexing.item_index import ItemIndex
from jaxrec.indexing.schemes import codes_from_index, load_index, semantic_index


def test_resolve_codes_without_cost_moves_to_nearest_free_code():
    codes = np.array([[0, 1, 5], [0, 1, 5], [0, 1, 6], [2, 0, 5], [0, 1, 5]])
    out, res = resolve_codes(codes, num_codes=8)
    assert count_colliding(out) == 0 and res.colliding_before == 2 and res.moved == 2
    assert out[0].tolist() == [0, 1, 5]  # first member keeps its code
    # Free codes under prefix (0, 1) are everything but 5 and 6; nearest to 5: 4, then 3.
    assert out[1].tolist() == [0, 1, 4] and out[4].tolist() == [0, 1, 3]
    assert (out[:, :2] == codes[:, :2]).all() and out[2:4].tolist() == codes[2:4].tolist()


def test_resolve_codes_with_cost_keeps_the_best_item_and_picks_cheapest_free():
    codes = np.array([[1, 2], [1, 2], [1, 3]])
    # Item 1 fits code 2 better than item 0, so item 0 moves; its cheapest code (3) is taken
    # by item 2, so it gets the cheapest free one, 1.
    cost = np.array([[9, 4, 5, 0], [9, 0.5, 1, 9], [9, 9, 9, 0]], dtype=np.float32)
    out, res = resolve_codes(codes, num_codes=4, cost=cost)
    assert out[1].tolist() == [1, 2]
    assert out[0].tolist() == [1, 1]
    assert count_colliding(out) == 0 and not res.extra_level


def test_full_prefix_adds_one_disambiguation_level():
    codes = np.array([[0, 0], [0, 1], [0, 1], [0, 1], [1, 0]])  # prefix 0 has 2 codes, 3 items
    out, res = resolve_codes(codes, num_codes=2)
    assert res.extra_level and out.shape == (5, 3) and count_colliding(out) == 0
    assert out[:, 2].tolist() == [0, 0, 1, 2, 0]


def test_deterministic_and_idempotent():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 4, size=(300, 3))
    a, _ = resolve_codes(codes, 4)
    b, _ = resolve_codes(codes.copy(), 4)
    assert np.array_equal(a, b) and count_colliding(a) == 0
    c, res = resolve_codes(a, 4)
    assert np.array_equal(a, c) and res.moved == 0


def test_shared_beauty_index_collisions_are_resolved(shared_data, caplog):
    path = str(shared_data / "lcrec" / "Beauty.index.json")
    with caplog.at_level(logging.WARNING):
        kept = load_index(path, 12101, resolve=False)
    assert kept.num_colliding_items() == 13
    assert "13 item(s)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        index = load_index(path, 12101)
    assert index.num_colliding_items() == 0 and index.levels == 4
    assert "13 item(s)" in caplog.text and path in caplog.text
    before, after = codes_from_index(kept), codes_from_index(index)
    changed = np.flatnonzero((before != after).any(axis=1))
    assert len(changed) == 13
    assert (before[:, :3] == after[:, :3]).all()  # only the last level moved
    with open(path) as f:
        raw = json.load(f)
    assert all(index.tokens[i] == tuple(raw[str(i)]) for i in range(12101) if i not in changed)


def test_resolve_index_keeps_level_letters_and_titles():
    index = semantic_index(np.array([[1, 1], [1, 1]]), letters="xy")
    out = resolve_index(index)
    assert out.tokens == (("<x_1>", "<y_1>"), ("<x_1>", "<y_0>"))
    titles = ItemIndex((("Soap",), ("Soap",), ("Soap (2)",), ("Soap",)), "title", True)
    out = resolve_index(titles)
    assert out.num_colliding_items() == 0
    assert [t[0] for t in out.tokens] == ["Soap", "Soap (3)", "Soap (2)", "Soap (4)"]


@pytest.mark.parametrize("levels", [1, 3])
def test_random_collisions_always_resolved(levels):
    rng = np.random.default_rng(levels)
    codes = rng.integers(0, 3, size=(200, levels))
    out, res = resolve_codes(codes, 3)
    assert count_colliding(out) == 0 and res.colliding_after == 0

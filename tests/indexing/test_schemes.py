import json
import logging

import numpy as np
import pytest

from jaxrec.data.dataset import DataError, Item
from jaxrec.indexing.item_index import ItemIndex
from jaxrec.indexing.schemes import (
    codes_from_index,
    first_seen_order,
    load_index,
    random_index,
    semantic_index,
    sequential_index,
    title_index,
)


def _roundtrip(index, tmp_path):
    path = str(tmp_path / "x.index.json")
    index.to_json(path)
    return ItemIndex.from_json(path, num_items=index.num_items)


def test_random_ids_are_unique_digit_tokens_and_seeded(tmp_path):
    a = random_index(1234, seed=0)
    assert a.num_items == 1234 and a.levels == 4 and a.num_colliding_items() == 0
    numbers = sorted(int("".join(t[3:-1] for t in seq)) for seq in a.tokens)
    assert numbers == list(range(1234))  # a permutation of 0..n-1, fixed width
    assert a.tokens == random_index(1234, seed=0).tokens
    assert a.tokens != random_index(1234, seed=1).tokens
    assert len(a.item_tokens()) <= 40  # 10 digits x 4 positions
    back = _roundtrip(a, tmp_path)
    assert back.tokens == a.tokens and not back.is_text
    text = random_index(50, seed=0, as_text=True)
    assert text.is_text and sorted(int(t[0]) for t in text.tokens) == list(range(50))
    assert _roundtrip(text, tmp_path).tokens == text.tokens


def test_sequential_ids_follow_first_appearance_and_warn(caplog):
    sequences = [np.array([3, 1, 3]), np.array([0, 1, 4])]
    assert first_seen_order(sequences, 6).tolist() == [2, 1, 4, 0, 3, 5]  # 2, 5 unseen
    with caplog.at_level(logging.WARNING):
        index = sequential_index(sequences, 6)
    assert "leak" in caplog.text
    assert [codes_from_index(index)[i, 0] for i in range(6)] == [2, 1, 4, 0, 3, 5]
    assert index.scheme == "sequential" and index.num_colliding_items() == 0


def test_title_ids(tmp_path):
    items = [Item("a", title="Rose  Soap"), Item("b", title="Shampoo")]
    index = title_index(items)
    assert index.is_text and index.tokens == (("Rose Soap",), ("Shampoo",))
    assert _roundtrip(index, tmp_path).tokens == index.tokens
    with pytest.raises(DataError, match=r"item 1 \('b'\) has no title"):
        title_index([Item("a", title="x"), Item("b")])


def test_semantic_codes_roundtrip():
    codes = np.array([[3, 0, 255], [1, 2, 3]])
    index = semantic_index(codes)
    assert index.tokens[0] == ("<a_3>", "<b_0>", "<c_255>")
    assert np.array_equal(codes_from_index(index), codes)


def _write(tmp_path, obj):
    path = tmp_path / "bad.index.json"
    path.write_text(json.dumps(obj))
    return str(path)


@pytest.mark.parametrize(
    "obj, num_items, pattern",
    [
        ({"0": ["<a_1>", "<b_2>"], "2": ["<a_1>", "<b_3>"]}, 3, r"missing, first ids \[1\]"),
        ({"0": ["<a_1>", "<b_2>"], "1": ["<a_1>", "<b_>"]}, 2, r"item 1: malformed token"),
        (
            {"0": ["<a_1>", "<b_2>"], "1": ["<a_1>", "<b_2>", "<c_3>"], "2": ["<a_0>", "<b_0>"]},
            3,
            r"mixed level counts .*item 1",
        ),
        ({"0": ["<a_1>", "<b_2>"], "1": []}, 2, r"item 1: expected a non-empty list"),
        ({"0": ["<a_1>"], "1": ["<a_2>"], "5": ["<a_3>"]}, 2, r"unknown item id"),
    ],
)
def test_bad_index_files_name_file_and_item(tmp_path, obj, num_items, pattern):
    path = _write(tmp_path, obj)
    with pytest.raises(DataError, match=pattern) as err:
        load_index(path, num_items)
    assert path in str(err.value)


def test_load_index_roundtrip_of_every_scheme(tmp_path):
    for index in (
        random_index(30, seed=2),
        sequential_index([np.arange(30)], 30),
        semantic_index(np.arange(60).reshape(30, 2) % 7),
    ):
        path = str(tmp_path / "i.json")
        index.to_json(path)
        loaded = load_index(path, 30)
        assert loaded.num_colliding_items() == 0
        if index.num_colliding_items() == 0:
            assert loaded.tokens == index.tokens

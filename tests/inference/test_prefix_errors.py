"""The prefix-error analysis' pure parts: where a target left the beams, the summary, and the
reference file's checks. (The searches themselves: tests/recipes/test_model_dir_consumers.py.)"""

import json

import numpy as np
import pytest

from jaxrec.data.dataset import DataError, Dataset, Item
from jaxrec.inference.prefix_errors import (
    prefix_catalogue,
    read_reference,
    summarise,
    target_levels,
)


def test_prefix_catalogue_numbers_distinct_prefixes():
    paths = np.array([[5, 7, 9], [5, 8, 9], [6, 7, 9], [5, 7, 10]])
    catalogue, prefix_of = prefix_catalogue(paths, 2, eos_id=1)
    np.testing.assert_array_equal(prefix_of, [0, 1, 2, 0])  # (5,7) (5,8) (6,7) (5,7)
    assert catalogue.table.max_length == 3  # two codes and EOS
    assert dict(catalogue.lookup) == {(5, 7): (0,), (5, 8): (1,), (6, 7): (2,)}


def test_target_levels_find_the_first_lost_level():
    # Three levels; items 0..3 with level-1 prefixes 0,0,1,1 and level-2 prefixes 0,1,2,3.
    item_prefix = [np.array([0, 0, 1, 1]), np.array([0, 1, 2, 3])]
    beams1 = np.array([[0, -1], [0, -1], [1, 0], [1, 0]])  # user 0..3
    beams2 = np.array([[0, 1], [1, -1], [3, 0], [2, 3]])
    final = np.array([[0, 1], [1, 2], [3, -1], [3, 1]])
    targets = np.array([0, 2, 2, 2])
    # user 0: whole path kept; user 1: item 2's first code (prefix 1) not in beams1 -> 1;
    # user 2: prefix 1 kept, level-2 prefix 2 not in beams2 -> 2; user 3: kept to level 2, not
    # in the final beams -> 3.
    np.testing.assert_array_equal(
        target_levels(targets, item_prefix, [beams1, beams2], final), [0, 1, 2, 3]
    )


def test_summarise_counts_reference_only_targets_by_cause():
    reference_hit = np.array([True, True, True, True, False, True])
    model_rank = np.array([3, 0, 0, 15, 2, 0])
    level = np.array([0, 1, 3, 0, 0, 1])
    report = summarise(reference_hit, model_rank, level, levels=3, top_k=10)
    assert report["reference_hits"] == 5 and report["model_hits"] == 2
    assert report["both_hit"] == 1 and report["model_only"] == 1
    assert report["reference_only"] == 4
    assert report["reference_only_by_cause"] == {
        "lost_at_level_1": 2, "lost_at_level_2": 0, "lost_at_level_3": 1, "ranked_past_10": 1,
    }  # fmt: skip
    assert sum(report["reference_only_share_by_cause"].values()) == pytest.approx(1.0)


def _dataset(users=3, items=5):
    seqs = [list(range(items))[: 3 + u % 2] for u in range(users)]
    return Dataset("d", [f"u{u}" for u in range(users)], seqs,
                   [Item(str(i), f"t{i}") for i in range(items)])  # fmt: skip


@pytest.mark.parametrize(
    "lines, message",
    [
        (['{"user": "0", "items": [1]}', "nope"], ":2: invalid JSON"),
        (['{"user": "7", "items": [1]}'], ":1: unknown user '7'"),
        (['{"user": "0", "items": [1, 9]}'], ":1: unknown item 9"),
        (['{"user": "0", "items": [1]}', '{"user": 0, "items": [2]}'], ":2: user 0 appears"),
        (['{"user": "0"}'], ':1: expected {"user"'),
        (['{"user": "0", "items": [1]}', '{"user": "2", "items": []}'], "user 1 is missing"),
    ],
)
def test_reference_file_errors_name_the_line(tmp_path, lines, message):
    path = tmp_path / "ref.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=message.replace("{", r"\{").replace("[", r"\[")):
        read_reference(str(path), _dataset())


def test_reference_file_is_read_by_user_key(tmp_path):
    path = tmp_path / "ref.jsonl"
    path.write_text("".join(json.dumps({"user": str(u), "items": [u, 4]}) + "\n"
                            for u in (2, 0, 1)))  # fmt: skip
    assert read_reference(str(path), _dataset()) == {0: [0, 4], 1: [1, 4], 2: [2, 4]}


def test_reference_rows_naming_a_target_must_be_of_the_split(tmp_path):
    ds = _dataset()
    test_targets = ds.targets("test")
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"user": u, "target": int(test_targets[u]), "items": [u]})
                            + "\n" for u in range(3)))  # fmt: skip
    assert read_reference(str(path), ds, "test") == {0: [0], 1: [1], 2: [2]}
    assert read_reference(str(path), ds) == {0: [0], 1: [1], 2: [2]}  # no split: not checked
    want = int(ds.targets("validation")[0])
    with pytest.raises(DataError, match=rf":1: target {test_targets[0]} is not user 0's "
                       rf"validation target {want}"):  # fmt: skip
        read_reference(str(path), ds, "validation")

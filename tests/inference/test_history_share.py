"""The history's share of written recommendation lists (`jaxrec analyze history`): the counts
and both readings of the metrics, by hand on three users, and the command's checks."""

import json
import math

import numpy as np
import pytest

from jaxrec.cli import main
from jaxrec.data.canonical import write_dataset
from jaxrec.data.dataset import Dataset, Item
from jaxrec.inference.history_share import histories, summarise

SEQS = [[0, 1, 2, 3, 4], [1, 2, 3], [4, 3, 2, 1]]  # test targets 4, 3, 1
LISTS = {0: [3, 4, 0], 1: [0, 3, 4], 2: [2, 3, 1, 0]}


def _dataset():
    return Dataset("d", [f"u{u}" for u in range(len(SEQS))], SEQS,
                   [Item(str(i), f"t{i}") for i in range(5)])  # fmt: skip


def test_histories_end_before_the_split_target():
    ds = _dataset()
    assert [h.tolist() for h in histories(ds, "test")] == [[0, 1, 2, 3], [1, 2], [4, 3, 2]]
    assert [h.tolist() for h in histories(ds, "validation")] == [[0, 1, 2], [1], [4, 3]]


def test_summarise_counts_history_places_and_reads_the_list_both_ways():
    ds = _dataset()
    r = summarise(LISTS, histories(ds, "test"), ds.targets("test"), top_k=2)
    # user 0: 3 is history, target 4 second; dropped -> [4] (0 is history too), first.
    # user 1: 0 is not history ({1, 2}); target 3 second either way.
    # user 2: 2 and 3 are history, target 1 third (a miss at 2); dropped -> [1, 0], first.
    third = 1 / math.log2(3)
    assert r["users"] == 3 and r["list_length_min"] == 3 and r["targets_in_history"] == 0
    assert r["first_in_history"] == pytest.approx(2 / 3)
    assert r["history_in_top_k"] == pytest.approx(1.0)  # (1 + 0 + 2) / 3
    assert r["any_history_in_top_k"] == pytest.approx(2 / 3)
    assert r["as_ranked"] == pytest.approx({"recall": 2 / 3, "ndcg": 2 * third / 3})
    assert r["history_dropped"] == pytest.approx({"recall": 1.0, "ndcg": (2 + third) / 3})
    assert r["short_after_drop"] == 1  # user 0
    short = summarise(LISTS, histories(ds, "test"), ds.targets("test"), top_k=3)
    assert short["short_after_drop"] == 2  # users 0 and 2 keep [4, 0] and [1, 0]


def test_a_target_in_its_history_is_counted_and_never_found_after_the_drop():
    ds = _dataset()
    targets = np.array([4, 2, 1])  # user 1's target 2 is in its history {1, 2}
    r = summarise({0: [4], 1: [2], 2: [1]}, histories(ds, "test"), targets, top_k=1)
    assert r["targets_in_history"] == 1
    assert r["as_ranked"]["recall"] == pytest.approx(1.0)
    assert r["history_dropped"]["recall"] == pytest.approx(2 / 3)


def _write(tmp_path, rows):
    path = tmp_path / "recs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_the_command_reads_recommend_and_eval_files(tmp_path, capsys):
    data = str(tmp_path / "data")
    write_dataset(_dataset(), data)
    recs = _write(tmp_path, [{"user": str(u), "items": LISTS[u]} for u in (2, 0, 1)])
    assert main(["analyze", "history", recs, "--dataset", data, "--top-k", "2", "--json"]) == 0
    out = capsys.readouterr().out
    assert "first item in the history       66.7% of users" in out
    report = json.loads(out.strip().splitlines()[-1])
    expected = summarise(LISTS, histories(_dataset(), "test"), _dataset().targets("test"), 2)
    assert {k: report[k] for k in expected} == expected
    # `jaxrec eval` rows carry their target: read against the split they were written for.
    targets = _dataset().targets("test")
    rows = [{"user": u, "target": int(targets[u]), "items": LISTS[u], "rank": None}
            for u in range(3)]  # fmt: skip
    rows_path = _write(tmp_path, rows)
    assert main(["analyze", "history", rows_path, "--dataset", data, "--top-k", "2"]) == 0
    capsys.readouterr()
    assert main(["analyze", "history", rows_path, "--dataset", data, "--split", "validation"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "recs.jsonl:1: target 4 is not user 0's validation target 3" in err


def test_the_command_errors_name_the_problem(tmp_path, capsys):
    data = str(tmp_path / "data")
    write_dataset(_dataset(), data)
    partial = _write(tmp_path, [{"user": "0", "items": [1]}])
    base = ["analyze", "history", "--dataset", data]
    for argv, message in [
        ([partial], "has 1 of the dataset's 3 users"),
        ([partial, "--top-k", "0"], "--top-k 0: must be at least 1"),
        ([str(tmp_path / "none.jsonl")], "none.jsonl: no such file"),
    ]:
        assert main(base + argv) == 2, argv
        assert message in capsys.readouterr().err.strip().splitlines()[-1]

"""Bad input, command by command: exit code 2, one line naming the file and the record, no
partial output left behind, nothing in an existing dataset changed.

The property-based readers' cases are in `test_reader_properties.py`.
"""

import json
import os
import shutil

import pytest

from jaxrec import train
from jaxrec.cli import main
from jaxrec.data import synthetic


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A prepared synthetic dataset with an index built for it."""
    root = tmp_path_factory.mktemp("bad")
    synthetic.generate(str(root / "raw"), num_users=120, num_items=60, num_topics=4, seed=0)
    argv = ["data", "prepare", "--source", "synthetic", "--input", str(root / "raw")]
    assert main(argv + ["--out", str(root / "ds"), "--num-negatives", "5"]) == 0
    assert main(["index", "build", str(root / "ds"), "--method", "random"]) == 0
    return root / "ds"


def _snapshot(d):
    return {
        os.path.relpath(os.path.join(r, f), d): open(os.path.join(r, f), "rb").read()
        for r, _, files in os.walk(d)
        for f in files
    }


def _one_line_error(capsys, *needles, prefix="jaxrec: error: "):
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if " INFO " not in ln and " WARNING " not in ln]
    assert len(lines) == 1 and lines[0].startswith(prefix), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _prepare(source, path, out, *extra):
    return main(["data", "prepare", "--source", source, "--input", str(path), "--out", str(out),
                 "--kcore", "0", "--num-negatives", "0", *extra])  # fmt: skip


def _no_partial(tmp_path, out):
    assert not out.exists()
    assert not [n for n in os.listdir(out.parent) if n.startswith(f".{out.name}.")]


# -- raw files: (source, file name, content, what the one line must contain) ---------------------
REVIEW_2018 = b'{"reviewerID": "A", "asin": "B", "overall": 5, "unixReviewTime": 1}\n'
REVIEW_2014 = b"{'reviewerID': 'A', 'asin': 'B', 'overall': 5.0, 'unixReviewTime': 1}\n"
RAW_CASES = {
    "empty": ("p5", "Empty.txt", b"", ["Empty.txt: no interactions"]),
    "truncated-json": (
        "lcrec", "T.inter.json", b'{"0": [1, 2, 3], "1": [2, 3', ["T.inter.json:1:", "malformed"]
    ),
    "binary-garbage": (
        "p5", "Bin.txt", b"1 2 3\n\x89PNG\r\n\x1a\n\x00\xff\xfe", ["Bin.txt:2:", "not valid UTF-8"]
    ),
    "non-utf8": (
        "amazon", "reviews_X_5.json", REVIEW_2018 + b'{"reviewerID": "\xe9"}\n',
        ["reviews_X_5.json:2:", "UTF-8"],
    ),
    "non-integer-id": (
        "p5", "Ids.txt", b"1 1 2 3\n2 2 B00abc 4\n", ["Ids.txt:2:5:", "'B00abc' is not an integer"]
    ),
    "duplicate-user": (
        "p5", "Dup.txt", b"1 1 2 3\n2 2 3 4\n1 4 5 6\n", ["Dup.txt:3:", "duplicate user '1'"]
    ),
    "truncated-2014-literal": (
        "amazon", "reviews_Y_5.json", REVIEW_2014 + b"{'reviewerID': 'A', 'asin\n",
        ["reviews_Y_5.json:2:", "malformed"],
    ),
    "unhashable-literal": (
        "amazon", "reviews_Z_5.json", b"{[1]: 2}\n", ["reviews_Z_5.json:1:", "Python dict literal"]
    ),
    "deeply-nested": (
        "amazon", "reviews_D_5.json", b"[" * 100000 + b"\n", ["reviews_D_5.json:1:", "malformed"]
    ),
    "deeply-nested-json": ("lcrec", "N.inter.json", b"[" * 100000, ["N.inter.json", "malformed"]),
    "history-not-a-list": (
        "lcrec", "S.inter.json", b'{"12": "1 2 3"}',
        ["S.inter.json: user '12': expected a list of item ids, got a string"],
    ),
    "missing-path": ("p5", "Missing.txt", None, ["Missing.txt: no such file"]),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(RAW_CASES))
def test_raw_input_is_refused_in_one_line(tmp_path, capsys, case):
    source, name, content, needles = RAW_CASES[case]
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    out = tmp_path / "out"
    assert _prepare(source, path, out) == 2
    _one_line_error(capsys, str(path), *needles)
    _no_partial(tmp_path, out)
    if content is not None and source != "lcrec":
        assert main(["data", "stats", str(path)]) == 2
        _one_line_error(capsys, str(path), *needles)


def test_one_item_users_are_counted_not_silently_dropped(tmp_path, capsys):
    path = tmp_path / "Short.txt"
    path.write_text("1 1 2 3\n2 2 3 4\n3 4\n4 1 2 4\n")
    assert _prepare("p5", path, tmp_path / "out", "--json") == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["filters"]["short_users_removed"] == 1
    assert summary["filters"]["short_user_interactions_removed"] == 1


# -- an existing dataset: nothing in it may change ---------------------------------------------
def _copy(dataset, tmp_path):
    d = tmp_path / "ds"
    shutil.copytree(dataset, d)
    return d


def test_one_item_user_in_a_prepared_dataset(dataset, tmp_path, capsys):
    d = _copy(dataset, tmp_path)
    inter = json.loads((d / "synthetic.inter.json").read_text())
    inter["3"] = inter["3"][:1]
    (d / "synthetic.inter.json").write_text(json.dumps(inter))
    before = _snapshot(d)
    assert main(["data", "stats", str(d)]) == 2
    _one_line_error(capsys, str(d), "has 1 interactions")
    assert _snapshot(d) == before


# (the value of user "12" in a prepared `.inter.json`, what follows `{path}: user "12"`)
INTER_CASES = {
    "string": ("12 13 14", ": expected a list of item ids, got a string"),
    "null": (None, ": expected a list of item ids, got null"),
    "object": ({"0": 1}, ": expected a list of item ids, got an object"),
    "number": (5, ": expected a list of item ids, got an integer"),
    "non-integer-string": (
        [3, "B00abc", 4],
        ', position 1: expected an integer item id, got a string "B00abc"',
    ),
    "float": ([3, 2.5, 4], ", position 1: expected an integer item id, got a number 2.5"),
    "integral-float": ([3, 2.0, 4], ", position 1: expected an integer item id, got a number 2.0"),
    "bool": ([3, True, 4], ", position 1: expected an integer item id, got a boolean true"),
    "nested-list": ([3, [1, 2], 4], ", position 1: expected an integer item id, got a list [1, 2]"),
    "null-entry": ([3, None, 4], ", position 1: expected an integer item id, got null"),
    "out-of-int32": ([3, 2**40, 4], f", position 1: item id {2**40} out of range"),
}


@pytest.mark.parametrize("case", sorted(INTER_CASES))
def test_bad_history_in_a_prepared_inter_json(dataset, tmp_path, capsys, case):
    value, problem = INTER_CASES[case]
    d = _copy(dataset, tmp_path)
    path = d / "synthetic.inter.json"
    inter = json.loads(path.read_text())
    if isinstance(value, list):  # as long as the original: only the bad entry is wrong
        value = inter["12"][:1] + value[1:2] + inter["12"][2:]
    inter["12"] = value
    path.write_text(json.dumps(inter))
    before = _snapshot(d)
    assert main(["data", "stats", str(d)]) == 2
    line = _one_line_error(capsys)
    assert line == f'jaxrec: error: {path}: user "12"{problem}'
    assert main(["tasks", "list", "--dataset", str(d)]) == 2
    assert _one_line_error(capsys) == line
    assert _snapshot(d) == before


def test_integer_strings_in_a_prepared_inter_json_are_read_as_before(dataset, tmp_path):
    from jaxrec.data.canonical import read_dataset

    d = _copy(dataset, tmp_path)
    path = d / "synthetic.inter.json"
    inter = json.loads(path.read_text())
    path.write_text(json.dumps({u: [str(i) for i in seq] for u, seq in inter.items()}))
    assert read_dataset(str(d)).equals(read_dataset(str(dataset)))


@pytest.mark.parametrize("case", ["mixed-length", "missing-items", "other-dataset", "truncated"])
def test_bad_index_is_refused_and_the_dataset_unchanged(dataset, tmp_path, capsys, case):
    d = _copy(dataset, tmp_path)
    index = d / "synthetic.index.json"
    obj = json.loads(index.read_text())
    needles = [str(index)]
    if case == "mixed-length":
        obj["7"] = obj["7"][:-1]
        needles += ["mixed level counts", "item 7"]
    elif case == "missing-items":
        del obj["42"]
        needles += ["1 item(s) missing", "[42]"]
    elif case == "other-dataset":
        rec = json.loads((d / "synthetic.index.dataset.json").read_text())
        rec["source_ids"][0], rec["source_ids"][1] = rec["source_ids"][1], rec["source_ids"][0]
        from jaxrec.data.dataset import item_map_fingerprint

        rec["item_map_fingerprint"] = item_map_fingerprint(rec["source_ids"])
        (d / "synthetic.index.dataset.json").write_text(json.dumps(rec))
        needles += [str(d / "synthetic.item.json"), "item 0"]
    if case == "truncated":
        index.write_text(index.read_text()[:100])
        needles += ["malformed JSON"]
    else:
        index.write_text(json.dumps(obj))
    before = _snapshot(d)
    assert main(["index", "check", str(index), "--dataset", str(d)]) == 2
    _one_line_error(capsys, *needles)
    assert main(["tasks", "list", "--dataset", str(d), "--item-repr", "sid"]) == 2
    _one_line_error(capsys, str(index))
    assert _snapshot(d) == before


def test_existing_out_is_refused_and_unchanged(dataset, tmp_path, capsys):
    d = _copy(dataset, tmp_path)
    raw = dataset.parent / "raw"
    before = _snapshot(d)
    assert (
        main(["data", "prepare", "--source", "synthetic", "--input", str(raw), "--out", str(d)])
        == 2
    )
    _one_line_error(capsys, str(d), "not empty", "--overwrite")
    assert _snapshot(d) == before


def test_gin_override_typo_is_refused_before_any_work(tmp_path, capsys):
    model_dir = tmp_path / "run"
    argv = ["--gin_file=runs/finetune.gin", "--gin.MIXTURE_OR_TASK_NAME=x",
            f"--gin.MODEL_DIR={model_dir}", "--gin.TRAIN_STEPZ=3"]  # fmt: skip
    assert train.main(argv) == 2
    _one_line_error(capsys, "TRAIN_STEPZ", "TRAIN_STEPS", prefix="jaxrec.train: error: ")
    assert not model_dir.exists()


def test_missing_dataset_dir(tmp_path, capsys):
    for argv in (["data", "stats"], ["index", "build"], ["tasks", "list", "--dataset"]):
        assert main([*argv, str(tmp_path / "nope")]) == 2
        _one_line_error(capsys, str(tmp_path / "nope"))

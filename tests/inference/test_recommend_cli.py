"""`jaxrec recommend` on a text MODEL_DIR (laid out like `jaxrec.train`'s): the items of
`jaxrec eval`'s rows, best first, with their beam scores."""

import json

import numpy as np
import pytest

from jaxrec.cli import main
from jaxrec.inference import metrics as eval_metrics

from .test_eval_cli import NUM_USERS, setup, tiny_dataset  # noqa: F401  (fixture)


def test_recommend_returns_evals_ranked_items(setup, tmp_path, capsys):  # noqa: F811
    data, model_dir, _, _ = setup
    rows_path, recs = tmp_path / "rows.jsonl", tmp_path / "recs.jsonl"
    common = ["--model-dir", model_dir, "--dataset", data, "--split", "test",
              "--num-beams", "32", "--batch-size", "8"]  # fmt: skip
    assert main(["eval", *common, "--out", str(rows_path), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(["recommend", *common, "--top-k", "20", "--out", str(recs)]) == 0
    rows = [json.loads(line) for line in rows_path.read_text().splitlines()]
    got = [json.loads(line) for line in recs.read_text().splitlines()]
    assert [g["user"] for g in got] == [str(u) for u in range(NUM_USERS)]
    assert [g["items"] for g in got] == [r["items"][:20] for r in rows]
    for g in got:
        assert len(g["scores"]) == len(g["items"]) and np.all(np.isfinite(g["scores"]))
        assert g["scores"] == sorted(g["scores"], reverse=True)
    ranked = np.array([g["items"] + [-1] * (20 - len(g["items"])) for g in got])
    metrics = eval_metrics.retrieval_metrics(ranked, tiny_dataset().targets("test"))
    assert metrics == pytest.approx({k: evaluated[k] for k in metrics})


def test_recommend_errors_are_one_line(setup, tmp_path, capsys):  # noqa: F811
    data, model_dir, _, _ = setup
    out = str(tmp_path / "r.jsonl")
    base = ["recommend", "--model-dir", model_dir, "--dataset", data, "--out", out]
    hist = tmp_path / "h.jsonl"
    hist.write_text('{"history": [1]}\n')
    for argv, message in [
        ([], "say whom to recommend for"),
        (["--split", "test", "--top-k", "0"], "--top-k 0"),
        (["--histories", str(hist)], "not --histories"),
        (["--users", str(tmp_path / "none.txt")], "none.txt: no such file"),
    ]:
        assert main(base + argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err.strip().splitlines()[-1], err

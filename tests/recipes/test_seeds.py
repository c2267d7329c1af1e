"""`jaxrec analyze seeds`: the spread over runs that differ only in their seed.

The run directories here are written in the layout `jaxrec reproduce` writes (a real demo
run is read back in tests/recipes/test_demo.py)."""

import json
import math

import pytest

from jaxrec import cli
from jaxrec.data.dataset import DataError
from jaxrec.recipes import seeds


def _metrics(r10, n10):
    return {"recall@5": r10 / 2, "ndcg@5": n10 / 2, "recall@10": r10, "ndcg@10": n10,
            "recall@20": r10 * 1.5, "ndcg@20": n10 * 1.2}  # fmt: skip


def _write_run(path, seed, r10, n10, *, hybrid=False, lr=0.002, fingerprint="sha256:ab",
               users=500):  # fmt: skip
    path.mkdir(parents=True)
    train = {"mode": "prefix_shared", "learning_rate": lr, "seed": seed, "next_item_loss": 0.0}
    recipe = {"name": "tiger_prefix_shared", "train": train, "hybrid": hybrid, "seed": seed,
              "minutes": 120.0, "references": [["SASRec", 0.08]] if seed else []}  # fmt: skip
    record = {"format_version": 1, "kind": "semantic_id", "dataset_name": "Beauty",
              "index": "Beauty.index.json", "recipe": recipe}  # fmt: skip
    test = {**_metrics(r10, n10), "num_users": users, "invalid_rate": 0.0}
    if hybrid:
        test.update(generative=_metrics(r10 - 0.01, n10 - 0.005),
                    dense=_metrics(r10 - 0.02, n10), fusion_weight=0.5)  # fmt: skip
    result = {"recipe": "tiger_prefix_shared", "test": test,
              "popularity_test": _metrics(0.01, 0.005),
              "validation": {"selected_step": 900 + seed}, "plan": {"steps_run": 1000},
              "seconds": {"total": 7000.0}, "load_average": 1.2}  # fmt: skip
    (path / "jaxrec_model.json").write_text(json.dumps(record))
    (path / "result.json").write_text(json.dumps(result))
    (path / "Beauty.index.dataset.json").write_text(
        json.dumps({"dataset": "Beauty", "item_map_fingerprint": fingerprint})
    )
    return str(path)


def test_spread_is_the_mean_and_sample_std_of_each_system(tmp_path):
    dirs = [_write_run(tmp_path / f"s{s}", s, r, n, hybrid=True)
            for s, r, n in ((2, 0.08, 0.04), (0, 0.07, 0.042), (1, 0.075, 0.038))]  # fmt: skip
    summary = seeds.summarize([seeds.read_run(d) for d in dirs])
    assert summary["seeds"] == [0, 1, 2]
    assert list(summary["systems"]) == ["jaxrec", "jaxrec_generative", "jaxrec_dense",
                                        "popularity"]  # fmt: skip
    r10 = summary["systems"]["jaxrec"]["recall@10"]
    assert r10["values"] == [0.07, 0.075, 0.08]  # in seed order
    assert r10["mean"] == pytest.approx(0.075)
    assert r10["std"] == pytest.approx(0.005)  # sample std: sqrt((0.005² * 2) / 2)
    gen = summary["systems"]["jaxrec_generative"]["ndcg@10"]
    assert gen["mean"] == pytest.approx(0.035) and gen["min"] == pytest.approx(0.033)
    assert summary["systems"]["popularity"]["recall@10"]["std"] == 0.0
    assert [r["fusion_weight"] for r in summary["runs"]] == [0.5] * 3
    assert "ratios" not in summary  # no SASRec in a reproduce run


def test_spread_refuses_runs_that_differ_beyond_the_seed(tmp_path):
    a = seeds.read_run(_write_run(tmp_path / "a", 0, 0.07, 0.04))
    b = seeds.read_run(_write_run(tmp_path / "b", 1, 0.07, 0.04, lr=0.001))
    with pytest.raises(DataError, match=r"train\.learning_rate = 0\.001 differs .* 0\.002"):
        seeds.summarize([a, b])
    c = seeds.read_run(_write_run(tmp_path / "c", 1, 0.07, 0.04, fingerprint="sha256:cd"))
    with pytest.raises(DataError, match="item_map_fingerprint .* not the same data"):
        seeds.summarize([a, c])
    d = seeds.read_run(_write_run(tmp_path / "d", 0, 0.07, 0.04))
    with pytest.raises(DataError, match="seed 0 again"):
        seeds.summarize([a, d])
    e = seeds.read_run(_write_run(tmp_path / "e", 1, 0.07, 0.04, hybrid=True))
    with pytest.raises(DataError, match="hybrid"):
        seeds.summarize([a, e])
    with pytest.raises(DataError, match="at least 2 runs"):
        seeds.summarize([a])


def test_read_run_names_what_is_missing(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="neither a `jaxrec reproduce` OUT"):
        seeds.read_run(str(tmp_path / "empty"))
    run = _write_run(tmp_path / "r", 0, 0.07, 0.04)
    (tmp_path / "r" / "result.json").unlink()
    with pytest.raises(DataError, match="has not finished"):
        seeds.read_run(run)
    run = _write_run(tmp_path / "bad", 0, 0.07, 0.04)
    (tmp_path / "bad" / "result.json").write_text('{"test": ')
    with pytest.raises(DataError, match=r"result.json:1: malformed JSON"):
        seeds.read_run(run)


def test_demo_runs_add_the_ratio_to_sasrec(tmp_path):
    dirs = []
    for seed, (r10, sasrec) in enumerate(((0.44, 0.47), (0.45, 0.48), (0.46, 0.47))):
        out = tmp_path / f"demo{seed}"
        _write_run(out / "model", seed, r10, 0.3, users=2000)
        (out / "metrics.json").write_text(json.dumps({
            "jaxrec": _metrics(r10, 0.3), "sasrec": _metrics(sasrec, 0.31),
            "popularity": _metrics(0.03, 0.01)}))  # fmt: skip
        dirs.append(str(out))
    summary = seeds.summarize([seeds.read_run(d) for d in dirs])
    ratio = summary["ratios"]["jaxrec/sasrec"]["recall@10"]
    expected = [0.44 / 0.47, 0.45 / 0.48, 0.46 / 0.47]
    assert ratio["values"] == pytest.approx(expected)
    mean = sum(expected) / 3
    assert ratio["std"] == pytest.approx(math.sqrt(sum((v - mean) ** 2 for v in expected) / 2))
    assert list(summary["systems"]) == ["jaxrec", "popularity", "sasrec"]


def test_cli_prints_the_table_and_json(tmp_path, capsys):
    dirs = [_write_run(tmp_path / f"s{s}", s, 0.07 + s / 100, 0.04) for s in range(3)]
    assert cli.main(["analyze", "seeds", *dirs, "--metrics", "recall@10,ndcg@10", "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0] == "Beauty: test, 3 seeds (0, 1, 2), mean ± sample std"
    assert out[2].split()[:4] == ["jaxrec", "0.0800", "±", "0.0100"]
    assert json.loads(out[-1])["systems"]["jaxrec"]["ndcg@10"]["std"] == 0.0
    assert cli.main(["analyze", "seeds", dirs[0], str(tmp_path / "nope")]) == 2
    assert "nope: no such directory" in capsys.readouterr().err

import argparse
import json
import re

import numpy as np
import pytest

from jaxrec.baselines import packing, popularity, sasrec
from jaxrec.cli import baseline as baseline_cmd
from jaxrec.data.canonical import write_dataset
from jaxrec.data.dataset import DataError, Dataset, Item

NUM_ITEMS = 40


def cycle_dataset(num_users=240, seed=0, long_users=0) -> Dataset:
    """Deterministic cycles: after item i always comes item i + 1 (mod NUM_ITEMS)."""
    rng = np.random.default_rng(seed)
    seqs = []
    for u in range(num_users):
        length = 70 if u < long_users else int(rng.integers(5, 12))
        seqs.append((int(rng.integers(NUM_ITEMS)) + np.arange(length)) % NUM_ITEMS)
    return Dataset(
        name="cycles",
        users=[f"u{u}" for u in range(num_users)],
        sequences=seqs,
        items=[Item(original_id=f"i{i}") for i in range(NUM_ITEMS)],
    )


def tiny_config(**kw) -> sasrec.SASRecConfig:
    base = dict(
        num_items=NUM_ITEMS,
        d_model=32,
        mlp_dim=64,
        num_heads=2,
        max_len=20,
        row_len=20,
        dropout=0.1,
        attention_dropout=0.1,
        learning_rate=5e-3,
        batch_rows=16,
        epochs=10,
        patience=4,
        eval_every=3,
        eval_batch=128,
    )
    base.update(kw)
    return sasrec.SASRecConfig(**base)


def test_packed_and_padded_loss_agree():
    ds = cycle_dataset(num_users=60, seed=1, long_users=3)  # long users span several windows
    cfg = tiny_config()
    model = sasrec.SASRec(cfg)
    params = sasrec.init_params(model, seed=3)
    windows = packing.training_windows(ds, cfg.max_len)
    packed = packing.pack_rows(windows, cfg.row_len)
    padded = packing.pad_rows(windows, cfg.max_len)
    assert len(packed.inputs) < len(padded.inputs) / 2
    fn = sasrec.make_loss_fn(model)
    loss_packed = sasrec.dataset_loss(model, params, packed, 16, fn)
    loss_padded = sasrec.dataset_loss(model, params, padded, 16, fn)
    assert np.isfinite(loss_packed)
    assert loss_packed == pytest.approx(loss_padded, rel=1e-5)
    # The mask matters: without segments, packed users would see each other.
    merged = packing.Rows(
        packed.inputs, packed.targets, (packed.segments > 0).astype(np.int32), packed.positions
    )
    assert abs(sasrec.dataset_loss(model, params, merged, 16, fn) - loss_padded) > 1e-4


def test_sasrec_learns_cycles_and_beats_popularity():
    ds = cycle_dataset()
    model, res = sasrec.train(ds, tiny_config())
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    assert 1 <= res.best_epoch <= res.epochs_run
    both = sasrec.evaluate(model, res.params, ds, "test")
    pop = popularity.evaluate(ds, "test")
    m = both["all_items"]
    assert m["num_users"] == ds.num_users
    assert m["recall@1"] > 0.6, m
    assert m["ndcg@10"] > pop["ndcg@10"] + 0.3, (m, pop)
    # Excluding history can only move targets up.
    assert both["history_excluded"]["ndcg@10"] >= m["ndcg@10"] - 1e-9


def test_cli_json_keys(tmp_path, capsys):
    ds = cycle_dataset(num_users=50, seed=2)
    write_dataset(ds, str(tmp_path))
    parser = argparse.ArgumentParser()
    baseline_cmd.add_parser(parser.add_subparsers())
    keys = {f"{m}@{k}" for m in ("recall", "ndcg") for k in (1, 5, 10, 20)}
    keys |= {"num_users", "seconds"}
    for argv in (
        ["baseline", "pop", str(tmp_path), "--json"],
        ["baseline", "sasrec", str(tmp_path), "--json", "--epochs", "1", "--d-model", "16",
         "--batch-rows", "4", "--exclude-history"],
    ):  # fmt: skip
        args = parser.parse_args(argv)
        assert args.func(args) == 0
        out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert keys <= set(out), argv
        assert out["num_users"] == 50
        assert out["exclude_history"] == ("--exclude-history" in argv)
        assert 0.0 <= out["ndcg@10"] <= out["recall@10"] <= 1.0


def test_recommendations_file_gives_the_evaluated_recall(tmp_path, capsys):
    # `--recommendations` writes each user's top K of the split, best first; the recall of
    # those lists is the recall `evaluate` reports.
    ds = cycle_dataset(num_users=50, seed=3)
    write_dataset(ds, str(tmp_path / "data"))
    parser = argparse.ArgumentParser()
    baseline_cmd.add_parser(parser.add_subparsers())
    recs = tmp_path / "recs.jsonl"
    argv = ["baseline", "sasrec", str(tmp_path / "data"), "--json", "--epochs", "2",
            "--d-model", "16", "--batch-rows", "4", "--split", "validation",
            "--recommendations", str(recs), "--top-k", "10"]  # fmt: skip
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = [json.loads(line) for line in recs.read_text().splitlines()]
    assert [r["user"] for r in rows] == [str(u) for u in range(50)]
    for r in rows:
        assert len(r["items"]) == len(set(r["items"])) == len(r["scores"]) == 10
        assert r["scores"] == sorted(r["scores"], reverse=True)
    hits = [int(t) in r["items"] for r, t in zip(rows, ds.targets("validation"), strict=True)]
    assert np.mean(hits) == pytest.approx(out["recall@10"], abs=1e-12)


def _baseline(argv, capsys):
    """Exit code and the last stdout line of `jaxrec baseline ...` (parsed when JSON)."""
    parser = argparse.ArgumentParser()
    baseline_cmd.add_parser(parser.add_subparsers())
    args = parser.parse_args(argv)
    code = args.func(args)
    lines = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(lines[-1]) if lines and lines[-1].startswith("{") else lines


def test_seeds_train_each_seed_as_its_own_run_and_report_the_spread(tmp_path, capsys):
    ds = cycle_dataset(num_users=50, seed=4)
    write_dataset(ds, str(tmp_path))
    base = ["baseline", "sasrec", str(tmp_path), "--json", "--epochs", "2", "--d-model", "16",
            "--batch-rows", "4"]  # fmt: skip
    code, out = _baseline([*base, "--seeds", "3,1"], capsys)
    assert code == 0
    assert out["seeds"] == [3, 1] and [r["seed"] for r in out["runs"]] == [3, 1]
    # The second member is the run `--seed 1` makes alone (so the seed reaches every run) ...
    code, alone = _baseline([*base, "--seed", "1"], capsys)
    assert code == 0
    for key in ("recall@10", "ndcg@10", "ndcg@20", "best_epoch", "epochs_run"):
        assert out["runs"][1][key] == alone[key], key
    assert out["runs"][0]["ndcg@20"] != out["runs"][1]["ndcg@20"]  # ... and seeds differ
    for key in ("recall@10", "ndcg@20"):
        values = [r[key] for r in out["runs"]]
        assert out["spread"][key]["mean"] == pytest.approx(np.mean(values), abs=1e-15)
        assert out["spread"][key]["std"] == pytest.approx(np.std(values, ddof=1), abs=1e-15)


def test_without_seed_or_seeds_the_seed_is_0(tmp_path):
    parser = argparse.ArgumentParser()
    baseline_cmd.add_parser(parser.add_subparsers())
    args = parser.parse_args(["baseline", "sasrec", str(tmp_path)])
    assert baseline_cmd._check_seeds(args) is None and args.seed == 0


def test_seeds_bad_input_is_one_clear_error(tmp_path, capsys):
    write_dataset(cycle_dataset(num_users=20, seed=5), str(tmp_path))
    base = ["baseline", "sasrec", str(tmp_path), "--epochs", "1"]
    for extra, message in (
        (["--seeds", "0,1", "--seed", "0"], "--seed and --seeds exclude each other"),
        (["--seeds", "2"], "--seeds '2': a spread over seeds needs at least two distinct seeds"),
        (["--seeds", "0,0"], "needs at least two distinct seeds"),
        (["--seeds", "0,a"], "--seeds '0,a': want comma-separated integers"),
        (["--seeds", "0,1", "--recommendations", str(tmp_path / "r.jsonl")],
         "--recommendations writes one model's lists: use it with --seed, not --seeds"),
    ):  # fmt: skip
        with pytest.raises(DataError, match=re.escape(message)):
            _baseline([*base, *extra], capsys)
    assert not (tmp_path / "r.jsonl").exists()


@pytest.mark.parametrize("exclude_history", [False, True])
def test_top_items_are_the_best_scored_items(exclude_history):
    # Against a plain numpy ranking of the same scores (ties by item id), history masked or not.
    ds = cycle_dataset(num_users=30, seed=4)
    model = sasrec.SASRec(tiny_config(eval_batch=16))
    params = sasrec.init_params(model, 0)
    scores_fn = sasrec.make_scores_fn(model)
    got = list(sasrec.top_items(model, params, ds, "test", 7, exclude_history, scores_fn))
    assert np.concatenate([u for u, _, _ in got]).tolist() == list(range(30))
    for users, items, scores in got:
        hists = [ds.sequences[u][:-1] for u in users]
        tokens, last = packing.history_batch(hists, model.cfg.max_len)
        full = np.asarray(scores_fn(params, np.pad(tokens, ((0, 16 - len(users)), (0, 0))),
                                    np.pad(last, (0, 16 - len(users)))))[: len(users)]  # fmt: skip
        for row, hist in enumerate(hists):
            ref = full[row].astype(np.float32).copy()
            if exclude_history:
                ref[hist] = -np.inf
            order = np.lexsort((np.arange(NUM_ITEMS), -ref))[:7]
            assert items[row].tolist() == order.tolist()
            np.testing.assert_array_equal(scores[row], ref[order])
            if exclude_history:
                assert not set(items[row].tolist()) & set(hist.tolist())

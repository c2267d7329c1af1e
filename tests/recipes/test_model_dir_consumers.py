"""A `jaxrec reproduce --steps` MODEL_DIR is read back by `jaxrec eval` and
`jaxrec recommend`: the same constrained search (re-scored by the dense head for the hybrid
recipe), the same metrics, clear errors on bad input."""

import json
import pathlib

import numpy as np
import pytest

from jaxrec import cli, model_dir
from jaxrec.data import canonical, prepare, synthetic
from jaxrec.data.processing import PrepareOptions
from jaxrec.inference import metrics as eval_metrics

SMALL = [
    "--gin.RecipeConfig.model=tiny", "--gin.RecipeConfig.model_overrides={}",
    "--gin.RecipeConfig.index_embeddings=text-tfidf", "--gin.RecipeConfig.index_levels=2",
    "--gin.RecipeConfig.index_codes=16", "--gin.RecipeConfig.index_epochs=10",
    "--gin.RecipeConfig.validation_users=60", "--gin.RecipeConfig.num_beams=20",
    "--gin.RecipeConfig.eval_every_steps=15", "--gin.TrainSettings.batch_size=8",
    "--gin.TrainSettings.learning_rate=0.005",
]  # fmt: skip


HYBRID = ["--gin.RecipeConfig.hybrid=True", "--gin.RecipeConfig.item_id_inputs=True",
          "--gin.TrainSettings.next_item_loss=1.0"]  # fmt: skip


def write_small_dataset(root):
    """A prepared synthetic dataset (150 users, 80 items) in root/data: (dataset, its dir)."""
    synthetic.generate(str(root / "raw"), num_users=150, num_items=80, num_topics=5, seed=2)
    ds = prepare.prepare_dataset("synthetic", str(root / "raw"),
                                 options=PrepareOptions(num_negatives=10, seed=2))  # fmt: skip
    canonical.write_dataset(ds, str(root / "data"))
    return ds, str(root / "data")


# The hybrid MODEL_DIR (beams re-scored by the dense head) is slow-marked here; its ranking is
# tested in tests/recipes/test_hybrid.py.
@pytest.fixture(
    scope="module", params=["generative", pytest.param("hybrid", marks=pytest.mark.slow)]
)
def run(tmp_path_factory, request):
    root = tmp_path_factory.mktemp("consumers")
    ds, _ = write_small_dataset(root)
    out = root / "run"
    argv = ["reproduce", "tiger", "--dataset", str(root / "data"), "--out", str(out),
            "--steps", "30", *SMALL, *(HYBRID if request.param == "hybrid" else [])]  # fmt: skip
    assert cli.main(argv) == 0
    return ds, str(root / "data"), str(out), json.loads((out / "result.json").read_text())


def _last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_the_record_names_the_selected_step_and_eval_reproduces_the_test_figures(run, capsys):
    ds, data, out, result = run
    record = model_dir.read_record(out)
    assert record["kind"] == "semantic_id" and record["status"] == "done"
    assert record["selected_step"] == result["validation"]["selected_step"]
    # The run wrote the test's per-user rows where `jaxrec eval` writes them; eval rewrites
    # the same bytes, and the rows give back the reported metrics.
    rows_path = pathlib.Path(out) / result["test_rows"]
    assert result["test_rows"] == f"eval_retrieval_test_step{record['selected_step']}.jsonl"
    written = rows_path.read_text(encoding="utf-8")
    rows = [json.loads(line) for line in written.splitlines()]
    assert [r["user"] for r in rows] == list(range(ds.num_users))
    ranks = np.array([r["rank"] or 0 for r in rows])
    assert np.mean((ranks > 0) & (ranks <= 10)) == pytest.approx(result["test"]["recall@10"])
    assert all(r["items"][r["rank"] - 1] == r["target"] for r in rows
               if r["rank"] is not None and r["rank"] <= len(r["items"]))  # fmt: skip
    assert cli.main(["eval", "--model-dir", out, "--dataset", data, "--split", "test",
                     "--json"]) == 0  # fmt: skip
    assert rows_path.read_text(encoding="utf-8") == written
    evaluated = _last_json(capsys)
    assert evaluated["step"] == record["selected_step"]
    assert record.get("fusion_weight") == result["test"].get("fusion_weight")
    for key, value in result["test"].items():
        if isinstance(value, dict):  # hybrid: the generative / dense / per-weight parts
            assert evaluated[key].keys() == value.keys(), key
            continue
        assert evaluated[key] == pytest.approx(value, abs=1e-12), key


def test_recommend_gives_the_items_eval_scores(run, tmp_path, capsys):
    ds, data, out, result = run
    recs = tmp_path / "recs.jsonl"
    assert cli.main(["recommend", "--model-dir", out, "--dataset", data, "--split", "test",
                     "--top-k", "20", "--out", str(recs), "--json"]) == 0  # fmt: skip
    assert _last_json(capsys)["users"] == ds.num_users
    rows = [json.loads(line) for line in recs.read_text().splitlines()]
    assert [r["user"] for r in rows] == [str(u) for u in range(ds.num_users)]
    for r in rows:
        assert len(r["items"]) == len(r["scores"]) == len(r["titles"]) == 20
        assert r["scores"] == sorted(r["scores"], reverse=True)
        assert r["titles"] == [ds.items[i].title for i in r["items"]]
    ranked = np.array([r["items"] for r in rows])
    metrics = eval_metrics.retrieval_metrics(ranked, ds.targets("test"))
    for key, value in metrics.items():
        assert result["test"][key] == pytest.approx(value, abs=1e-12), key


def test_users_and_histories_files(run, tmp_path, capsys):
    ds, data, out, _ = run
    split_out, users_out, hist_out = (tmp_path / n for n in ("s.jsonl", "u.jsonl", "h.jsonl"))
    base = ["recommend", "--model-dir", out, "--dataset", data, "--top-k", "5"]
    assert cli.main(base + ["--split", "test", "--out", str(split_out)]) == 0
    by_user = {r["user"]: r for r in map(json.loads, split_out.read_text().splitlines())}
    users = tmp_path / "users.txt"
    users.write_text("3\n\n7\n")
    assert cli.main(base + ["--users", str(users), "--split", "test", "--out",
                            str(users_out)]) == 0  # fmt: skip
    got = [json.loads(line) for line in users_out.read_text().splitlines()]
    assert [g["user"] for g in got] == ["3", "7"]
    assert [g["items"] for g in got] == [by_user["3"]["items"], by_user["7"]["items"]]
    history = [int(i) for i in ds.example(3, "test", 20).history]
    hist = tmp_path / "hist.jsonl"
    hist.write_text(json.dumps({"user": "anna", "history": history}) + "\n")
    assert cli.main(base + ["--histories", str(hist), "--out", str(hist_out)]) == 0
    (row,) = [json.loads(line) for line in hist_out.read_text().splitlines()]
    assert row["user"] == "anna" and row["items"] == by_user["3"]["items"]
    capsys.readouterr()

    users.write_text("3\n99999\n")
    assert cli.main(base + ["--users", str(users), "--out", str(users_out)]) == 2
    err = capsys.readouterr().err
    assert (
        f"{users}:2: unknown user '99999'" in err.strip().splitlines()[-1]
        and "Traceback" not in err
    )
    hist.write_text(json.dumps({"history": [1, 2]}) + "\n" + json.dumps({"history": [5, 800]}))
    assert cli.main(base + ["--histories", str(hist), "--out", str(hist_out)]) == 2
    err = capsys.readouterr().err
    assert f"{hist}:2: unknown item 800" in err.strip().splitlines()[-1]


def test_prefix_errors_class_every_target_the_model_misses(run, tmp_path, capsys):
    # A reference that finds every target (its list is the target): every validation target
    # the model misses in its top 5 is then a reference-only target, and the analysis must
    # class each one: lost at some level (absent from the 8 final beams) or ranked 6..8.
    ds, data, out, _ = run
    ref, rows_out = tmp_path / "ref.jsonl", tmp_path / "rows.jsonl"
    ref.write_text("".join(json.dumps({"user": str(u), "items": [int(t)]}) + "\n"
                           for u, t in enumerate(ds.targets("validation"))))  # fmt: skip
    assert cli.main(["analyze", "prefix-errors", "--model-dir", out, "--dataset", data,
                     "--reference", str(ref), "--top-k", "5", "--num-beams", "8",
                     "--out", str(rows_out), "--json"]) == 0  # fmt: skip
    report = _last_json(capsys)
    # The analysis reads the constrained search in beam order (a hybrid's re-scoring by its
    # dense head does not enter it): the ranks to compare with are that search's.
    sid = model_dir.load_sid_model(out)
    _, eval_rows = sid.rec.evaluate(sid.params, ds, "validation", None, 8, sid.batch_size,
                                    with_rows=True)  # fmt: skip
    ranks = np.array([r["rank"] or 0 for r in eval_rows])
    causes = report["reference_only_by_cause"]
    assert report["reference_hits"] == ds.num_users
    assert report["model_hits"] == int(((ranks > 0) & (ranks <= 5)).sum())
    assert report["reference_only"] == int(((ranks == 0) | (ranks > 5)).sum()) > 0
    assert causes.pop("ranked_past_5") == int((ranks > 5).sum())
    assert sum(causes.values()) == int((ranks == 0).sum())
    assert len(causes) == report["levels"]
    rows = [json.loads(line) for line in rows_out.read_text().splitlines()]
    assert len(rows) == report["reference_only"]
    assert all((r["lost_at_level"] == 0) == (r["rank"] is not None) for r in rows)


def test_beams_after_a_step_are_those_of_the_full_search(run):
    # The analysis reads the beams after step l from a search over the depth-l prefixes; the
    # full search stopped after l steps (nothing finished: it returns its live beams) must
    # hold the same prefixes.
    from jaxrec.inference import prefix_errors
    from jaxrec.inference.generation import make_generate_fn

    ds, _, out, _ = run
    sid = model_dir.load_sid_model(out)
    rec, beams = sid.rec, 4
    histories = [ds.example(u, "validation", rec.history).history for u in range(40)]
    paths = np.asarray(rec.vocab.codes)
    for depth in range(1, paths.shape[1]):
        catalogue, _ = prefix_errors.prefix_catalogue(paths, depth, rec.vocab.eos_id)
        got = prefix_errors._beams(rec, sid.params, histories, catalogue, depth, beams, 8)
        generate = make_generate_fn(rec.model, rec.vocab.eos_id, beams, None, depth)
        seqs, scores = generate(sid.params, rec.encoder_inputs(histories),
                                rec.catalogue.constraint)  # fmt: skip
        prefixes = {tuple(p): i for i, p in enumerate(np.unique(paths[:, :depth], axis=0))}
        for u in range(len(histories)):
            live = {prefixes[tuple(s[:depth])] for s, sc in zip(np.asarray(seqs[u]),
                    np.asarray(scores[u]), strict=True) if np.isfinite(sc)}  # fmt: skip
            assert live == set(got[u][got[u] >= 0].tolist()), (depth, u)
            assert len(live) == min(beams, len(prefixes))


def test_the_hybrid_chooses_its_weight_again_with_the_test_beams(tmp_path, capsys):
    """`test_num_beams`: the step is chosen with `num_beams`, the fusion weight again on the
    same validation users with the test's beams, and the MODEL_DIR records both, so `jaxrec
    eval` gives back the test figures."""
    from jaxrec.recipes.hybrid import best_weight

    _, data = write_small_dataset(tmp_path)
    out = tmp_path / "run"
    assert cli.main(["reproduce", "tiger", "--dataset", data, "--out", str(out), "--steps",
                     "30", *SMALL, *HYBRID, "--gin.RecipeConfig.num_beams=4",
                     "--gin.RecipeConfig.test_num_beams=12"]) == 0  # fmt: skip
    result = json.loads((out / "result.json").read_text())
    val, test = result["validation"], result["test"]
    # Selection ran with 4 beams: the beams alone never rank a target past 4th.
    assert val["generative"]["recall@5"] == val["generative"]["recall@20"]
    again = val["test_beams"]
    assert again["num_beams"] == 12 and again["num_users"] == 60
    assert again["fusion_weight"] == best_weight(again["by_weight"]) == test["fusion_weight"]
    record = model_dir.read_record(str(out))
    assert record["num_beams"] == 12 and record["fusion_weight"] == test["fusion_weight"]
    assert cli.main(["eval", "--model-dir", str(out), "--dataset", data, "--split", "test",
                     "--json"]) == 0  # fmt: skip
    evaluated = _last_json(capsys)
    for key in ("recall@5", "ndcg@10", "recall@20", "fusion_weight"):
        assert evaluated[key] == pytest.approx(test[key], abs=1e-12), key
    assert evaluated["generative"] == pytest.approx(test["generative"], abs=1e-12)

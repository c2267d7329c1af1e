"""Ensembles of semantic-id models (`jaxrec.recipes.ensemble`, `jaxrec analyze ensemble`): the
fusions on hand-made lists, and on two trained hybrid MODEL_DIRs read back from disk; and
`jaxrec reproduce tiger --seeds`, which trains the members and ranks with them in one command."""

import json

import numpy as np
import pytest

from jaxrec import cli
from jaxrec.recipes import ensemble
from tests.recipes.test_model_dir_consumers import HYBRID, SMALL, write_small_dataset

NEG = -np.inf


def test_union_keeps_each_item_once_in_member_then_beam_order():
    a = np.array([[3, 1, -1], [5, 6, 7]])
    b = np.array([[1, 4, 3], [7, 5, 6]])
    assert ensemble.candidate_union([a, b]).tolist() == [[3, 1, 4, -1, -1, -1],
                                                         [5, 6, 7, -1, -1, -1]]  # fmt: skip


def test_beam_scores_at_the_union_take_the_lowest_beam_where_absent():
    items = np.array([[3, 1, -1]])
    beam = np.array([[-0.5, -2.0, NEG]])
    union = np.array([[3, 1, 4, -1]])
    assert ensemble.beam_at(items, beam, union).tolist() == [[-0.5, -2.0, -2.0, NEG]]
    assert ensemble.rank_at(items, union).tolist() == [[1, 2, 0, 0]]


def test_rrf_rewards_items_both_members_list():
    # Member 1 ranks 1 > 2 > 3, member 2 ranks 2 > 4 > 1: item 2 (ranks 2 and 1) wins with
    # k = 1 (1/3 + 1/2 against 1/2 + 1/4 for item 1); item 4 (rank 2 of one) comes before 3.
    a, b = np.array([[1, 2, 3]]), np.array([[2, 4, 1]])
    union = ensemble.candidate_union([a, b])
    ranks = [ensemble.rank_at(a, union), ensemble.rank_at(b, union)]
    order = ensemble.ranked(union, ensemble.rrf_scores(ranks, 1.0, union))
    assert order.tolist() == [[2, 1, 4, 3, -1, -1]]


def test_the_sum_adds_beam_and_weighted_dense_scores():
    a, b = np.array([[1, 2]]), np.array([[2, 3]])
    members = [ensemble.MemberScores(a, np.array([[-1.0, -3.0]]), a),
               ensemble.MemberScores(b, np.array([[-1.0, -2.0]]), b)]  # fmt: skip
    union = ensemble.candidate_union([a, b])  # [1, 2, 3, -1]
    dense = [np.array([[-5.0, -1.0, -9.0, NEG]]), np.array([[-5.0, -1.0, -1.0, NEG]])]
    fused = ensemble.fusion(members, dense, union)
    # Beams only: 1 -> -1 + -2 (floor of member 2), 2 -> -3 + -1, 3 -> -3 (floor) + -2.
    assert fused.ranking("sum,w=0").tolist() == [[1, 2, 3, -1]]
    # With the heads (weight 1): 1 -> -3 - 10, 2 -> -4 - 2, 3 -> -5 - 10.
    assert fused.ranking("sum,w=1").tolist() == [[2, 1, 3, -1]]
    with pytest.raises(ValueError, match="unknown ensemble variant"):
        fused.ranking("mean,w=1")
    assert "sum,w=1" not in ensemble.fusion(members, None, union).variants()


# The hybrid members test with more beams than they select with (as the hybrid recipe does):
# the ensemble, `analyze ensemble` and `eval` of a --seeds OUT must all use the test's.
HYBRIDS = [*HYBRID, "--gin.RecipeConfig.test_num_beams=24"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The small dataset; `--seeds 0,1` of the hybrid recipe (OUT, argv, its --json line); seed
    1 trained alone; the generative recipe at seed 0. The analyses use the --seeds members as
    their two hybrid runs, so five trainings (the resume test's included) cover the module."""
    import contextlib
    import io

    root = tmp_path_factory.mktemp("ensemble")
    _, data = write_small_dataset(root)
    base = ["reproduce", "tiger", "--dataset", data, "--steps", "30", *SMALL]
    out = root / "seeds"
    argv = [*base, "--out", str(out), "--seeds", "0,1", "--validation-users", "100", *HYBRIDS]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli.main([*argv, "--json"]) == 0
    for name, seed, extra in (("alone1", 1, HYBRIDS), ("gen", 0, [])):
        assert cli.main([*base, "--out", str(root / name), "--seed", str(seed), *extra]) == 0
    result = json.loads(printed.getvalue().strip().splitlines()[-1])
    return data, out, argv, result, str(root / "alone1"), str(root / "gen")


@pytest.fixture(scope="module")
def runs(trained):
    """(dataset dir, the two hybrid runs, the generative run)."""
    data, out, _, _, _, gen = trained
    return data, [str(out / "seed_0"), str(out / "seed_1")], gen


def _ensemble(capsys, data, runs, *extra):
    assert cli.main(["analyze", "ensemble", *runs, "--dataset", data, *extra, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_members_alone_are_their_runs_test_figures_and_the_choice_is_validations(runs, capsys):
    data, outs, _ = runs
    result = _ensemble(capsys, data, outs, "--validation-users", "100")
    for out, alone in zip(outs, result["members_test"], strict=True):
        with open(f"{out}/result.json", encoding="utf-8") as f:
            test = json.load(f)["test"]
        for key, value in alone.items():
            assert value == pytest.approx(test[key], abs=1e-12), (out, key)
    assert result["validation_users"] == 100
    assert result["variant"] == ensemble.best_variant(result["validation_by_variant"])
    assert result["test"] == result["test_by_variant"][result["variant"]]
    assert result["candidates"] == sum(result["num_beams"])


def test_a_model_with_itself_ranks_as_the_model_alone(runs, capsys):
    # Two copies of one hybrid model: the sum at the model's own weight and the reciprocal-rank
    # fusion of its own ranking give that ranking back.
    data, outs, _ = runs
    result = _ensemble(capsys, data, [outs[0], outs[0]], "--validation-users", "50")
    alone = result["members_test"][0]
    with open(f"{outs[0]}/result.json", encoding="utf-8") as f:
        weight = json.load(f)["test"]["fusion_weight"]
    for variant in (f"sum,w={weight:g}", "rrf,k=60"):
        got = result["test_by_variant"][variant]
        for key, value in alone.items():
            assert got[key] == pytest.approx(value, abs=1e-12), (variant, key)


def test_with_a_generative_member_only_the_beams_and_their_ranks_fuse(runs, capsys):
    # A model without a dense head: the sum has no head term (w = 0 only), the members' own
    # rankings are the hybrid's re-scored beams and the generative model's beams.
    data, outs, generative = runs
    result = _ensemble(capsys, data, [generative, outs[0]], "--validation-users", "50")
    assert [v for v in result["test_by_variant"] if v.startswith("sum")] == ["sum,w=0"]
    assert result["fusion_weights"][0] is None and result["fusion_weights"][1] is not None
    for out, alone in zip((generative, outs[0]), result["members_test"], strict=True):
        with open(f"{out}/result.json", encoding="utf-8") as f:
            test = json.load(f)["test"]
        for key, value in alone.items():
            assert value == pytest.approx(test[key], abs=1e-12), (out, key)


def test_bad_input_is_one_clear_error(runs, tmp_path, capsys):
    data, outs, _ = runs
    for argv, message in (
        ([outs[0]], "an ensemble needs at least two RUNs"),
        ([outs[0], str(tmp_path)], f"{tmp_path}: not a semantic-id MODEL_DIR"),
        ([*outs, "--validation-users", "0"], "--validation-users 0: must be in 1..150"),
    ):
        assert cli.main(["analyze", "ensemble", *argv, "--dataset", data]) == 2
        assert capsys.readouterr().err.strip() == f"jaxrec: error: {message}"


# --- `jaxrec reproduce tiger --seeds`: the members trained and ensembled in one command ------


@pytest.fixture(scope="module")
def seeds_out(trained):
    """(OUT of `--seeds 0,1`, its command, what --json printed, seed 1 trained alone)."""
    _, out, argv, result, alone, _ = trained
    return out, argv, result, alone


def _last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_seeds_train_each_member_as_its_own_run_and_rank_as_their_ensemble(runs, seeds_out,
                                                                           capsys):  # fmt: skip
    data, _, _ = runs
    out, _, result, alone = seeds_out
    assert result["runs"] == [str(out / "seed_0"), str(out / "seed_1")]
    assert result["num_beams"] == [24, 24]  # the members' test beams, not the 20 of selection
    # Each member is the run `--seed s` makes alone ...
    with open(out / "seed_1" / "result.json", encoding="utf-8") as f, \
            open(f"{alone}/result.json", encoding="utf-8") as g:  # fmt: skip
        assert json.load(f)["test"] == json.load(g)["test"]
    # ... and the ensemble is `jaxrec analyze ensemble` of such runs, written to OUT.
    expected = _ensemble(capsys, data, [result["runs"][0], alone], "--validation-users", "100")
    for key in ("variant", "test", "members_test", "test_by_variant", "validation_by_variant"):
        assert result[key] == expected[key], key
    with open(out / "ensemble.json", encoding="utf-8") as f:
        assert json.load(f)["test"] == result["test"]
    assert len(result["seconds"]["members"]) == 2
    # The OUT stands for its members in the analyses.
    again = _ensemble(capsys, data, [str(out)], "--validation-users", "100")
    assert again["runs"] == result["runs"] and again["test"] == result["test"]
    assert cli.main(["analyze", "seeds", str(out), "--json"]) == 0
    assert [r["seed"] for r in _last_json(capsys)["runs"]] == [0, 1]


def test_seeds_resume_trains_only_the_members_not_finished(runs, seeds_out, capsys):
    import os
    import shutil

    out, argv, _, _ = seeds_out
    with open(out / "ensemble.json", encoding="utf-8") as f:
        before = json.load(f)
    kept = os.path.getmtime(out / "seed_0" / "result.json")
    shutil.rmtree(out / "seed_1")  # stopped before the second member was trained
    (out / "ensemble.json").unlink()
    data = runs[0]
    assert cli.main(["analyze", "ensemble", str(out), "--dataset", data]) == 2
    assert capsys.readouterr().err.strip() == (
        f"jaxrec: error: {out}: member {out / 'seed_1'} is missing or has not finished (resume "
        "the run with the same command and --resume)")  # fmt: skip
    assert cli.main([*argv, "--resume"]) == 0
    assert os.path.getmtime(out / "seed_0" / "result.json") == kept
    with open(out / "ensemble.json", encoding="utf-8") as f:
        after = json.load(f)
    for key in ("variant", "test", "members_test", "test_by_variant"):
        assert after[key] == before[key], key
    capsys.readouterr()


def test_seeds_bad_input_is_one_clear_error(runs, seeds_out, tmp_path, capsys):
    data = runs[0]
    out, _, _, alone = seeds_out
    fresh = str(tmp_path / "new")
    base = ["reproduce", "tiger", "--dataset", data, *SMALL, "--steps", "30"]
    for extra, message in (
        (["--out", fresh, "--seeds", "0,1", "--seed", "0"], "--seed and --seeds exclude each "
         "other (--seeds trains one run per seed)"),
        (["--out", fresh, "--seeds", "1"], "--seeds '1': an ensemble needs at least two "
         "distinct seeds"),
        (["--out", fresh, "--seeds", "0,x"], "--seeds '0,x': want comma-separated integers, "
         "e.g. 0,1"),
        (["--out", fresh, "--validation-users", "9"], "--validation-users chooses an "
         "ensemble's fusion: it needs --seeds"),
        (["--out", alone, "--seeds", "0,1", "--resume"], f"--out {alone}: holds a single "
         "run, not a --seeds ensemble"),
    ):  # fmt: skip
        assert cli.main([*base, *extra]) == 2
        assert capsys.readouterr().err.strip() == f"jaxrec: error: {message}"
    for extra, message in (
        (["--seeds", "0,2", "--resume"], f"{out}: --resume with other seeds than the run "
         "there ([0, 1] -> [0, 2]); use the same command, or --overwrite to start anew"),
        (["--resume"], f"--out {out}: holds a --seeds ensemble; resume it with its --seeds"),
        (["--seeds", "0,1"], f"--out {out}: directory is not empty; pass --resume to "
         "continue the run there or --overwrite to start anew"),
    ):  # fmt: skip
        assert cli.main([*base, "--out", str(out), *extra]) == 2
        assert capsys.readouterr().err.strip() == f"jaxrec: error: {message}"


def test_seeds_out_recommends_with_the_ensemble_it_measured(runs, seeds_out, tmp_path,
                                                           monkeypatch, capsys):  # fmt: skip
    from jaxrec.data.canonical import read_dataset
    from jaxrec.inference import metrics as eval_metrics
    from jaxrec.inference import recommend

    data, _, _ = runs
    out = seeds_out[0]
    with open(out / "ensemble.json", encoding="utf-8") as f:
        measured = json.load(f)["test"]
    monkeypatch.setattr(recommend, "_ENSEMBLE_CHUNK", 64)  # several chunks of users
    recs = tmp_path / "recs.jsonl"
    assert cli.main(["recommend", "--model-dir", str(out), "--dataset", data, "--split",
                     "test", "--top-k", "20", "--out", str(recs)]) == 0  # fmt: skip
    ds = read_dataset(data)
    rows = [json.loads(line) for line in recs.read_text().splitlines()]
    assert [r["user"] for r in rows] == [str(u) for u in range(ds.num_users)]
    assert all(r["scores"] == sorted(r["scores"], reverse=True) for r in rows)
    got = eval_metrics.retrieval_metrics(np.array([r["items"] for r in rows]),
                                         ds.targets("test"))  # fmt: skip
    for key, value in got.items():
        assert measured[key] == pytest.approx(value, abs=1e-12), key
    assert cli.main(["recommend", "--model-dir", str(out), "--dataset", data, "--split",
                     "test", "--checkpoint-step", "30", "--out", str(recs)]) == 2  # fmt: skip
    assert "an ensemble of runs; --checkpoint-step names one run's step" in capsys.readouterr().err


def test_seeds_out_evaluates_again_as_measured(runs, seeds_out, tmp_path, capsys):
    data, _, _ = runs
    out = seeds_out[0]
    with open(out / "ensemble.json", encoding="utf-8") as f:
        measured = json.load(f)
    capsys.readouterr()
    rows = tmp_path / "rows.jsonl"
    assert cli.main(["eval", "--model-dir", str(out), "--dataset", data, "--split", "test",
                     "--out", str(rows), "--json"]) == 0  # fmt: skip
    evaluated = _last_json(capsys)
    assert evaluated["variant"] == measured["variant"]
    assert evaluated["members"] == measured["runs"] and evaluated["num_users"] == 150
    for key, value in measured["test"].items():
        assert evaluated[key] == pytest.approx(value, abs=1e-12), key
    per_user = [json.loads(line) for line in rows.read_text().splitlines()]
    hits = np.mean([r["rank"] is not None and r["rank"] <= 10 for r in per_user])
    assert hits == pytest.approx(measured["test"]["recall@10"], abs=1e-12)
    assert cli.main(["eval", "--model-dir", str(out), "--dataset", data, "--task",
                     "ranking"]) == 2  # fmt: skip
    assert "evaluates retrieval at its members' selected steps" in capsys.readouterr().err

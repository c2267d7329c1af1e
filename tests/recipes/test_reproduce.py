"""`jaxrec reproduce tiger` end to end on a small synthetic dataset, within its budget."""

import json
import time

import pytest

from jaxrec import cli
from jaxrec.data import canonical, prepare, synthetic
from jaxrec.data.processing import PrepareOptions
from jaxrec.training.selection import plan_steps


def test_plan_fills_the_available_time_with_training_and_evaluations():
    steps, evals = plan_steps(available_s=1000.0, step_s=0.5, eval_s=40.0, eval_every_s=200.0)
    used = steps * 0.5 + evals * 40.0
    assert 900.0 <= used <= 1000.0 + 40.0
    assert evals == int(steps * 0.5 / 200.0) + 1
    assert plan_steps(10.0, 1.0, 0.0, 100.0) == (10, 1)


def test_a_plan_on_the_command_line_replaces_the_recipes_own():
    import gin
    from jaxrec.cli.reproduce import recipe_config, with_plan

    hybrid = recipe_config(["experiments/tiger_prefix_shared_hybrid.gin"], [])
    gin.clear_config()
    assert (hybrid.minutes, hybrid.steps, hybrid.epochs) == (120, 0, 63)
    assert with_plan(hybrid) == hybrid
    budget = with_plan(hybrid, minutes=30.0)  # a budget again, not 63 epochs within it
    assert (budget.minutes, budget.steps, budget.epochs) == (30.0, 0, 0.0)
    steps = with_plan(hybrid, steps=8586)
    assert (steps.steps, steps.epochs) == (8586, 0.0)
    assert with_plan(steps, epochs=42.0).steps == 0
    assert with_plan(hybrid, epochs=42.0).epochs == 42.0


def test_reproduce_takes_one_plan(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["reproduce", "tiger", "--dataset", str(tmp_path), "--out", str(tmp_path / "o"),
                  "--minutes", "2", "--epochs", "3"])  # fmt: skip
    assert e.value.code == 2
    assert "--epochs: not allowed with argument --minutes" in capsys.readouterr().err


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    synthetic.generate(str(root / "raw"), num_users=300, num_items=120, num_topics=6, seed=1)
    ds = prepare.prepare_dataset("synthetic", str(root / "raw"),
                                 options=PrepareOptions(num_negatives=20, seed=1))  # fmt: skip
    canonical.write_dataset(ds, str(root / "data"))
    return ds, str(root / "data")


def test_reproduce_cli_builds_an_index_trains_selects_and_tests(small_dataset, tmp_path, capsys):
    ds, data_dir = small_dataset
    out = tmp_path / "run"
    t0 = time.perf_counter()
    code = cli.main([
        "reproduce", "tiger", "--dataset", data_dir, "--out", str(out), "--minutes", "2",
        "--gin.RecipeConfig.model=tiny", "--gin.RecipeConfig.model_overrides={}",
        "--gin.RecipeConfig.index_embeddings=text-tfidf", "--gin.RecipeConfig.index_levels=2",
        "--gin.RecipeConfig.index_codes=16", "--gin.RecipeConfig.index_epochs=20",
        "--gin.RecipeConfig.validation_users=100", "--gin.RecipeConfig.eval_every_minutes=0.2",
        "--gin.RecipeConfig.num_beams=10", "--gin.TrainSettings.batch_size=8",
        "--gin.TrainSettings.learning_rate=0.005", "--json",
    ])  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    result = json.loads((out / "result.json").read_text())
    test, val = summary["test"], summary["validation"]
    assert test["num_users"] == ds.num_users  # every user, once, at the end
    assert val["num_users"] == 100 and all(c["num_users"] == 100 for c in result["curve"])
    assert val["recall@10"] == max(c["recall@10"] for c in result["curve"])
    for k in (5, 10, 20):
        assert 0.0 <= test[f"ndcg@{k}"] <= test[f"recall@{k}"] <= 1.0
    # It learns: the planted structure puts it well above popularity within the budget.
    assert test["recall@10"] > 1.5 * summary["popularity_test"]["recall@10"]
    # The budget is planned and respected (index, setup, training, selection, test).
    seconds = summary["seconds"]
    assert set(seconds) >= {"index", "setup", "train", "select", "test", "total"}
    assert seconds["total"] <= 3 * 60 + 30
    # The reported total is the run's wall clock, each part counted once (it once counted the
    # test evaluation twice): at most the command's time, short of it by the start-up only.
    wall = time.perf_counter() - t0
    assert wall - 20 <= seconds["total"] <= wall
    parts = sum(seconds[k] for k in ("index", "setup", "train", "select", "test"))
    assert seconds["total"] == pytest.approx(parts, abs=15)
    assert (out / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / f"{ds.name}.index.json").exists()


def test_reproduce_refuses_a_budget_that_cannot_hold_the_run(small_dataset, tmp_path, capsys):
    _, data_dir = small_dataset
    code = cli.main(["reproduce", "tiger", "--dataset", data_dir, "--out", str(tmp_path),
                     "--minutes", "0.05", "--gin.RecipeConfig.index_embeddings=text-tfidf",
                     "--gin.RecipeConfig.index_epochs=1", "--gin.RecipeConfig.model=tiny",
                     "--gin.RecipeConfig.model_overrides={}",
                     "--gin.RecipeConfig.validation_users=50"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    # Refused as soon as the index has used the budget up, before anything is compiled (the
    # refusal after timing the first steps is tested in tests/training/test_budget.py).
    assert "too short" in err and "the index took" in err


def test_reproduce_reports_a_diverged_run_in_one_line(small_dataset, tmp_path, capsys):
    # A learning rate no model survives: the loss turns non-finite within a few steps and the
    # command ends with one error line (exit 1) naming the step, not a traceback.
    _, data_dir = small_dataset
    code = cli.main(["reproduce", "tiger", "--dataset", data_dir, "--out", str(tmp_path / "run"),
                     "--steps", "6", "--gin.RecipeConfig.index_embeddings=text-tfidf",
                     "--gin.RecipeConfig.index_levels=2", "--gin.RecipeConfig.index_codes=16",
                     "--gin.RecipeConfig.index_epochs=2", "--gin.RecipeConfig.model=tiny",
                     "--gin.RecipeConfig.model_overrides={}",
                     "--gin.RecipeConfig.validation_users=50", "--gin.TrainSettings.batch_size=8",
                     "--gin.TrainSettings.learning_rate=1e30"])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("jaxrec: error: non-finite ") and " at step " in err[-1]
    assert "Traceback" not in "\n".join(err)

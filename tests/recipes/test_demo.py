"""`jaxrec demo` end to end at a tiny size: every stage runs and the report is complete."""

import json

import pytest

from jaxrec.inference import evaluate
from jaxrec.recipes import demo, seeds


# The mixture recipe's parts (seqio tasks, python -m jaxrec.train, jaxrec eval) are tested
# in tests/tasks, tests/training and tests/inference; its demo run is slow-marked.
@pytest.mark.parametrize(
    "recipe", ["prefix_shared", pytest.param("mixture", marks=pytest.mark.slow)]
)
def test_demo_runs_every_stage_and_writes_the_report(tmp_path, recipe):
    cfg = demo.DemoConfig(
        users=150, items=100, topics=5, index_levels=2, index_codes=16, index_epochs=5,
        train_steps=20, batch_size=16, input_length=64, target_length=12, num_beams=5,
        sasrec_epochs=1, recipe=recipe, generative_epochs=4.0, generative_eval_epochs=2.0,
        validation_users=50,
    )  # fmt: skip
    result = demo.run_demo(str(tmp_path), cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    parts = {"jaxrec_generative", "jaxrec_dense"} if recipe == "prefix_shared" else set()
    assert set(metrics) == {"jaxrec", "popularity", "sasrec", "oracle"} | parts
    for system in metrics.values():
        for k in (1, 5, 10, 20):
            assert 0.0 <= system[f"recall@{k}"] <= 1.0
            assert system[f"ndcg@{k}"] <= system[f"recall@{k}"] + 1e-9
    assert metrics["jaxrec"]["invalid_rate"] == 0.0  # constrained search: only real items
    assert metrics["oracle"]["recall@10"] > metrics["popularity"]["recall@10"]
    if parts:  # hybrid: the beams' items re-ordered, so a list as long as the beams holds
        # the same items as the generative one
        gen = metrics["jaxrec_generative"]
        assert metrics["jaxrec"]["recall@20"] == pytest.approx(gen["recall@20"], abs=1e-12)
    if recipe == "prefix_shared":  # a demo OUT is one run of `jaxrec analyze seeds`
        run = seeds.read_run(str(tmp_path))
        assert run["seed"] == cfg.seed and set(run["systems"]) == set(metrics)
        assert run["systems"]["sasrec"]["recall@10"] == metrics["sasrec"]["recall@10"]
        assert run["config"]["hybrid"] is True and "seed" not in run["config"]["train"]
    report = (tmp_path / "report.md").read_text()
    assert "| jaxrec |" in report and "below the oracle" in report and "x SASRec's" in report
    assert ("the hybrid one" in report) == bool(parts)
    assert f"`{cfg.index_embeddings}` item embeddings" in report  # text + collaborative by default
    for name in ("loss.png", "metrics.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "total" in result["timings"]
    losses = [loss for _, loss in result["loss"]]
    assert losses[-1] < losses[0]
    if recipe == "mixture":
        assert len(losses) == cfg.train_steps
    # The demo's model is a MODEL_DIR like any other: `jaxrec eval` gives its figures again.
    again, _ = evaluate.evaluate_model_dir(
        str(tmp_path / "model"), str(tmp_path / "data"), split="test", num_beams=cfg.num_beams,
        max_users=cfg.eval_users if recipe == "mixture" else None,
    )  # fmt: skip
    for key in ("recall@10", "ndcg@10", "recall@20"):
        assert again[key] == pytest.approx(metrics["jaxrec"][key], abs=1e-12), key

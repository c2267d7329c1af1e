"""`python -m t5x.infer` / `t5x.eval` with gin/t5x/infer_jaxrec.gin and eval_jaxrec.gin on the
fine-tuned checkpoint: only catalogue items, the best beam, and the metrics of `jaxrec eval`."""

from __future__ import annotations

import pytest

from .conftest import FINETUNE_STEPS, TASK, TINY, read_jsonl, run_t5x


def _common(model_dir) -> dict:
    return {
        "MIXTURE_OR_TASK_NAME": f"'{TASK}'",
        "MIXTURE_OR_TASK_MODULE": "'tasks.synthetic'",
        "CHECKPOINT_PATH": f"'{model_dir / f'checkpoint_{FINETUNE_STEPS}'}'",
        "NUM_DECODES": 20,
        **TINY,
    }


@pytest.fixture(scope="session")
def jaxrec_eval(finetuned, t5x_env, shared_root):
    """`jaxrec eval --model_dir <t5x MODEL_DIR>` (20 beams, test split): metrics and rows.
    Run once per session under a lock, as `finetuned` is, whichever xdist worker asks first."""
    import json
    import subprocess
    import sys

    from .conftest import REPO, _locked

    out, summary = shared_root / "jaxrec_eval_rows.jsonl", shared_root / "jaxrec_eval.json"
    with _locked(shared_root / "jaxrec_eval.lock"):
        if not summary.exists():
            cmd = [sys.executable, "-m", "jaxrec", "eval", "--model_dir", str(finetuned[0]),
                   "--dataset", t5x_env["JAXREC_SYNTHETIC_DIR"], "--num_beams", "20", "--json",
                   "--out", str(out)]  # fmt: skip
            env = {k: v for k, v in t5x_env.items() if k != "XLA_FLAGS"}
            proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                                  timeout=600)  # fmt: skip
            assert proc.returncode == 0, proc.stderr[-4000:]
            summary.write_text(proc.stdout.strip().splitlines()[-1])
    return json.loads(summary.read_text()), read_jsonl(out)


def test_infer_emits_only_valid_items_best_beam_first(finetuned, t5x_env, tmp_path, jaxrec_eval):
    from jaxrec.tasks import registry

    macros = dict(_common(finetuned[0]), INFER_OUTPUT_DIR=f"'{tmp_path}'")
    macros["TASK_FEATURE_LENGTHS"] = "{'inputs': 128, 'targets': 8}"
    run_t5x("infer", "t5x/infer_jaxrec.gin", macros, t5x_env)
    (out,) = tmp_path.glob(f"{TASK}-predict.jsonl-00000-of-00001")
    predictions = [r["prediction"] for r in read_jsonl(out)]

    metrics, rows = jaxrec_eval
    assert len(predictions) == len(rows) == metrics["num_users"]
    registry.register_dataset_tasks(
        t5x_env["JAXREC_SYNTHETIC_DIR"], name="synthetic", item_repr="sid",
        cache_dir=t5x_env["JAXREC_CACHE_DIR"],
    )  # fmt: skip
    strings = registry.source_of(TASK).renderer.strings
    # Every prediction is a catalogue item ...
    assert set(predictions) <= set(strings), set(predictions) - set(strings)
    # ... and it is the best of the 20 beams: jaxrec's own decoder ranks it first.
    assert predictions == [strings[r["items"][0]] for r in rows]


def test_eval_reports_the_metrics_of_jaxrec_eval(finetuned, t5x_env, tmp_path, jaxrec_eval):
    macros = dict(_common(finetuned[0]), EVAL_OUTPUT_DIR=f"'{tmp_path}'")
    log = run_t5x("eval", "t5x/eval_jaxrec.gin", macros, t5x_env)
    assert f"{TASK}/recall@10" in log
    (t5x_metrics,) = read_jsonl(tmp_path / "inference_eval" / f"{TASK}-metrics.jsonl")
    metrics, rows = jaxrec_eval
    assert t5x_metrics["step"] == metrics["step"] == FINETUNE_STEPS
    assert t5x_metrics["recall@10"] == metrics["recall@10"]
    for k in ("recall@1", "ndcg@1", "recall@5", "ndcg@5", "ndcg@10", "recall@20", "ndcg@20"):
        assert t5x_metrics[k] == pytest.approx(metrics[k], abs=1e-9), k
    # Same ranked lists per user (t5x's inferences keep the postprocessed item lists).
    t5x_rows = read_jsonl(tmp_path / "inference_eval" / f"{TASK}-{FINETUNE_STEPS:06d}.jsonl")
    assert [r["prediction"] for r in t5x_rows] == [r["items"] for r in rows]


def test_recommend_on_a_t5x_model_dir_lists_the_items_jaxrec_eval_ranked(
    finetuned, t5x_env, tmp_path, jaxrec_eval
):
    """`jaxrec recommend` reads the t5x MODEL_DIR too: one JSON line per test user whose items
    are the ones `jaxrec eval` ranked (same search, same scores)."""
    import json
    import subprocess
    import sys

    from .conftest import REPO

    out = tmp_path / "recs.jsonl"
    cmd = [sys.executable, "-m", "jaxrec", "recommend", "--model-dir", str(finetuned[0]),
           "--dataset", t5x_env["JAXREC_SYNTHETIC_DIR"], "--split", "test", "--top-k", "20",
           "--num-beams", "20", "--out", str(out), "--json"]  # fmt: skip
    env = {k: v for k, v in t5x_env.items() if k != "XLA_FLAGS"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["users"] == jaxrec_eval[0]["num_users"]
    recs = read_jsonl(out)
    _, rows = jaxrec_eval
    assert [r["items"] for r in recs] == [r["items"] for r in rows]
    assert all(r["scores"] == sorted(r["scores"], reverse=True) for r in recs)

"""train_metrics.jsonl keeps one record per step after a crash and a resume."""

import json
import pathlib
import shutil

from jaxrec import train
from jaxrec.training import metrics_log

from .test_train_cli import _args

STEPS, EVERY = 12, 4


def _steps(model_dir):
    lines = (pathlib.Path(model_dir) / "train_metrics.jsonl").read_text().splitlines()
    return [json.loads(ln)["step"] for ln in lines]


def test_resume_after_a_crash_between_checkpoints_logs_each_step_once(tmp_path):
    run = tmp_path / "run"
    args = _args(run, STEPS) + [f"--gin.train.checkpoint_every={EVERY}"]
    assert train.main(args) == 0
    # A crash just before the last checkpoint: steps 9..12 were logged but not saved.
    shutil.rmtree(run / "checkpoints" / str(STEPS))
    with open(run / "train_metrics.jsonl", "a") as f:
        f.write('{"step": 13, "last_lo')  # and a line torn by the kill
    first = {r["step"]: r for r in metrics_log.read_records(str(run / "train_metrics.jsonl"))}
    assert train.main(args) == 0
    assert _steps(run) == list(range(1, STEPS + 1))
    after = {r["step"]: r for r in metrics_log.read_records(str(run / "train_metrics.jsonl"))}
    assert after[STEPS]["last_loss"] == first[STEPS]["last_loss"]  # deterministic redo


def test_prepare_for_resume_keeps_the_later_record_per_step(tmp_path):
    path = tmp_path / "m.jsonl"
    recs = [{"step": 1, "v": "a"}, {"step": 2, "v": "a"}, {"step": 2, "v": "b"}, {"step": 3}]
    path.write_text("".join(json.dumps(r) + "\n" for r in recs) + '{"step": 4')
    metrics_log.prepare_for_resume(str(path), 2)
    assert [json.loads(ln) for ln in path.read_text().splitlines()] == [
        {"step": 1, "v": "a"},
        {"step": 2, "v": "b"},
    ]

"""The kill -9 trial: training killed five times (twice while a checkpoint is being written)
resumes every time, and its losses are bit-identical to an uninterrupted run's.

Slow (about 2 minutes: seven training processes): `python -m pytest -q -m slow
tests/training/test_kill9_resume.py`. The result is recorded in docs/benchmarks.md.
"""

import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

from jaxrec.training import metrics_log

from .test_train_cli import _args

STEPS, EVERY = 40, 5
REPO = pathlib.Path(__file__).resolve().parents[2]


def _cmd(model_dir):
    args = _args(model_dir, STEPS) + [f"--gin.train.checkpoint_every={EVERY}"]
    return [sys.executable, "-m", "jaxrec.train", *args]


def _records(model_dir):
    path = pathlib.Path(model_dir) / "train_metrics.jsonl"
    return metrics_log.read_records(str(path)) if path.exists() else []


def _last_step(model_dir):
    return max((r["step"] for r in _records(model_dir)), default=0)


def _writing(model_dir):
    """Steps of checkpoints being written (orbax's temporary directories)."""
    ckpt = pathlib.Path(model_dir) / "checkpoints"
    names = os.listdir(ckpt) if ckpt.exists() else []
    return [int(n.split(".")[0]) for n in names if "tmp" in n and n.split(".")[0].isdigit()]


def _run(model_dir, log, trigger=None, timeout=300):
    """Run training; SIGKILL it when `trigger()` holds. Returns what the kill hit, or None."""
    proc = subprocess.Popen(_cmd(model_dir), stdout=subprocess.DEVNULL, stderr=log, cwd=REPO)
    start = time.time()
    while proc.poll() is None:
        if trigger is not None and trigger():
            writing = _writing(model_dir)
            proc.kill()  # SIGKILL: no handler, no cleanup
            proc.wait()
            return {"at_step": _last_step(model_dir), "during_checkpoint_write": bool(writing)}
        if time.time() - start > timeout:
            proc.kill()
            pytest.fail("training did not finish")
        time.sleep(0.001)
    assert proc.returncode == 0, f"training exited with {proc.returncode}"
    return None


@pytest.mark.slow
def test_five_kills_resume_with_bit_identical_losses(tmp_path):
    with open(tmp_path / "stderr.log", "w") as log:
        _trial(tmp_path, log)


def _trial(tmp_path, log):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert _run(straight, log) is None

    kills = []

    def after_step(target):
        return lambda: _last_step(killed) >= target

    def during_write(after):
        return lambda: any(s > after for s in _writing(killed))

    plan = [after_step(7), during_write(10), after_step(23), during_write(25), after_step(33)]
    for trigger in plan:
        hit = _run(killed, log, trigger)
        assert hit is not None, "the run finished before it could be killed"
        kills.append(hit)
    assert _run(killed, log) is None  # the sixth start runs to the end

    ref = {r["step"]: r["last_loss"] for r in _records(straight)}
    got = _records(killed)
    assert [r["step"] for r in got] == list(range(1, STEPS + 1))  # one record per step
    assert {r["step"]: r["last_loss"] for r in got} == ref  # bit-identical
    steps = sorted(int(p.name) for p in (killed / "checkpoints").iterdir() if p.name.isdigit())
    assert steps and steps[-1] == STEPS
    print(f"\nkill -9 trial: {json.dumps(kills)}")
    assert sum(k["during_checkpoint_write"] for k in kills) >= 1, kills

"""The progress line's rate and ETA: validation time is left out of the training rate and
the validations still due are added to the ETA (`MetricsLog`, `Validation.due_after`)."""

import json
import types

import pytest

from jaxrec.training import loop as tl
from jaxrec.training import selection
from jaxrec.training.selection import Validation

STEP_S, EVAL_S = 1.0, 30.0


class _Clock:
    """A clock the test advances: each training step costs STEP_S, each validation EVAL_S."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = _Clock()
    fake = types.SimpleNamespace(time=c, perf_counter=c)
    monkeypatch.setattr(tl, "time", fake)
    monkeypatch.setattr(selection, "time", fake)
    return c


def _run(
    tmp_path,
    clock,
    train_steps,
    log_every,
    eval_every,
    after_scale=None,
    first_s=EVAL_S,
    compiles=False,
):
    calls = []

    def evaluate(params):
        clock.now += first_s if not calls else EVAL_S  # the first may compile the search
        calls.append(1)
        return {"recall@10": 0.1, "ndcg@10": 0.05}

    log_hook = tl.MetricsLog(str(tmp_path), every=log_every)
    validation = Validation(evaluate, every=eval_every)
    hooks = [log_hook, validation]
    if after_scale is not None:
        hooks.append(selection.AfterTraining(validation, after_scale, compiles))
    loop = types.SimpleNamespace(
        step=0, train_steps=train_steps, stop_reason=None, hooks=hooks,
        state=types.SimpleNamespace(params=None), elapsed=lambda: clock.now,
        request_save=lambda: None,
    )  # fmt: skip
    for h in loop.hooks:
        h.begin(loop)
    for step in range(1, train_steps + 1):
        clock.now += STEP_S
        metrics = {"loss": 1.0, "learning_rate": 1e-3, "tokens": 10.0}
        for h in loop.hooks:
            h.after_step(loop, step, metrics)
    lines = (tmp_path / "train_metrics.jsonl").read_text().splitlines()
    return [json.loads(ln) for ln in lines]


def test_rate_leaves_out_validation_and_eta_counts_the_validations_due(tmp_path, clock, capsys):
    records = _run(tmp_path, clock, train_steps=10, log_every=5, eval_every=4)
    # Each window of five steps held one validation (steps 4 and 8): training alone is 1 step/s.
    assert [r["step"] for r in records] == [5, 10]
    assert [r["steps_per_sec"] for r in records] == pytest.approx([1.0, 1.0])
    assert [r["tokens_per_sec"] for r in records] == pytest.approx([10.0, 10.0])
    out = capsys.readouterr().out.splitlines()
    # At step 5: five steps (5 s) and the validations at 8 and 10 (60 s) remain.
    assert out[0].endswith("| 1.00 steps/s 10 tok/s | ETA 1m05s")
    # At step 10 (logged before the final validation runs): that validation remains.
    assert out[1].endswith("| 1.00 steps/s 10 tok/s | ETA 0m30s")


def test_eta_adds_the_work_after_training_scaled_from_the_validations(tmp_path, clock, capsys):
    # A final choice and test worth 2.5 validations (e.g. four times the users at the same
    # beams, and no choice again): 75 s at 30 s per validation, from the first one on.
    _run(tmp_path, clock, train_steps=10, log_every=3, eval_every=4, after_scale=2.5)
    out = capsys.readouterr().out.splitlines()
    etas = [ln.rsplit("ETA ", 1)[1] for ln in out]
    # Step 3: nothing measured yet (the validations and the test are still unknown): 7 s.
    # Step 6: 4 steps + validations at 8 and 10 (60 s) + 75 s. Step 9: 1 + 30 + 75.
    # Step 10 (logged before the final validation): 30 + 75.
    assert etas == ["0m07s", "2m19s", "1m46s", "1m45s"]


@pytest.mark.parametrize("compiles", [False, True])
def test_after_training_costs_the_latest_validation_once_one_ran_without_compiling(
    tmp_path, clock, capsys, compiles
):
    # The first validation takes 60 s (30 of them compiling), the next 30 s: once two have run,
    # the work after training is costed at the latest one's 30 s, not at their mean of 45 s,
    # plus the 30 s of one compilation when its beams differ from the validations'.
    _run(tmp_path, clock, train_steps=10, log_every=3, eval_every=4, after_scale=2.5, first_s=60,
         compiles=compiles)  # fmt: skip
    etas = [ln.rsplit("ETA ", 1)[1] for ln in capsys.readouterr().out.splitlines()]
    # Step 6: 4 steps + 2 validations due at the mean 60 s + 2.5 x 60. Step 9: 1 + 45 + 75
    # (+ 30). Step 10: 45 + 75 (+ 30).
    if compiles:
        assert etas == ["0m07s", "4m34s", "2m31s", "2m30s"]
    else:
        assert etas == ["0m07s", "4m34s", "2m01s", "2m00s"]


def test_without_validation_the_eta_is_the_steps_left(tmp_path, clock, capsys):
    log_hook = tl.MetricsLog(str(tmp_path), every=2)
    loop = types.SimpleNamespace(step=0, train_steps=6, stop_reason=None, hooks=[log_hook])
    log_hook.begin(loop)
    for step in range(1, 5):
        clock.now += 2 * STEP_S
        log_hook.after_step(loop, step, {"loss": 1.0, "learning_rate": 1e-3, "tokens": 4.0})
    out = capsys.readouterr().out.splitlines()
    assert [ln.rsplit("ETA ", 1)[1] for ln in out] == ["0m08s", "0m04s"]


@pytest.mark.parametrize(
    "next_at, last_step, step, train_steps, every, due",
    [
        (4, None, 1, 10, 4, 3),  # 4, 8 and the final 10
        (4, None, 4, 10, 4, 3),  # the one at 4 has not run yet
        (8, 4, 4, 10, 4, 2),  # it has: 8 and 10
        (8, 4, 5, 8, 4, 1),  # 8 is the last step: counted once
        (12, 8, 9, 10, 4, 1),  # only the final one
        (14, 10, 10, 10, 4, 0),  # the final one ran
        (10, None, 10, 10, 4, 1),  # the final one is due now
    ],
)
def test_due_after_counts_each_evaluation_once(next_at, last_step, step, train_steps, every, due):
    v = Validation(lambda p: {}, every=every)
    v.next_at, v.last_step = next_at, last_step
    assert v.due_after(step, train_steps) == due


def test_mean_seconds_is_zero_before_the_first_evaluation_then_the_mean():
    v = Validation(lambda p: {}, every=4)
    assert v.mean_seconds() == 0.0
    v.curve, v.seconds = [{}, {}], 50.0
    assert v.mean_seconds() == 25.0

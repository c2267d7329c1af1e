"""`selection.WallClockBudget`: the first plan after the calibration steps, and the refusal of a
budget that what ran before training already used up."""

import pytest

from jaxrec.training.selection import BudgetTooShortError, WallClockBudget


class _Loop:
    """What the hook reads and sets on `TrainLoop`: the run's clock, its hooks, its plan."""

    def __init__(self, elapsed_s: float):
        self.elapsed_s, self.train_steps, self.schedule, self.step = elapsed_s, 10**7, None, 0

    def elapsed(self) -> float:
        return self.elapsed_s

    def hook(self, kind):
        return None


def _calibrate(budget: WallClockBudget, loop: _Loop) -> None:
    budget.begin(loop)
    for step in range(1, budget.calibration_steps + 2):  # the first step compiles
        budget.after_step(loop, step, {})


def test_the_first_plan_fills_the_budget_and_sets_the_schedule():
    made = []
    budget = WallClockBudget(600.0, eval_s=0.0, test_s=30.0, eval_every_s=60.0,
                             make_schedule=lambda n: made.append(n) or n)  # fmt: skip
    loop = _Loop(elapsed_s=20.0)
    _calibrate(budget, loop)
    assert budget.plan is not None and budget.plan["elapsed_at_plan"] == 20.0
    assert loop.train_steps == budget.plan["train_steps"] > budget.calibration_steps + 1
    assert made == [loop.train_steps] and loop.schedule == loop.train_steps


def test_a_budget_used_up_before_training_is_refused():
    budget = WallClockBudget(60.0, eval_s=0.0, test_s=0.0, eval_every_s=60.0,
                             make_schedule=lambda n: n)  # fmt: skip
    loop = _Loop(elapsed_s=58.0)  # the index and the compilation took 58 s of 60
    with pytest.raises(BudgetTooShortError, match="too short"):
        _calibrate(budget, loop)
    assert loop.train_steps == 10**7  # no plan applied

"""Model selection hooks of the training loop: periodic validation with keep-best, and the
wall-clock budget that plans (and re-plans) how many steps fit.

`Validation` evaluates the current parameters every `every` steps and at the last step,
records the learning curve and the per-step training losses, and keeps the best step (by
Recall@10, then NDCG@10): it asks for a checkpoint there and protects it from pruning, so
the selected model is always on disk. `WallClockBudget` measures the step time over the first
steps, plans training plus validation to fill the budget (test evaluation and a margin set
aside), and re-plans after every validation from the measured rates; the cosine then
continues from the current rate to the new end (`PlannedCosine.replanned`). Without a budget
the plan is fixed (`--steps` / epochs) and a resumed run repeats the uninterrupted one
exactly.
"""

from __future__ import annotations

import logging
import numbers
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from jaxrec.training.loop import Hook, TrainLoop

log = logging.getLogger(__name__)

# Re-plan the schedule when the steps that fit the rest of the budget differ from the plan by
# more than this fraction.
REPLAN_TOLERANCE = 0.03


def plan_steps(
    available_s: float, step_s: float, eval_s: float, eval_every_s: float
) -> tuple[int, int]:
    """(train steps, evaluations) that fill `available_s`: training time t plus one
    evaluation every `eval_every_s` of training (and one at the end)."""
    train_s = (available_s - eval_s) / (1.0 + eval_s / eval_every_s)
    steps = max(int(train_s / step_s), 1)
    evals = max(int(steps * step_s / eval_every_s), 0) + 1
    return steps, evals


def describe(metrics: dict[str, Any], keys: Sequence[str]) -> str:
    """One log line's text of validation `metrics`: the selection `keys`, then the same keys
    of every part that reports them (a hybrid's `generative` and `dense` rankings) and its
    `fusion_weight`, so a run shows what each part contributes while it trains."""
    text = " ".join(f"{k} {float(metrics[k]):.4f}" for k in keys)
    parts = [
        f"{name} " + " ".join(f"{float(sub[k]):.4f}" for k in keys)
        for name, sub in metrics.items()
        if isinstance(sub, dict) and all(isinstance(sub.get(k), numbers.Real) for k in keys)
    ]  # fmt: skip
    if isinstance(metrics.get("fusion_weight"), numbers.Real):
        parts.append(f"weight {metrics['fusion_weight']:g}")
    return f"{text} ({'; '.join(parts)})" if parts else text


class Validation(Hook):
    """Validation every `every` steps (and at the last planned step), keep-best.

    Args:
      evaluate: `params -> metrics` (must contain every name in `keys`).
      every: steps between evaluations (a budget hook may change it while the run goes).
      steps_per_epoch: to report epochs on the curve.
      keys: the selection order (higher is better, compared as a tuple).
      save_every: ask for a checkpoint at every evaluation (resume points on the curve), not
        only at a new best.
    """

    name = "validation"

    def __init__(
        self,
        evaluate: Callable[[Any], dict[str, float]],
        every: int,
        steps_per_epoch: int = 1,
        keys: Sequence[str] = ("recall@10", "ndcg@10"),
        save_every: bool = False,
    ):
        self.evaluate = evaluate
        self.every = max(int(every), 1)
        self.next_at = self.every
        self.steps_per_epoch = max(int(steps_per_epoch), 1)
        self.keys = tuple(keys)
        self.save_every = save_every
        self.curve: list[dict] = []
        self.best: dict[str, Any] | None = None
        self.losses: list[tuple[int, float]] = []
        self.last_step: int | None = None  # step of the latest evaluation
        self.last_seconds = 0.0
        self.evaluated_here = 0  # evaluations of this process (its first one compiles)
        self.first_seconds_here = 0.0
        self.seconds = 0.0  # all evaluations of the run

    def state_dict(self):
        return {"every": self.every, "next_at": self.next_at, "curve": self.curve,
                "best": self.best, "losses": self.losses,
                "seconds": round(self.seconds, 3)}  # fmt: skip

    def load_state_dict(self, s):
        self.every, self.next_at = int(s["every"]), int(s["next_at"])
        self.curve, self.best = list(s["curve"]), s["best"]
        self.losses = [(int(i), float(x)) for i, x in s["losses"]]
        self.seconds = float(s.get("seconds", 0.0))

    def protected_steps(self):
        return [self.best["step"]] if self.best else []

    def seconds_spent(self):
        return self.seconds

    def seconds_ahead(self, loop, step):
        return self.due_after(step, loop.train_steps) * self.mean_seconds()

    def due_after(self, step: int, train_steps: int) -> int:
        """Evaluations still due after step `step` (the one at `step` itself included if it
        has not run yet), the final one at `train_steps` counted once."""
        if step >= train_steps and self.last_step == step:
            return 0
        start = self.next_at if self.last_step == step else max(self.next_at, step)
        return len(range(start, train_steps, self.every)) + 1

    def mean_seconds(self) -> float:
        """Mean seconds of this run's evaluations so far (0 before the first)."""
        return self.seconds / len(self.curve) if self.curve else 0.0

    def begin(self, loop):
        last = self.curve[-1]["step"] if self.curve else 0  # losses since the last point
        self._window = [x for i, x in self.losses if i > last]

    def after_step(self, loop: TrainLoop, step: int, metrics: dict[str, float]):
        self.losses.append((step, round(metrics["loss"], 5)))
        self._window.append(self.losses[-1][1])  # as saved: a resumed window is the same
        if step < self.next_at and step < loop.train_steps:
            return
        t = time.perf_counter()
        m = self.evaluate(loop.state.params)
        self.last_seconds = time.perf_counter() - t
        self.evaluated_here += 1
        if self.evaluated_here == 1:
            self.first_seconds_here = self.last_seconds
        self.seconds += self.last_seconds
        self.last_step = step
        point = {"step": step, "minutes": round(loop.elapsed() / 60, 2),
                 "epoch": round(step / self.steps_per_epoch, 2),
                 "loss": round(float(np.mean(self._window)), 4), **m}  # fmt: skip
        self._window = []
        self.curve.append(point)
        log.info("step %d/%d (epoch %.1f) loss %.4f | validation %s | %.1f min", step,
                 loop.train_steps, point["epoch"], point["loss"], describe(m, self.keys),
                 point["minutes"])  # fmt: skip
        if self.best is None or self._key(m) > self._key(self.best):
            self.best = {**m, "step": step}
            loop.request_save()
        if self.save_every:
            loop.request_save()
        self.next_at = step + self.every

    def _key(self, m: dict) -> tuple:
        return tuple(float(m[k]) for k in self.keys)


class AfterTraining(Hook):
    """The work a run does after its last step (the final choice and the test), for the ETA.

    It costs about what a validation costs, scaled: `scale` validations' worth (e.g. the
    test's users over the validation users, times its beams over theirs), plus one compilation
    when `compiles` (other beams than the validations'). Once this process has run two
    validations, a validation costs the latest one's time and a compilation what its first one
    took beyond that; before, the run's mean stands for both; before any, nothing.
    """

    name = "after_training"

    def __init__(self, validation: Validation, scale: float, compiles: bool = False):
        self.validation, self.scale, self.compiles = validation, float(scale), compiles

    def seconds_ahead(self, loop, step):
        v = self.validation
        if v.evaluated_here < 2:
            return self.scale * v.mean_seconds()
        compile_s = max(v.first_seconds_here - v.last_seconds, 0.0) if self.compiles else 0.0
        return self.scale * v.last_seconds + compile_s


class WallClockBudget(Hook):
    """Plans the run to end within `budget_s` seconds of `loop.elapsed()`.

    Args:
      budget_s: the whole run's budget (what ran before the loop is in `loop.elapsed()`).
      eval_s: estimated seconds of one validation evaluation (before one was measured).
      test_s: seconds set aside after training (test evaluation, writing results).
      eval_every_s: seconds of training between validations.
      calibration_steps: steps timed (after the first, which compiles) before planning.
      make_schedule: `total_steps -> schedule` for the first plan (later plans continue it).
    """

    name = "budget"

    def __init__(
        self,
        budget_s: float,
        eval_s: float,
        test_s: float,
        eval_every_s: float,
        make_schedule: Callable[[int], Any],
        calibration_steps: int = 5,
        min_steps: int = 10,
    ):
        self.budget_s = float(budget_s)
        self.eval_s = float(eval_s)
        self.test_s = float(test_s)
        self.eval_every_s = float(eval_every_s)
        self.make_schedule = make_schedule
        self.calibration_steps = int(calibration_steps)
        self.min_steps = int(min_steps)
        self.plan: dict[str, Any] | None = None
        self.replans: list[dict] = []

    def state_dict(self):
        return {"plan": self.plan, "replans": self.replans}

    def load_state_dict(self, s):
        self.plan, self.replans = s["plan"], list(s["replans"])

    def begin(self, loop):
        self._first_step: int | None = None
        self._t_first = 0.0
        self._seg = (time.perf_counter(), loop.step)

    def after_step(self, loop: TrainLoop, step: int, metrics):
        validation = loop.hook(Validation)
        if self.plan is None:
            if self._first_step is None:  # the first step of this process compiled
                self._first_step, self._t_first = step, time.perf_counter()
            elif step - self._first_step >= self.calibration_steps:
                step_s = (time.perf_counter() - self._t_first) / (step - self._first_step)
                self._first_plan(loop, step, step_s, validation)
            return
        if validation is None or validation.last_step != step:
            return
        seg_t, seg_step = self._seg
        # The interval's training time: everything since the last plan but this evaluation.
        seg_s = time.perf_counter() - seg_t - validation.last_seconds
        self._replan(loop, step, seg_s / max(step - seg_step, 1), validation)
        self._seg = (time.perf_counter(), step)

    def _available(self, loop: TrainLoop, margin: float) -> float:
        return self.budget_s - loop.elapsed() - self.test_s - margin

    def _first_plan(self, loop, step, step_s, validation):
        margin = min(50.0, 0.1 * self.budget_s)  # stragglers, final writes
        available = self._available(loop, margin)
        left, evals = plan_steps(available, step_s, self.eval_s, self.eval_every_s)
        total = step + left
        every = max(total // evals, 1)
        self.plan = {"step_seconds": round(step_s, 4), "train_steps": total,
                     "eval_every_steps": every, "validation_evaluations": evals,
                     "test_seconds_estimate": round(self.test_s, 1),
                     "elapsed_at_plan": round(loop.elapsed(), 1)}  # fmt: skip
        log.info("plan: %s", self.plan)
        if available <= 0 or left < self.min_steps:
            raise BudgetTooShortError(
                f"the budget of {self.budget_s / 60:g} minutes is too short: "
                f"{loop.elapsed():.0f} s used before training, test evaluation needs about "
                f"{self.test_s:.0f} s, a step {step_s:.2f} s"
            )
        loop.train_steps = total
        loop.schedule = self.make_schedule(total)
        if validation is not None:
            validation.every = every
            validation.next_at = min(step + every, total)
        self._seg = (time.perf_counter(), step)

    def _replan(self, loop, step, step_s, validation):
        eval_s = validation.last_seconds
        remaining = self._available(loop, min(20.0, 0.05 * self.budget_s))
        left, evals = plan_steps(remaining, step_s, eval_s, self.eval_every_s)
        if remaining <= eval_s or left < self.min_steps:
            if step < loop.train_steps:
                log.warning("stopping at step %d: the budget leaves no room for more "
                            "training", step)  # fmt: skip
                loop.stop("budget")
            return
        every = max(left // evals, 1)
        planned = loop.train_steps
        if step < planned and abs(step + left - planned) > REPLAN_TOLERANCE * planned:
            lr = loop.learning_rate(step)
            loop.train_steps = step + left
            loop.schedule = loop.schedule.replanned(step, loop.train_steps)
            self.replans.append({"at_step": step, "train_steps": loop.train_steps,
                                 "step_seconds": round(step_s, 4),
                                 "learning_rate": lr})  # fmt: skip
            log.info("re-planned: %d steps in all (%.3f s/step measured; learning rate "
                     "%.2e decays from here)", loop.train_steps, step_s, lr)  # fmt: skip
        validation.every = every
        validation.next_at = min(step + every, loop.train_steps)


class BudgetTooShortError(ValueError):
    """The wall-clock budget cannot hold the run."""

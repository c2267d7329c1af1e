"""The one training loop: steps, with every other concern a hook.

`TrainLoop.run` feeds batches to a jitted step `(state, batch, learning_rate) -> (state,
metrics)` (`jaxrec.training.step.make_train_step`), computing the learning rate on the host from
`loop.schedule`, and calls each hook after every step with the step's metrics as floats.
Hooks read and change the loop: `train_steps` and `schedule` may be re-planned while it runs
(the step is not recompiled: the rate is data), `request_save()` asks for a checkpoint at
this step, `stop(reason)` ends the run after it.

Used by `python -m jaxrec.train`, `jaxrec reproduce` and `jaxrec demo`; the hooks here are
the ones every run has (metrics log, non-finite stop, preemption, checkpoints); validation
with keep-best and the wall-clock budget are in `jaxrec.training.selection`.

Checkpoints (`Checkpoints`, in MODEL_DIR/checkpoints: `jaxrec.model_dir.checkpoint_manager`)
hold the train state under orbax's `default` item and the loop's own bookkeeping
(`train_steps`, the schedule, each hook's `state_dict()`) as JSON under `loop`, written
together, so a run restored from step S continues exactly as the uninterrupted one did after S.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxrec import partitioning
from jaxrec.training import metrics_log

log = logging.getLogger(__name__)

Batch = dict[str, Any]


class NonFiniteLossError(FloatingPointError):
    """Training produced NaN/Inf; the last good checkpoint is kept (a FloatingPointError, so
    every `jaxrec` command reports it as one line, as it does a diverged baseline)."""


class Hook:
    """A concern of the loop. `name` keys its `state_dict()` in the checkpoint."""

    name = "hook"

    def begin(self, loop: TrainLoop) -> None:
        """Before the first step of this process (after any restore)."""

    def after_step(self, loop: TrainLoop, step: int, metrics: dict[str, float]) -> None:
        """After step `step` (1-based: `step` updates done), metrics as python floats."""

    def end(self, loop: TrainLoop) -> None:
        """After the last step of this process, also when it stopped early or raised."""

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state saved with each checkpoint."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned at the checkpoint's step."""

    def seconds_spent(self) -> float:
        """Wall-clock seconds this hook has spent outside the training steps (e.g. validation),
        a running total: the progress line leaves them out of the training rate."""
        return 0.0

    def seconds_ahead(self, loop: TrainLoop, step: int) -> float:
        """Estimated wall-clock seconds this hook will still spend after `step`, until the last
        planned step (e.g. the validations still due) or after it (the run's final choice and
        test, `selection.AfterTraining`): the progress line adds them to its ETA."""
        return 0.0


class TrainLoop:
    """Runs steps from the state's step to `train_steps` (see the module docstring).

    Args:
      state: a `jaxrec.training.step.TrainState` (or `None` when `Checkpoints.restore_or_init` is
        used to build it).
      step_fn: the jitted step.
      batches: `start_step -> iterator` of host numpy batches, deterministic in the step, so
        that a resumed run continues the same data order.
      schedule: `step -> learning rate` for the update after `step` updates; re-plannable
        schedules (`jaxrec.training.schedule.PlannedCosine`) are saved with checkpoints.
      train_steps: the planned number of updates (hooks may change it).
      mesh, rules: the device mesh and logical axis rules the step runs under.
      hooks: called in order after every step.
    """

    def __init__(
        self,
        state: Any,
        step_fn: Callable,
        batches: Callable[[int], Iterator[Batch]],
        schedule: Callable[[int], Any],
        train_steps: int,
        mesh: Any,
        rules: partitioning.LogicalRules,
        hooks: Sequence[Hook] = (),
    ):
        self.state = state
        self.step_fn = step_fn
        self.batches = batches
        self.schedule = schedule
        self.train_steps = int(train_steps)
        self.mesh = mesh
        self.rules = rules
        self.hooks = list(hooks)
        self.stop_reason: str | None = None
        self.save_requested = False
        self.elapsed_before = 0.0  # wall-clock seconds of earlier processes of this run
        self._t0 = time.perf_counter()
        self.steps_this_process = 0

    # -- what hooks use ----------------------------------------------------------------------
    @property
    def step(self) -> int:
        return int(jax.device_get(self.state.step))

    def elapsed(self) -> float:
        """Wall-clock seconds of the run so far, earlier (resumed-from) processes included."""
        return self.elapsed_before + time.perf_counter() - self._t0

    def start_clock(self, seconds_before: float = 0.0) -> None:
        """Count `seconds_before` (this process's work before the loop, e.g. building an index)
        into the run's wall clock and measure from now on: time between the loop's creation
        (or restore) and now is then counted once, not twice."""
        self.elapsed_before += seconds_before
        self._t0 = time.perf_counter()

    def request_save(self) -> None:
        self.save_requested = True

    def stop(self, reason: str) -> None:
        self.stop_reason = self.stop_reason or reason

    def hook(self, kind: type) -> Any:
        """The first hook of class `kind`, or None."""
        return next((h for h in self.hooks if isinstance(h, kind)), None)

    def learning_rate(self, step: int) -> float:
        return float(self.schedule(step))

    def state_dict(self) -> dict[str, Any]:
        out = {"train_steps": self.train_steps, "elapsed_seconds": round(self.elapsed(), 3)}
        if hasattr(self.schedule, "to_dict"):
            out["schedule"] = self.schedule.to_dict()
        out["hooks"] = {h.name: h.state_dict() for h in self.hooks}
        return out

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.train_steps = int(saved["train_steps"])
        self.elapsed_before = float(saved.get("elapsed_seconds", 0.0))
        self._t0 = time.perf_counter()
        if "schedule" in saved and hasattr(self.schedule, "from_dict"):
            self.schedule = type(self.schedule).from_dict(saved["schedule"])
        for h in self.hooks:
            if h.name in saved.get("hooks", {}):
                h.load_state_dict(saved["hooks"][h.name])

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> str:
        """Train until `train_steps` or a hook's `stop`; returns "done" or the stop reason."""
        start = self.step
        if start >= self.train_steps:
            log.info("already at step %d >= train_steps %d", start, self.train_steps)
        iterator = self.batches(start)
        for h in self.hooks:
            h.begin(self)
        try:
            with partitioning.mesh_context(self.mesh, self.rules):
                step = start
                while step < self.train_steps and self.stop_reason is None:
                    host_batch = next(iterator)
                    lr = np.asarray(self.learning_rate(step), np.float32)
                    batch = partitioning.shard_batch(host_batch, self.mesh)
                    self.state, metrics = self.step_fn(self.state, batch, lr)
                    # Waited for each step: steps left in flight together can deadlock in
                    # XLA:CPU's cross-device reductions (forced host devices).
                    metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
                    step += 1
                    self.steps_this_process += 1
                    metrics["tokens"] = float(_tokens(host_batch) * jax.process_count())
                    for h in self.hooks:
                        h.after_step(self, step, metrics)
        finally:
            for h in self.hooks:
                h.end(self)
        return self.stop_reason or "done"


def _tokens(batch: Batch) -> int:
    return sum(
        int(np.sum(batch[k] > 0))
        for k in ("encoder_input_tokens", "decoder_target_tokens")
        if k in batch
    )


class NonFiniteStop(Hook):
    """Stops with `NonFiniteLossError` on NaN/Inf loss, gradients or parameters; nothing past
    the last good state is saved (it runs before `Checkpoints`)."""

    name = "non_finite"

    def after_step(self, loop, step, metrics):
        keys = ("loss", "grad_norm", "param_norm")
        bad = [k for k in keys if k in metrics and not np.isfinite(metrics[k])]
        if not bad:
            return
        ckpt = loop.hook(Checkpoints)
        where = ""
        if ckpt is not None:
            ckpt.manager.wait_until_finished()
            where = (f" Last good checkpoint: step {ckpt.manager.latest_step()} in "
                     f"{ckpt.manager.directory}.")  # fmt: skip
        raise NonFiniteLossError(
            f"non-finite {', '.join(bad)} at step {step} (loss={metrics['loss']}, "
            f"grad_norm={metrics.get('grad_norm')}); training stopped.{where} Lower the "
            "learning rate or check the data; a restart resumes from that checkpoint."
        )


class Preemption(Hook):
    """On SIGTERM (what spot and preemptible TPU VMs receive before they are reclaimed) the
    loop saves a checkpoint after the current step and stops with reason "preempted"; the
    same command then resumes from it."""

    name = "preemption"

    def __init__(self, signals: Sequence[int] = (signal.SIGTERM,)):
        self.signals = tuple(signals)
        self._received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handler(self, signum, frame):
        self._received = signum

    def begin(self, loop):
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for s in self.signals:
            self._previous[s] = signal.signal(s, self._handler)

    def after_step(self, loop, step, metrics):
        if self._received is not None:
            log.warning("signal %d received: saving a checkpoint at step %d and stopping",
                        self._received, step)  # fmt: skip
            loop.request_save()
            loop.stop("preempted")

    def end(self, loop):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()


class MetricsLog(Hook):
    """Every `every` steps (and the last): a progress line (loss, rate, ETA), a record in
    MODEL_DIR/train_metrics.jsonl (local dirs) and scalars to a clu writer (TensorBoard).

    The rates count training only: time other hooks spent inside the window (validation,
    `Hook.seconds_spent`) is left out. The ETA is the steps left at that rate plus what the
    hooks still plan (`Hook.seconds_ahead`: the validations still due and, in `jaxrec
    reproduce`, the final choice and test after the last step), so a run that validates every
    few epochs is not promised to end early."""

    name = "metrics_log"

    def __init__(self, model_dir: str | None, every: int = 100, writer: Any = None):
        self.every = max(int(every), 1)
        self.writer = writer
        local = model_dir is not None and "://" not in model_dir
        self.path = os.path.join(model_dir, "train_metrics.jsonl") if local else None
        self._window: list[dict] = []

    def begin(self, loop):
        if self.path and jax.process_index() == 0:
            metrics_log.prepare_for_resume(self.path, loop.step)  # later steps are redone
        self._t = time.time()
        self._spent = _hooks_spent(loop)
        self._window = []

    def after_step(self, loop, step, metrics):
        self._window.append(metrics)
        if step % self.every and step != loop.train_steps and loop.stop_reason is None:
            return
        now, spent = time.time(), _hooks_spent(loop)
        w = self._window
        seconds = max(now - self._t - (spent - self._spent), 1e-9)  # training only
        rate = len(w) / seconds
        summary = {
            k: float(np.mean([m[k] for m in w]))
            for k in ("loss", "accuracy", "z_loss", "next_item_loss")
            if k in metrics
        }
        summary.update(learning_rate=metrics["learning_rate"], steps_per_sec=rate,
                       tokens_per_sec=sum(m["tokens"] for m in w) / seconds)  # fmt: skip
        if "grad_norm" in metrics:
            summary["grad_norm"] = metrics["grad_norm"]
        ahead = [h.seconds_ahead(loop, step) for h in loop.hooks]
        eta = eta_seconds(loop.train_steps - step, rate, ahead)
        if jax.process_index() == 0:
            total = loop.train_steps
            acc = f" acc {summary['accuracy']:.3f}" if "accuracy" in summary else ""
            print(f"step {step}/{total} ({100 * step / max(total, 1):.1f}%) loss "
                  f"{summary['loss']:.4f}{acc} lr {summary['learning_rate']:.2e} | "
                  f"{rate:.2f} steps/s {summary['tokens_per_sec']:.0f} tok/s | ETA "
                  f"{format_eta(eta)}", flush=True)  # fmt: skip
            if self.path:
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"step": step, "last_loss": metrics["loss"], **summary}))
                    f.write("\n")
        if self.writer is not None:
            self.writer.write_scalars(step, summary)
        self._t, self._spent, self._window = now, spent, []

    def end(self, loop):
        if self.writer is not None:
            self.writer.flush()


def _hooks_spent(loop: TrainLoop) -> float:
    return sum(h.seconds_spent() for h in loop.hooks)


def eta_seconds(steps_left: int, steps_per_sec: float, ahead_s: Sequence[float] = ()) -> float:
    """Seconds until the run's last planned step: the training steps left at the measured
    rate plus the hooks' planned work (`Hook.seconds_ahead`)."""
    return max(steps_left, 0) / max(steps_per_sec, 1e-9) + sum(max(a, 0.0) for a in ahead_s)


def format_eta(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class Checkpoints(Hook):
    """Saves the train state and the loop's bookkeeping every `every` steps, at the last step
    and whenever a hook asks (`loop.request_save()`: the best validation step, preemption);
    keeps the newest `keep` plus the steps hooks protect (`protected_steps()`, e.g. the
    selected model). Runs last among the hooks, so the bookkeeping saved is that of the
    step."""

    name = "checkpoints"

    def __init__(self, manager: ocp.CheckpointManager, every: int = 1000, keep: int = 3):
        self.manager = manager
        self.every = max(int(every), 1)
        self.keep = max(int(keep), 1)

    def restore_or_init(
        self, loop: TrainLoop, abstract_state: Any, fresh: Callable[[], Any]
    ) -> bool:
        """Sets `loop.state` from the latest checkpoint (and the loop's bookkeeping from its
        `loop` item) and returns True; else `fresh()` and False."""
        step = self.manager.latest_step()
        if step is None:
            loop.state = fresh()
            return False
        log.info("resuming from checkpoint at step %d in %s", step, self.manager.directory)
        names = _item_names(self.manager, step)
        args = {"default": ocp.args.StandardRestore(abstract_state)}
        if "loop" in names:
            args["loop"] = ocp.args.JsonRestore()
        restored = self.manager.restore(step, args=ocp.args.Composite(**args))
        loop.state = restored["default"]
        if "loop" in names:
            loop.load_state_dict(restored["loop"])
        return True

    def after_step(self, loop, step, metrics):
        due = step % self.every == 0 or step >= loop.train_steps or loop.save_requested
        if not due:
            return
        self.save(loop, step)
        loop.save_requested = False

    def save(self, loop: TrainLoop, step: int) -> None:
        if step in self.manager.all_steps():
            return
        self.manager.save(
            step,
            args=ocp.args.Composite(
                default=ocp.args.StandardSave(loop.state),
                loop=ocp.args.JsonSave(loop.state_dict()),
            ),
            force=True,
        )
        self._prune(loop, step)

    def _prune(self, loop: TrainLoop, newest: int) -> None:
        protected = {newest}
        for h in loop.hooks:
            protected |= set(getattr(h, "protected_steps", lambda: ())())
        steps = sorted(s for s in self.manager.all_steps() if s != newest)
        keep = set(steps[-(self.keep - 1) :]) if self.keep > 1 else set()
        for s in steps:
            if s not in keep and s not in protected:
                self.manager.delete(s)

    def end(self, loop):
        self.manager.wait_until_finished()


def _item_names(manager: ocp.CheckpointManager, step: int) -> set[str]:
    path = os.path.join(str(manager.directory), str(step))
    try:
        return {n for n in os.listdir(path) if not n.startswith((".", "_"))}
    except OSError:  # remote (gs://) directories
        from tensorflow.io import gfile

        return {n.rstrip("/") for n in gfile.listdir(path)}

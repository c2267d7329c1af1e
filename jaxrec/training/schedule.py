"""A learning-rate schedule that can be re-planned mid-run and saved with checkpoints.

`PlannedCosine` is a linear warm-up to `peak` over `warmup` steps, then a cosine decay to
`end` at `total` (optax's `warmup_cosine_decay_schedule`). `replanned(at, total)` keeps the
rate up to `at` and continues from its value there down to `end` at the new total, so the
rate stays continuous and never rises again when a budgeted run gets longer. It is evaluated
on the host (pure python) and fed to the step as data: re-planning recompiles nothing.
"""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class PlannedCosine:
    peak: float
    warmup: int
    total: int  # where the decay ends now
    end: float = 0.0
    base_total: int | None = None  # the first plan's total (None: never re-planned)
    # Re-plans, in order: from step `start` the cosine runs from `value` to `end` at `total`.
    replans: tuple[tuple[int, float, int], ...] = ()

    def __post_init__(self):  # JSON gives lists
        object.__setattr__(self, "replans", tuple((int(a), float(v), int(t))
                                                  for a, v, t in self.replans))  # fmt: skip

    @classmethod
    def for_run(cls, peak: float, warmup_steps: int, total: int, final_fraction: float):
        """Warm-up of `min(warmup_steps, total // 10)` steps, decay to `final_fraction * peak`."""
        total = max(int(total), 1)
        return cls(float(peak), min(int(warmup_steps), total // 10), total,
                   float(peak) * float(final_fraction))  # fmt: skip

    def __call__(self, step) -> float:
        step = float(step)
        for start, value, total in reversed(self.replans):
            if step >= start:
                return self._cosine(step, start, value, total)
        if self.warmup and step < self.warmup:
            return self.peak * step / self.warmup
        first = self.total if self.base_total is None else self.base_total
        return self._cosine(step, self.warmup, self.peak, first)

    def _cosine(self, step: float, start: int, start_value: float, total: int) -> float:
        span = max(total - start, 1)
        frac = min(max((step - start) / span, 0.0), 1.0)
        return self.end + (start_value - self.end) * 0.5 * (1.0 + math.cos(math.pi * frac))

    def replanned(self, at_step: int, total: int) -> PlannedCosine:
        """This schedule up to `at_step`, then a cosine from its value there to `end` at
        `total`."""
        return dataclasses.replace(
            self, total=int(total),
            base_total=self.total if self.base_total is None else self.base_total,
            replans=self.replans + ((int(at_step), float(self(at_step)), int(total)),),
        )  # fmt: skip

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PlannedCosine:
        return cls(**d)

"""Optimizers and learning-rate schedules with t5x's defaults (gin-free; train.py configures).

Adafactor follows t5x's `adafactor.Adafactor` defaults: factored second moments for matrices
whose dims are ≥ 128, decay rate 0.8 with step offset 0, updates scaled by the parameter's RMS,
update clipping at 1.0, no momentum. Schedules follow t5x's `create_learning_rate_scheduler`:
`rsqrt` is t5x's `constant * rsqrt_decay` (flat at base/sqrt(warmup) until `warmup_steps`,
then base/sqrt(step)).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import optax

SCHEDULES = ("constant", "rsqrt", "cosine", "linear_warmup_rsqrt")
OPTIMIZERS = ("adafactor", "adamw", "sgd")


def make_schedule(
    name: str = "constant",
    base_learning_rate: float = 1e-3,
    warmup_steps: int = 0,
    total_steps: int = 0,
    final_fraction: float = 0.0,
) -> optax.Schedule:
    """Learning-rate schedule `step -> lr`.

    Args:
      name: "constant" (t5x finetuning: 1e-3 with Adafactor); "rsqrt" (t5x pretraining:
        `base / sqrt(max(step, warmup_steps))`, base 1.0, warmup 10k gives 0.01 flat for 10k
        steps); "linear_warmup_rsqrt" (linear ramp to base/sqrt(warmup), then rsqrt decay);
        "cosine" (linear warmup to base, cosine decay to `final_fraction * base` at
        `total_steps`).
      base_learning_rate: t5x's `base_learning_rate`.
      warmup_steps: see `name`; 0 means none (rsqrt then uses max(step, 1)).
      total_steps: end of the cosine decay (required for "cosine").
      final_fraction: cosine's final lr as a fraction of the base.
    """
    if name == "constant":
        return optax.constant_schedule(base_learning_rate)
    if name in ("rsqrt", "linear_warmup_rsqrt"):
        warmup = max(int(warmup_steps), 1)

        def rsqrt(step):
            step = jnp.asarray(step, jnp.float32)
            lr = base_learning_rate / jnp.sqrt(jnp.maximum(step, warmup))
            if name == "linear_warmup_rsqrt":
                lr = lr * jnp.minimum(1.0, (step + 1.0) / warmup)
            return lr

        return rsqrt
    if name == "cosine":
        if total_steps <= 0:
            raise ValueError("cosine schedule needs total_steps > 0")
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0 if warmup_steps else base_learning_rate,
            peak_value=base_learning_rate,
            warmup_steps=int(warmup_steps),
            decay_steps=max(int(total_steps), int(warmup_steps) + 1),
            end_value=base_learning_rate * final_fraction,
        )
    raise ValueError(f"unknown schedule {name!r}; expected one of {SCHEDULES}")


def make_optimizer(
    name: str = "adafactor",
    learning_rate: float | optax.Schedule = 1e-3,
    *,
    weight_decay: float = 0.0,
    decay_rate: float = 0.8,
    step_offset: int = 0,
    multiply_by_parameter_scale: bool = True,
    clipping_threshold: float | None = 1.0,
    min_dim_size_to_factor: int = 128,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    max_grad_norm: float | None = None,
) -> optax.GradientTransformation:
    """An optax optimizer by name.

    Args:
      name: "adafactor" (t5x defaults), "adamw" (decoupled weight decay `weight_decay`), "sgd".
      learning_rate: a float or a schedule from `make_schedule`.
      weight_decay: AdamW's decoupled decay; for Adafactor t5x's `weight_decay_rate`
        (0 = off).
      decay_rate, step_offset, multiply_by_parameter_scale, clipping_threshold,
      min_dim_size_to_factor: Adafactor settings (t5x names and defaults).
      b1, b2, eps: AdamW moments.
      max_grad_norm: optional global-norm clipping before the optimizer (not a t5x default).
    """
    if name == "adafactor":
        tx = optax.adafactor(
            learning_rate=learning_rate,
            min_dim_size_to_factor=min_dim_size_to_factor,
            decay_rate=decay_rate,
            decay_offset=step_offset,
            multiply_by_parameter_scale=multiply_by_parameter_scale,
            clipping_threshold=clipping_threshold,
            momentum=None,
            weight_decay_rate=weight_decay or None,
            eps=1e-30,
            factored=True,
        )
    elif name == "adamw":
        tx = optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)
    elif name == "sgd":
        tx = optax.sgd(learning_rate)
    else:
        raise ValueError(f"unknown optimizer {name!r}; expected one of {OPTIMIZERS}")
    if max_grad_norm is not None and math.isfinite(max_grad_norm):
        tx = optax.chain(optax.clip_by_global_norm(max_grad_norm), tx)
    return tx

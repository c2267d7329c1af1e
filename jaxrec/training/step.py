"""Train state, t5x-style loss and the jitted sharded train step (the loop that runs it, with
checkpoints and resume, is `jaxrec.training.loop`).

The step is one optimizer update over a global batch, optionally split into microbatches
(gradients summed in a `lax.scan`, then normalised once, so 1 and N microbatches give the same
update). Dropout randomness is `fold_in(seed, step)` and the data order is a function of
(seed, step) (see `train.py`), so a run restarted from the checkpoint at step N reproduces the
uninterrupted run's losses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxrec import partitioning
from jaxrec.training.loop import NonFiniteLossError  # noqa: F401  (raised by the loop)

Batch = dict[str, Any]


@flax.struct.dataclass
class TrainState:
    """Everything that is checkpointed: step, params (unboxed) and optimizer state."""

    step: jax.Array
    params: Any
    opt_state: Any


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """t5x's loss options.

    Attributes:
      label_smoothing: mass spread uniformly over the other vocab entries (0 = off).
      z_loss: coefficient of log(Z)^2, which keeps the softmax normaliser near 1 (t5x: 1e-4).
      loss_normalizing_factor: "NUM_REAL_TARGET_TOKENS" (divide by the sum of
        `decoder_loss_weights`), "NUM_TOTAL_TARGET_TOKENS" (batch × target length), a number
        (t5x's constant factor, e.g. 233472), or None (sum over tokens).
    """

    label_smoothing: float = 0.0
    z_loss: float = 1e-4
    loss_normalizing_factor: float | str | None = "NUM_REAL_TARGET_TOKENS"


def token_losses(
    logits: jax.Array, targets: jax.Array, label_smoothing: float = 0.0, z_loss: float = 0.0
) -> tuple[jax.Array, jax.Array]:
    """Per-token cross-entropy (with label smoothing) plus z-loss.

    Args:
      logits: [batch, len, vocab].
      targets: [batch, len] int token ids.
      label_smoothing: see `LossConfig`.
      z_loss: see `LossConfig`.

    Returns:
      (loss, z_loss_part), each [batch, len]; `loss` already includes the z-loss part and is
      shifted so a perfect smoothed prediction has loss 0.
    """
    logits = logits.astype(jnp.float32)
    vocab = logits.shape[-1]
    confidence = 1.0 - label_smoothing
    low = label_smoothing / (vocab - 1)
    # Entropy of the smoothed target distribution: the minimum reachable cross-entropy.
    floor = -(confidence * np.log(confidence) + (vocab - 1) * low * np.log(low + 1e-20))
    log_z = jax.nn.logsumexp(logits, axis=-1)  # [batch, len]
    log_probs = logits - log_z[..., None]
    target_logp = jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
    if label_smoothing:
        ce = -(confidence - low) * target_logp - low * jnp.sum(log_probs, axis=-1) - floor
    else:
        ce = -target_logp
    z_part = z_loss * jnp.square(log_z)
    return ce + z_part, z_part


def loss_normalizer(weights: jax.Array, factor: float | str | None) -> jax.Array:
    """The divisor of the summed token loss for one global batch."""
    if factor is None:
        return jnp.asarray(1.0, jnp.float32)
    if isinstance(factor, str):
        if factor.upper() == "NUM_REAL_TARGET_TOKENS":
            return jnp.maximum(jnp.sum(weights.astype(jnp.float32)), 1.0)
        if factor.upper() == "NUM_TOTAL_TARGET_TOKENS":
            return jnp.asarray(float(np.prod(weights.shape)), jnp.float32)
        raise ValueError(f"unknown loss_normalizing_factor {factor!r}")
    return jnp.asarray(float(factor), jnp.float32)


def make_train_step(
    model: Any,
    make_tx: Callable[[Any], optax.GradientTransformation],
    state_shardings: Any,
    mesh: Mesh,
    num_microbatches: int = 1,
    dropout_seed: int = 0,
    enable_dropout: bool = True,
) -> Callable[[TrainState, Batch, Any], tuple[TrainState, dict]]:
    """The jitted train step `(state, batch, learning_rate) -> (state, metrics)`.

    The learning rate is an input (a float32 scalar the loop computes from its schedule), not
    a constant of the compiled step: `make_tx(learning_rate)` builds the optimizer inside the
    trace, so a schedule re-planned mid-run (a wall-clock budget) runs the same executable.
    The optimizer state's structure does not depend on the rate (`make_tx(0.0).init` builds
    it). Inputs and outputs carry explicit shardings (state by its logical rules, batch over
    `data`, metrics replicated) and the incoming state is donated. Trace and call it inside
    `partitioning.mesh_context(mesh, rules)` so activation constraints resolve.
    """

    def step(state: TrainState, batch: Batch, learning_rate):
        tx = make_tx(learning_rate)
        rng = jax.random.fold_in(jax.random.key(dropout_seed), state.step)

        def sums_fn(params, mb, mb_rng):
            return model.loss_sums(params, mb, mb_rng, enable_dropout)

        grad_fn = jax.grad(sums_fn, has_aux=True)
        normalizer = model.normalizer(batch)
        if num_microbatches <= 1:
            grads, sums = grad_fn(state.params, batch, rng)
        else:
            # [batch, ...] -> [micro, batch / micro, ...]; summing grads keeps the update exact.
            micro = jax.tree.map(lambda x: x.reshape((num_microbatches, -1) + x.shape[1:]), batch)

            def body(carry, xs):
                index, mb = xs
                g, s = grad_fn(state.params, mb, jax.random.fold_in(rng, index))
                return jax.tree.map(jnp.add, carry, (g, s)), None

            zero_sums = {k: jnp.zeros((), jnp.float32) for k in model.sum_keys(batch)}
            init = (jax.tree.map(jnp.zeros_like, state.params), zero_sums)
            (grads, sums), _ = jax.lax.scan(body, init, (jnp.arange(num_microbatches), micro))
        grads = jax.tree.map(lambda g: g / normalizer, grads)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {
            **model.metrics(sums, normalizer),
            "learning_rate": jnp.asarray(learning_rate, jnp.float32),
            "grad_norm": optax.global_norm(grads),
            "param_norm": optax.global_norm(params),
        }
        return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

    replicated = NamedSharding(mesh, PartitionSpec())
    return jax.jit(
        step,
        in_shardings=(state_shardings, partitioning.data_sharding(mesh), replicated),
        out_shardings=(state_shardings, replicated),
        donate_argnums=(0,),
    )


def dummy_batch(input_len: int, target_len: int, batch: int, input_levels: int = 0) -> Batch:
    """All-ones int32 model inputs of the given shapes (for init and lowering); with
    `input_levels` the encoder inputs are item-level, `[batch, input_len, input_levels]`."""
    enc = jnp.ones((batch, input_len) + ((input_levels,) if input_levels else ()), jnp.int32)
    dec = jnp.ones((batch, target_len), jnp.int32)
    return {"encoder_input_tokens": enc, "decoder_input_tokens": dec, "decoder_target_tokens": dec}


@dataclasses.dataclass
class StateSetup:
    """How to build the sharded train state: abstract shapes, shardings, and init functions."""

    abstract_state: TrainState  # ShapeDtypeStructs
    shardings: TrainState  # NamedShardings, same structure
    init_fn: Callable[[jax.Array], TrainState]  # rng -> state (call via `init`)
    from_params_fn: Callable[[Any], TrainState]  # params -> fresh state (step 0)

    def init(self, rng: jax.Array) -> TrainState:
        """Random init directly into the sharded layout (no host copy)."""
        return jax.jit(self.init_fn, out_shardings=self.shardings)(rng)

    def from_params(self, params: Any) -> TrainState:
        """Fresh optimizer state around given (e.g. pretrained) params, sharded."""
        params = jax.device_put(params, self.shardings.params)
        return jax.jit(
            self.from_params_fn, in_shardings=(self.shardings.params,), out_shardings=self.shardings
        )(params)

    def place(self, state: TrainState) -> TrainState:
        """An existing state (host or other mesh) moved into this setup's shardings."""
        return jax.device_put(state, self.shardings)

    def abstract_with_shardings(self) -> TrainState:
        return jax.tree.map(
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
            self.abstract_state,
            self.shardings,
        )


def setup_state(
    model: nn.Module,
    tx: optax.GradientTransformation,
    mesh: Mesh,
    rules: partitioning.LogicalRules,
    input_len: int,
    target_len: int,
    input_levels: int = 0,
) -> StateSetup:
    """Derives the train state's abstract shapes and shardings without allocating it.

    Parameter shardings come from the network's logical annotations and `rules`; optimizer
    state shardings are derived from the parameters' (see `partitioning.derived_shardings`).
    """
    example = dummy_batch(input_len, target_len, mesh.shape["data"], input_levels)

    def init_params_boxed(rng):
        return model.init({"params": rng, "dropout": rng}, **example, enable_dropout=False)[
            "params"
        ]

    def from_params_fn(params):
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))

    def init_fn(rng):
        return from_params_fn(nn.unbox(init_params_boxed(rng)))

    key = jax.random.key(0)
    with partitioning.mesh_context(mesh, rules):
        boxed = jax.eval_shape(init_params_boxed, key)
        abstract_state = jax.eval_shape(init_fn, key)
    param_shardings = partitioning.logical_shardings(boxed, mesh, rules)
    replicated = NamedSharding(mesh, PartitionSpec())
    shardings = TrainState(
        step=replicated,
        params=param_shardings,
        opt_state=partitioning.derived_shardings(
            abstract_state.opt_state, abstract_state.params, param_shardings, mesh
        ),
    )
    return StateSetup(abstract_state, shardings, init_fn, from_params_fn)

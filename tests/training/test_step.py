"""Train step: t5x loss maths, optimizers/schedules, mesh + microbatch invariance, NaN guard."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrec import model_dir, partitioning
from jaxrec.models import configs, network
from jaxrec.models.adapters import EncoderDecoderModel
from jaxrec.training import loop, optimizers
from jaxrec.training import step as train_step
from jaxrec.training.schedule import PlannedCosine

INPUT_LEN, TARGET_LEN, BATCH = 16, 8, 8


def _batch(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    enc = rng.integers(3, 200, size=(BATCH, INPUT_LEN)).astype(np.int32)
    enc[:, -3:] = 0  # padding
    tgt = rng.integers(3, 200, size=(BATCH, TARGET_LEN)).astype(np.int32)
    tgt[::2, -2:] = 0
    dec = np.concatenate([np.zeros((BATCH, 1), np.int32), tgt[:, :-1]], axis=1)
    return {
        "encoder_input_tokens": enc,
        "decoder_input_tokens": dec,
        "decoder_target_tokens": tgt,
        "decoder_loss_weights": (tgt > 0).astype(np.float32),
    }


def _tiny_model():
    # One layer each way keeps compiles short; attention, relpos and gated MLP are all present.
    config = configs.get_config("tiny", dropout_rate=0.0, num_encoder_layers=1,
                                num_decoder_layers=1)  # fmt: skip
    return network.Transformer(config)


def _setup(mesh_shape, optimizer="adafactor", schedule=None):
    mesh = partitioning.create_mesh(mesh_shape, devices=jax.devices()[: np.prod(mesh_shape)])
    rules = partitioning.standard_logical_axis_rules()
    schedule = schedule or optimizers.make_schedule("constant", 1e-2)
    # Factor every matrix (the tiny dims are < t5x's 128): an unfactored Adafactor's first
    # update is sign(grad), which flips on float noise where a gradient is ~0.
    kwargs = {"min_dim_size_to_factor": 16} if optimizer == "adafactor" else {}

    def make_tx(learning_rate):
        return optimizers.make_optimizer(optimizer, learning_rate, **kwargs)

    setup = train_step.setup_state(_tiny_model(), make_tx(0.0), mesh, rules, INPUT_LEN, TARGET_LEN)
    return mesh, rules, make_tx, schedule, setup


@functools.cache
def _initial_state():
    """One random init (on one device), reused by every mesh below: same starting params."""
    mesh, rules, _, _, setup = _setup((1, 1))
    with partitioning.mesh_context(mesh, rules):
        return jax.device_get(setup.init(jax.random.key(0)))


@functools.cache
def _two_steps(mesh_shape, num_microbatches=1):
    """Losses of two steps, and params after each, from the shared initial state."""
    mesh, rules, tx, schedule, setup = _setup(mesh_shape)
    step = train_step.make_train_step(
        EncoderDecoderModel(_tiny_model()), tx, setup.shardings, mesh,
        num_microbatches=num_microbatches, enable_dropout=False,
    )  # fmt: skip
    losses, params = [], []
    with partitioning.mesh_context(mesh, rules):
        state = setup.place(_initial_state())
        for i in range(2):
            lr = np.float32(schedule(i))
            state, metrics = step(state, partitioning.shard_batch(_batch(i), mesh), lr)
            losses.append(float(metrics["loss"]))
            params.append(jax.device_get(state.params))
    return losses, params, jax.tree.map(lambda x: x.sharding, state.params)


def test_token_losses_match_reference():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 7)).astype(np.float32)
    targets = rng.integers(0, 7, size=(2, 3))
    log_z = np.log(np.exp(logits).sum(-1))
    logp = logits - log_z[..., None]
    smoothing, z = 0.1, 1e-2
    soft = np.full((2, 3, 7), smoothing / 6)
    np.put_along_axis(soft, targets[..., None], 1 - smoothing, axis=-1)
    entropy = -(soft * np.log(soft)).sum(-1)
    expected = -(soft * logp).sum(-1) - entropy + z * log_z**2
    loss, z_part = train_step.token_losses(jnp.asarray(logits), jnp.asarray(targets), smoothing, z)
    np.testing.assert_allclose(loss, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(z_part, z * log_z**2, rtol=1e-5)
    plain, _ = train_step.token_losses(jnp.asarray(logits), jnp.asarray(targets))
    np.testing.assert_allclose(plain, -np.take_along_axis(logp, targets[..., None], -1)[..., 0],
                               rtol=1e-5)  # fmt: skip


def test_loss_normalizer_modes():
    w = jnp.asarray([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert float(train_step.loss_normalizer(w, "NUM_REAL_TARGET_TOKENS")) == 3.0
    assert float(train_step.loss_normalizer(w, "NUM_TOTAL_TARGET_TOKENS")) == 6.0
    assert float(train_step.loss_normalizer(w, 233472)) == 233472.0
    assert float(train_step.loss_normalizer(w, None)) == 1.0
    with pytest.raises(ValueError, match="loss_normalizing_factor"):
        train_step.loss_normalizer(w, "PER_BANANA")


def test_schedules_follow_t5x():
    rsqrt = optimizers.make_schedule("rsqrt", 1.0, warmup_steps=10_000)
    assert float(rsqrt(0)) == pytest.approx(0.01)  # flat base/sqrt(warmup) during warmup
    assert float(rsqrt(9_999)) == pytest.approx(0.01)
    assert float(rsqrt(40_000)) == pytest.approx(1 / 200)
    ramp = optimizers.make_schedule("linear_warmup_rsqrt", 1.0, warmup_steps=100)
    assert float(ramp(0)) < float(ramp(50)) < float(ramp(99)) == pytest.approx(0.1)
    cos = optimizers.make_schedule("cosine", 2.0, warmup_steps=10, total_steps=110)
    assert float(cos(0)) == 0.0 and float(cos(10)) == pytest.approx(2.0)
    assert float(cos(110)) == pytest.approx(0.0, abs=1e-6)
    assert float(optimizers.make_schedule("constant", 3e-4)(123)) == pytest.approx(3e-4)
    with pytest.raises(ValueError, match="unknown schedule"):
        optimizers.make_schedule("triangle")


@pytest.mark.parametrize("new_total", [600, 1500])  # the run re-planned shorter / longer
def test_replanned_cosine_is_continuous_and_never_rises(new_total):
    cos = PlannedCosine.for_run(1.0, warmup_steps=10, total=1000, final_fraction=0.05)
    optax_cos = optimizers.make_schedule("cosine", 1.0, 10, 1000, final_fraction=0.05)
    steps = np.arange(0, 1000)
    np.testing.assert_allclose([cos(s) for s in steps], [float(optax_cos(s)) for s in steps],
                               rtol=1e-5, atol=1e-7)  # fmt: skip
    at = 400
    cont = cos.replanned(at, new_total)
    steps = np.arange(0, new_total + 50)
    lr = np.array([cont(s) for s in steps])
    np.testing.assert_allclose(lr[:at], [cos(s) for s in steps[:at]], rtol=1e-12)
    assert lr[at] == pytest.approx(cos(at), rel=1e-12)  # no jump at the re-plan
    assert np.all(np.diff(lr[10:]) <= 1e-12)  # after the warm-up: only decays
    assert lr[new_total] == pytest.approx(0.05) and lr[-1] == pytest.approx(0.05)
    remade = PlannedCosine.for_run(1.0, 10, new_total, 0.05)(at)
    # Re-making the cosine for the new total would have jumped up (longer) or down (shorter).
    assert abs(remade - lr[at]) > 0.1
    # Re-planned again: still continuous; and it survives a checkpoint's JSON round trip.
    again = cont.replanned(at + 100, new_total + 200)
    assert again(at + 100) == pytest.approx(cont(at + 100), rel=1e-12)
    assert again(at + 150) < again(at + 100)
    assert PlannedCosine.from_dict(json.loads(json.dumps(again.to_dict()))) == again


@pytest.mark.parametrize("name", optimizers.OPTIMIZERS)
@pytest.mark.parametrize("schedule", ["constant", "rsqrt", "cosine"])
def test_each_optimizer_and_schedule_steps(name, schedule):
    params = {"w": jnp.ones((256, 128)), "b": jnp.zeros((128,))}
    lr = optimizers.make_schedule(schedule, 1e-2, warmup_steps=2, total_steps=20)
    tx = optimizers.make_optimizer(name, lr, weight_decay=0.01 if name == "adamw" else 0.0)
    state = tx.init(params)

    def loss(p):
        return jnp.mean((p["w"] - 3.0) ** 2) + jnp.mean((p["b"] - 3.0) ** 2)

    @jax.jit
    def update(params, state):
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        return optax.apply_updates(params, updates), state

    before = loss(params)
    for _ in range(3):
        params, state = update(params, state)
    assert float(loss(params)) < float(before)


def test_adafactor_uses_t5x_factored_moments():
    tx = optimizers.make_optimizer("adafactor", 1e-3)
    state = tx.init({"w": jnp.ones((256, 512)), "b": jnp.ones((512,))})
    leaves = {
        jax.tree_util.keystr(p): x.shape for p, x in jax.tree_util.tree_leaves_with_path(state)
    }
    assert leaves["[0].v_row['w']"] == (256,) and leaves["[0].v_col['w']"] == (512,)
    assert leaves["[0].v['b']"] == (512,)  # vectors are not factored


def test_sharded_step_matches_single_device():
    """(2, 4) mesh vs one device: same loss and updated params after each step."""
    loss_1, params_1, _ = _two_steps((1, 1))
    loss_8, params_8, shardings_8 = _two_steps((2, 4))
    np.testing.assert_allclose(loss_1, loss_8, atol=1e-5)
    for step in range(2):
        flat_1, flat_8 = jax.tree.leaves(params_1[step]), jax.tree.leaves(params_8[step])
        for a, b in zip(flat_1, flat_8, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5)
    # The 8-device run really was split: the MLP's hidden dim lives on `model`.
    wi = shardings_8["encoder"]["layers_0"]["mlp"]["wi_0"]["kernel"]
    assert wi.spec == jax.sharding.PartitionSpec(None, "model")
    assert loss_1[1] < loss_1[0] + 1.0  # a sane update, not a blow-up


def test_microbatching_gives_the_same_update():
    loss_a, params_a, _ = _two_steps((1, 1), num_microbatches=1)
    loss_b, params_b, _ = _two_steps((1, 1), num_microbatches=2)
    np.testing.assert_allclose(loss_a, loss_b, atol=1e-5)
    for a, b in zip(jax.tree.leaves(params_a[1]), jax.tree.leaves(params_b[1]), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_nan_guard_stops_and_keeps_last_good_checkpoint(tmp_path):
    # The learning rate turns NaN from step index 3 on, poisoning the 4th update's params.
    schedule = lambda s: np.nan if s >= 3 else 1e-3  # noqa: E731
    mesh, rules, tx, schedule, setup = _setup((1, 1), "adamw", schedule)
    step = train_step.make_train_step(
        EncoderDecoderModel(_tiny_model()), tx, setup.shardings, mesh, enable_dropout=False
    )
    manager = model_dir.checkpoint_manager(str(tmp_path))
    ckpt = loop.Checkpoints(manager, every=2)

    def batches(start):
        i = start
        while True:
            yield _batch(i)
            i += 1

    run = loop.TrainLoop(None, step, batches, schedule, 8, mesh, rules,
                         [loop.NonFiniteStop(), ckpt])  # fmt: skip
    with partitioning.mesh_context(mesh, rules):
        initial = setup.from_params(_initial_state().params)
    assert not ckpt.restore_or_init(run, setup.abstract_with_shardings(), lambda: initial)
    with pytest.raises(
        train_step.NonFiniteLossError, match=r"step 4 .*Last good checkpoint: step 2"
    ):
        run.run()
    assert manager.latest_step() == 2
    again = loop.TrainLoop(None, step, batches, schedule, 8, mesh, rules, [ckpt])
    assert ckpt.restore_or_init(again, setup.abstract_with_shardings(), fresh=lambda: None)
    assert again.step == 2
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(jax.device_get(again.state.params)))
    manager.close()


def test_learning_rate_is_data_one_compile_for_any_schedule():
    mesh, rules, tx, _, setup = _setup((1, 1), "adamw")
    step = train_step.make_train_step(
        EncoderDecoderModel(_tiny_model()), tx, setup.shardings, mesh, enable_dropout=False
    )
    with partitioning.mesh_context(mesh, rules):
        state = setup.from_params(_initial_state().params)
        out = []
        for lr in (1e-3, 5e-3, 0.0):
            s, metrics = step(jax.tree.map(jnp.copy, state), partitioning.shard_batch(
                _batch(0), mesh), np.float32(lr))  # fmt: skip
            out.append((float(metrics["learning_rate"]), jax.device_get(s.params)))
    assert step._cache_size() == 1  # the rate changed three times, the step compiled once
    assert [lr for lr, _ in out] == pytest.approx([1e-3, 5e-3, 0.0])
    first = jax.tree.leaves(jax.device_get(state.params))
    moved = [
        max(float(np.abs(a - b).max()) for a, b in zip(jax.tree.leaves(p), first, strict=True))
        for _, p in out
    ]
    assert moved[2] == 0.0 and 0 < moved[0] < moved[1]  # the update scales with the rate

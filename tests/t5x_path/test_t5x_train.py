"""`python -m t5x.train` with gin/t5x/finetune_jaxrec.gin and pretrain_jaxrec.gin: t5x's own
Adafactor and PjitPartitioner train jaxrec's network, on one and on 8 forced host devices."""

from __future__ import annotations

import re
import shutil

import numpy as np

from .conftest import (
    FINETUNE_STEPS,
    LENGTHS,
    TINY,
    finetune_macros,
    read_jsonl,
    run_t5x,
    train_losses,
)


def _steps(model_dir) -> list[int]:
    from jaxrec.t5x_interop.model_dir import checkpoint_steps

    return checkpoint_steps(str(model_dir))


def test_finetune_trains_checkpoints_and_evaluates(finetuned):
    model_dir, log = finetuned
    losses = train_losses(log)
    assert sorted(losses) == [5, 10, 15, 20], losses
    assert losses[20] < losses[5], losses
    assert _steps(model_dir) == [0, 10, 20]
    assert (model_dir / "checkpoint_20" / "state").is_dir()
    # In-training evaluation computes the task's metrics (Recall/NDCG@K) on the validation split.
    metrics = read_jsonl(model_dir / "inference_eval" / "synthetic_sid_retrieval-metrics.jsonl")
    assert [m["step"] for m in metrics] == [5, 10, 15, 20]
    assert {"recall@10", "ndcg@10", "recall@20"} <= set(metrics[-1])


def test_finetune_resumes_from_the_latest_checkpoint(finetuned, t5x_env, tmp_path):
    model_dir = tmp_path / "resumed"
    shutil.copytree(finetuned[0], model_dir)
    log = run_t5x(
        "train", "t5x/finetune_jaxrec.gin", finetune_macros(model_dir, FINETUNE_STEPS + 5), t5x_env
    )
    assert f"checkpoint_{FINETUNE_STEPS}" in log and "Restoring" in log
    assert sorted(train_losses(log)) == [FINETUNE_STEPS + 5]  # trained 5 more steps only
    assert _steps(model_dir)[-1] == FINETUNE_STEPS + 5
    from jaxrec.models.checkpoints import load_t5x_checkpoint

    _, before = load_t5x_checkpoint(str(model_dir / f"checkpoint_{FINETUNE_STEPS}"))
    _, after = load_t5x_checkpoint(str(model_dir / f"checkpoint_{FINETUNE_STEPS + 5}"))
    emb0, emb1 = before["token_embedder"]["embedding"], after["token_embedder"]["embedding"]
    assert emb0.shape == emb1.shape and not np.allclose(emb0, emb1)


def test_pretrain_on_8_devices(t5x_env, tmp_path):
    model_dir = tmp_path / "pretrain"
    macros = {
        "MIXTURE_OR_TASK_NAME": "'synthetic_sid_cao'",  # retrieval + ranking + rating + ...
        "MIXTURE_OR_TASK_MODULE": "'tasks.synthetic'",
        "MODEL_DIR": f"'{model_dir}'",
        "TRAIN_STEPS": 20,
        "TASK_FEATURE_LENGTHS": LENGTHS,
        "BATCH_SIZE": 8,
        "utils.SaveCheckpointConfig.period": 10,  # t5x summarises training at each save
        "utils.create_learning_rate_scheduler.warmup_steps": 10,
        **TINY,
    }
    log = run_t5x("train", "t5x/pretrain_jaxrec.gin", macros, t5x_env, devices=8)
    # t5x's partitioner shards the parameters by their logical axes (params_axes).
    info = (model_dir / "model-info.txt").read_text()
    assert re.search(r"mlp/wi_0/kernel .*partition spec \(None, 'model'\)", info), info
    losses = train_losses(log)
    assert sorted(losses) == [10, 20] and losses[20] < losses[10], losses
    assert _steps(model_dir) == [0, 10, 20]


def test_flan_t5_shaped_checkpoint_restores_in_t5x(tmp_path):
    """A checkpoint written by save_t5x_checkpoint (legacy layout + Adafactor param_states)
    restores through t5x's own initializer, as t5x.train restores INITIAL_CHECKPOINT_PATH,
    with the default RestoreCheckpointConfig (strict, optimizer state included)."""
    import flax
    import jax
    import jax.numpy as jnp
    import seqio
    from flax import linen as nn
    from t5x import adafactor, models, partitioning, utils

    from jaxrec.models import checkpoints, configs, network
    from jaxrec.t5x_interop.network import T5XTransformer

    # FLAN-T5's parameter tree with dimensions >= 128, so Adafactor factors the matrices; the
    # sharded ones divide the 8 devices of t5x's CPU mesh.
    cfg = configs.T5Config(
        vocab_size=768, emb_dim=128, num_heads=8, head_dim=16, mlp_dim=256,
        num_encoder_layers=1, num_decoder_layers=1, dropout_rate=0.0,
    )  # fmt: skip
    x = jnp.ones((1, 4), jnp.int32)
    boxed = network.Transformer(cfg).init(jax.random.key(0), x, x, x, enable_dropout=False)
    params = jax.tree.map(np.asarray, nn.meta.unbox(boxed["params"]))
    ckpt = checkpoints.save_t5x_checkpoint(str(tmp_path), params, step=1184000)

    vocab = seqio.PassThroughVocabulary(cfg.vocab_size)
    rules = adafactor.standard_logical_factor_rules()
    optimizer = adafactor.Adafactor(decay_rate=0.8, step_offset=0, logical_factor_rules=rules)
    model = models.EncoderDecoderModel(T5XTransformer(cfg), vocab, vocab, optimizer)
    partitioner = partitioning.PjitPartitioner(
        num_partitions=1, logical_axis_rules=partitioning.standard_logical_axis_rules()
    )
    shapes = {k: (8, 16) for k in ("encoder_input_tokens", "decoder_input_tokens")}
    types = {k: jnp.int32 for k in shapes}
    initializer = utils.TrainStateInitializer(
        optimizer, model.get_initial_variables, shapes, partitioner, types
    )
    state = initializer.from_checkpoint([utils.RestoreCheckpointConfig(ckpt, mode="specific")])
    assert int(state.step) == 1184000
    restored = jax.tree.map(np.asarray, flax.core.unfreeze(state.params))
    jax.tree.map(np.testing.assert_array_equal, restored, params)
    # Factored second moments of [vocab, embed]: v_row drops the largest dim, v_col the other.
    emb_state = state.param_states["token_embedder"]["embedding"]
    assert emb_state.v_row.shape == (128,) and emb_state.v_col.shape == (768,)

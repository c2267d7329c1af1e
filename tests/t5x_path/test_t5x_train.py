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
    from jaxrec.t5x_model_dir import checkpoint_steps

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


def test_flan_t5_shaped_checkpoint_restores_in_t5x(t5x_env, tmp_path):
    """A checkpoint written by save_t5x_checkpoint (legacy layout + Adafactor param_states) is
    t5x.train's INITIAL_CHECKPOINT_PATH with t5x's default RestoreCheckpointConfig."""
    import jax
    import jax.numpy as jnp
    from flax import linen as nn

    from jaxrec.models import checkpoints, configs, network

    # FLAN-T5's parameter tree with dimensions >= 128, so Adafactor factors the matrices.
    shape = {"EMB_DIM": 128, "NUM_HEADS": 2, "HEAD_DIM": 64, "MLP_DIM": 256, "NUM_LAYERS": 1}
    env_vocab = _task_vocab_size(t5x_env)
    cfg = configs.T5Config(
        vocab_size=env_vocab, emb_dim=128, num_heads=2, head_dim=64, mlp_dim=256,
        num_encoder_layers=1, num_decoder_layers=1,
    )  # fmt: skip
    x = jnp.ones((1, 4), jnp.int32)
    boxed = network.Transformer(cfg).init(jax.random.key(0), x, x, x, enable_dropout=False)
    params = jax.tree.map(np.asarray, nn.meta.unbox(boxed["params"]))
    ckpt = checkpoints.save_t5x_checkpoint(str(tmp_path / "flan"), params, step=1000)

    model_dir = tmp_path / "run"
    macros = finetune_macros(model_dir, 1001)
    macros.update(shape, INITIAL_CHECKPOINT_PATH=f"'{ckpt}'", EVAL_PERIOD=1000)
    del macros["utils.SaveCheckpointConfig.period"]
    log = run_t5x("train", "t5x/finetune_jaxrec.gin", macros, t5x_env)
    assert "Restoring from checkpoint" in log
    # t5x saved the restored state before training: the parameters are ours.
    _, restored = checkpoints.load_t5x_checkpoint(str(model_dir / "checkpoint_1000"))
    flat = jax.tree_util.tree_leaves_with_path(params)
    for path, value in flat:
        got = restored
        for k in path:
            got = got[k.key]
        np.testing.assert_array_equal(got, value, err_msg=jax.tree_util.keystr(path))
    assert _steps(model_dir) == [1000, 1001]


def _task_vocab_size(env) -> int:
    """The padded vocabulary size of the synthetic task, as the model gin computes it."""
    import os

    from jaxrec import t5x_bridge
    from jaxrec.tasks.registry import register_dataset_tasks

    old = os.environ.get("JAXREC_CACHE_DIR")
    os.environ["JAXREC_CACHE_DIR"] = env["JAXREC_CACHE_DIR"]
    try:
        register_dataset_tasks(env["JAXREC_SYNTHETIC_DIR"], name="synthetic", item_repr="sid")
        return t5x_bridge.padded_vocab_size("synthetic_sid_retrieval")
    finally:
        if old is None:
            os.environ.pop("JAXREC_CACHE_DIR")
        else:
            os.environ["JAXREC_CACHE_DIR"] = old

"""Prefix-shared training equals per-prefix training (losses and gradients), and the rows it
builds say what the module docstring says."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.baselines import packing
from jaxrec.models.configs import get_config
from jaxrec.models.network import Transformer
from jaxrec.recipes import prefix_shared
from jaxrec.training.step import token_losses

EOS = 1


def _codes(num_items: int, k: int, vocab: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(3, vocab, size=(num_items, k)).astype(np.int32)


def _loss_sum(model, params, batch):
    kwargs = {
        k: batch[k]
        for k in ("encoder_segment_ids", "decoder_segment_ids", "decoder_cross_positions")
        if k in batch
    }
    logits = model.apply(
        {"params": params},
        batch["encoder_input_tokens"],
        batch["decoder_input_tokens"],
        batch["decoder_target_tokens"],
        enable_dropout=False,
        **kwargs,
    )
    targets = batch["decoder_target_tokens"]
    loss, _ = token_losses(logits, targets, 0.1, 1e-4)
    return jnp.sum(loss * (targets > 0))


def test_rows_match_the_docstring_example():
    codes = np.array([[3, 4], [5, 6], [7, 8], [9, 10], [11, 12]], np.int32)  # x y z u v
    rows = packing.pack_rows([np.array([0, 1, 2]), np.array([3, 4])], row_len=4)
    b = prefix_shared.shared_batch(rows, codes, EOS)
    assert b["encoder_input_tokens"].tolist() == [[[3, 4], [5, 6], [9, 10], [0, 0]]]
    assert b["encoder_segment_ids"].tolist() == [[1, 1, 2, 0]]
    assert b["decoder_target_tokens"].tolist() == [[5, 6, 1, 7, 8, 1, 11, 12, 1, 0, 0, 0]]
    assert b["decoder_input_tokens"].tolist() == [[0, 5, 6, 0, 7, 8, 0, 11, 12, 0, 0, 0]]
    assert b["decoder_segment_ids"].tolist() == [[1, 1, 1, 2, 2, 2, 3, 3, 3, 0, 0, 0]]
    assert b["decoder_cross_positions"][0, :9].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]


@pytest.mark.parametrize(
    "levels,item_ids,recency", [(2, False, False), (4, False, True), (3, True, True)]
)
def test_prefix_shared_equals_per_prefix_losses_and_gradients(levels, item_ids, recency):
    history = 8
    cfg = get_config(
        "tiny", vocab_size=64, dropout_rate=0.0, encoder_causal=True, num_encoder_layers=2,
        num_input_items=40 if item_ids else 0, cross_recency_bias=recency,
    )  # fmt: skip
    model = Transformer(cfg)
    codes = _codes(40, levels, 64)
    inputs = prefix_shared.with_item_ids(codes) if item_ids else None
    rng = np.random.default_rng(1)
    windows = [rng.choice(40, size=n, replace=False) for n in (2, 5, 9, 3, 7, 9, 4)]
    rows = packing.pack_rows(windows, history)
    shared = prefix_shared.shared_batch(rows, codes, EOS, inputs)
    histories, targets = prefix_shared.prefix_examples(windows)
    per = prefix_shared.per_prefix_batch(histories, targets, codes, EOS, history, inputs)
    assert len(rows.inputs) < len(targets)  # fewer rows than targets: packed
    assert int((shared["decoder_target_tokens"] > 0).sum()) == len(targets) * (levels + 1)

    params = model.init(jax.random.key(0), **{k: jnp.asarray(v) for k, v in per.items()})["params"]
    params = nn.unbox(params)
    if recency:  # zero-initialised; make it matter
        table = params["decoder"]["recency_bias"]["rel_embedding"]
        params["decoder"]["recency_bias"]["rel_embedding"] = jnp.linspace(
            -2.0, 2.0, table.size
        ).reshape(table.shape)
    grad = jax.jit(jax.value_and_grad(_loss_sum, argnums=1), static_argnums=0)
    loss_s, g_s = grad(model, params, {k: jnp.asarray(v) for k, v in shared.items()})
    loss_p, g_p = grad(model, params, {k: jnp.asarray(v) for k, v in per.items()})
    np.testing.assert_allclose(float(loss_s), float(loss_p), rtol=2e-5)
    for (path, a), b in zip(
        jax.tree_util.tree_leaves_with_path(g_s), jax.tree.leaves(g_p), strict=True
    ):
        scale = float(jnp.max(jnp.abs(b))) + 1e-6
        np.testing.assert_allclose(
            np.asarray(a) / scale, np.asarray(b) / scale, atol=2e-5, err_msg=str(path)
        )


def test_bidirectional_encoder_is_not_prefix_shareable():
    """The equality needs the causal encoder: with a bidirectional one the losses differ."""
    cfg = get_config("tiny", vocab_size=64, dropout_rate=0.0, encoder_causal=False)
    model = Transformer(cfg)
    codes = _codes(20, 2, 64)
    windows = [np.arange(6), np.arange(6, 12)]
    shared = prefix_shared.shared_batch(packing.pack_rows(windows, 8), codes, EOS)
    per = prefix_shared.per_prefix_batch(*prefix_shared.prefix_examples(windows), codes, EOS, 8)
    params = model.init(jax.random.key(0), **{k: jnp.asarray(v) for k, v in per.items()})
    params = nn.unbox(params["params"])
    a = _loss_sum(model, params, {k: jnp.asarray(v) for k, v in shared.items()})
    b = _loss_sum(model, params, {k: jnp.asarray(v) for k, v in per.items()})
    assert abs(float(a) - float(b)) > 1e-3 * abs(float(b))

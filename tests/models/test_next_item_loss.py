"""The semantic-id adapter's auxiliary next-item objective: SASRec's cross-entropy over all
items at every encoder position, scored against the item-id input embedding; it adds no
parameters and leaves the network forward-only."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.baselines import packing
from jaxrec.models.adapters import EncoderDecoderModel, SemanticIdModel
from jaxrec.models.configs import get_config
from jaxrec.models.network import Transformer
from jaxrec.recipes import prefix_shared
from jaxrec.training import step as train_step

NUM_ITEMS, K, EOS = 25, 3, 1


def _batch():
    rng = np.random.default_rng(0)
    codes = rng.integers(3, 60, size=(NUM_ITEMS, K)).astype(np.int32)
    windows = [rng.choice(NUM_ITEMS, size=n, replace=False) for n in (3, 6, 2, 8, 5)]
    rows = packing.pack_rows(windows, 8)
    batch = prefix_shared.shared_batch(rows, codes, EOS, prefix_shared.with_item_ids(codes))
    batch["encoder_next_items"] = rows.targets.astype(np.int32)
    return {k: jnp.asarray(v) for k, v in batch.items()}


def _model(**kw):
    cfg = get_config("tiny", vocab_size=64, dropout_rate=0.1, encoder_causal=True, **kw)
    return Transformer(cfg)


@pytest.mark.parametrize("scaled", [False, True])
def test_next_item_loss_is_the_item_cross_entropy_on_the_encoder_outputs(scaled):
    model = _model(num_input_items=NUM_ITEMS, scale_item_logits=scaled)
    batch = _batch()
    model_inputs = {k: v for k, v in batch.items() if k != "encoder_next_items"}
    params = nn.unbox(model.init(jax.random.key(0), **model_inputs)["params"])
    rng = jax.random.key(1)
    loss_cfg = train_step.LossConfig(z_loss=0.0)
    plain, plain_sums = EncoderDecoderModel(model, loss_cfg).loss_sums(params, batch, rng, True)
    unweighted, same_sums = SemanticIdModel(model, loss_cfg).loss_sums(params, batch, rng, True)
    weighted, sums = SemanticIdModel(model, loss_cfg, 0.5).loss_sums(params, batch, rng, True)
    assert "next_item_loss" not in plain_sums and "next_item_loss" not in same_sums
    assert float(unweighted) == float(plain)  # same dropout masks: one network, one rng stream
    np.testing.assert_allclose(float(sums["loss"] - 0.5 * sums["next_item_loss"]), float(plain),
                               rtol=1e-5)  # fmt: skip

    sums_eval = SemanticIdModel(model, loss_cfg, 0.5).loss_sums(params, batch, None, False)[1]
    encoded = model.apply({"params": params}, batch["encoder_input_tokens"],
                          batch["encoder_segment_ids"], enable_dropout=False,
                          method="encode")  # fmt: skip
    table = params["encoder"]["item_embedder"]["embedding"]  # [items + 1, embed], row 0 = pad
    logits = np.asarray(encoded, np.float64) @ np.asarray(table, np.float64)[1:].T
    if scaled:  # T5's scaling of tied output embeddings
        logits /= np.sqrt(table.shape[1])
    nxt = np.asarray(batch["encoder_next_items"])
    real = nxt > 0
    log_z = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    picked = np.take_along_axis(logits, np.maximum(nxt - 1, 0)[..., None], -1)[..., 0]
    want = float(((log_z - picked) * real).sum())
    np.testing.assert_allclose(float(sums_eval["next_item_loss"]), want, rtol=1e-4)
    assert float(sums_eval["next_items"]) == real.sum()
    assert float(weighted) == pytest.approx(float(sums["loss"]))


def test_scaled_item_logits_start_at_unit_scale():
    # Unscaled, a fresh network's item logits have a std of about sqrt(emb_dim) (unit-norm
    # rows per dimension on both sides), so the first next-item losses are far above
    # log(items); scaled by 1/sqrt(emb_dim) they start near it (a little above: the encoder
    # output still carries the history items' own embeddings).
    batch = _batch()
    model_inputs = {k: v for k, v in batch.items() if k != "encoder_next_items"}
    loss = {}
    for scaled in (False, True):
        model = _model(num_input_items=NUM_ITEMS, scale_item_logits=scaled)
        params = nn.unbox(model.init(jax.random.key(0), **model_inputs)["params"])
        adapter = SemanticIdModel(model, train_step.LossConfig(z_loss=0.0), 1.0)
        _, sums = adapter.loss_sums(params, batch, None, False)
        loss[scaled] = float(sums["next_item_loss"] / sums["next_items"])
    # (here 29.5 unscaled, 4.6 scaled, log(25) = 3.2)
    assert loss[True] < np.log(NUM_ITEMS) + 2.0 and loss[False] > 4 * loss[True]


def test_the_head_adds_no_parameters_and_needs_item_ids():
    batch = _batch()
    model_inputs = {k: v for k, v in batch.items() if k != "encoder_next_items"}
    with_ids = _model(num_input_items=NUM_ITEMS)
    params = with_ids.init(jax.random.key(0), **model_inputs)["params"]
    names = {"/".join(map(str, p)) for p, _ in jax.tree_util.tree_leaves_with_path(params)}
    assert not any("next" in n for n in names)  # only the item-id input embedding is used
    with pytest.raises(ValueError, match="num_input_items"):
        SemanticIdModel(_model(), train_step.LossConfig(), next_item_weight=1.0)


def test_score_batch_is_the_targets_log_likelihood():
    model = _model(num_input_items=NUM_ITEMS)
    batch = _batch()
    model_inputs = {k: v for k, v in batch.items() if k != "encoder_next_items"}
    params = nn.unbox(model.init(jax.random.key(0), **model_inputs)["params"])
    adapter = EncoderDecoderModel(model, train_step.LossConfig(z_loss=0.0))
    scores = adapter.score_batch(params, batch)
    total, _ = adapter.loss_sums(params, batch, None, False)
    assert scores.shape == (batch["encoder_input_tokens"].shape[0],)
    np.testing.assert_allclose(-float(scores.sum()), float(total), rtol=1e-5)

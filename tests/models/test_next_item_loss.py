"""The auxiliary next-item objective: SASRec's cross-entropy over all items at every encoder
position, scored against the item-id input embedding; it adds no parameters."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec import prefix_shared, trainer
from jaxrec.baselines import packing
from jaxrec.models.configs import get_config
from jaxrec.models.network import Transformer

NUM_ITEMS, K, EOS = 25, 3, 1


def _batch():
    rng = np.random.default_rng(0)
    codes = rng.integers(3, 60, size=(NUM_ITEMS, K)).astype(np.int32)
    windows = [rng.choice(NUM_ITEMS, size=n, replace=False) for n in (3, 6, 2, 8, 5)]
    rows = packing.pack_rows(windows, 8)
    batch = prefix_shared.shared_batch(rows, codes, EOS, prefix_shared.with_item_ids(codes))
    batch["encoder_next_items"] = rows.targets.astype(np.int32)
    return {k: jnp.asarray(v) for k, v in batch.items()}


def test_next_item_loss_is_the_item_cross_entropy_on_the_encoder_outputs():
    cfg = get_config("tiny", vocab_size=64, dropout_rate=0.0, encoder_causal=True,
                     num_input_items=NUM_ITEMS)  # fmt: skip
    model = Transformer(cfg)
    batch = _batch()
    model_inputs = {k: v for k, v in batch.items() if k != "encoder_next_items"}
    params = nn.unbox(model.init(jax.random.key(0), **model_inputs)["params"])
    rng = jax.random.key(1)

    plain, plain_sums = trainer._batch_sums(
        model, params, batch, rng, trainer.LossConfig(z_loss=0.0), False
    )
    weighted, sums = trainer._batch_sums(
        model, params, batch, rng, trainer.LossConfig(z_loss=0.0, next_item_weight=0.5), False
    )
    assert "next_item_loss" not in plain_sums

    encoded = model.apply({"params": params}, batch["encoder_input_tokens"],
                          batch["encoder_segment_ids"], enable_dropout=False,
                          method="encode")  # fmt: skip
    table = params["encoder"]["item_embedder"]["embedding"]  # [items + 1, embed], row 0 = pad
    logits = np.asarray(encoded, np.float64) @ np.asarray(table, np.float64)[1:].T
    nxt = np.asarray(batch["encoder_next_items"])
    real = nxt > 0
    log_z = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    picked = np.take_along_axis(logits, np.maximum(nxt - 1, 0)[..., None], -1)[..., 0]
    want = float(((log_z - picked) * real).sum())
    np.testing.assert_allclose(float(sums["next_item_loss"]), want, rtol=1e-4)
    assert float(sums["next_items"]) == real.sum()
    np.testing.assert_allclose(float(weighted), float(plain) + 0.5 * want, rtol=1e-4)


def test_the_head_adds_no_parameters_and_needs_item_ids():
    batch = _batch()
    model_inputs = {k: v for k, v in batch.items() if k != "encoder_next_items"}
    cfg = get_config("tiny", vocab_size=64, encoder_causal=True, num_input_items=NUM_ITEMS)
    model = Transformer(cfg)
    params = model.init(jax.random.key(0), **model_inputs)["params"]
    out = model.apply({"params": params}, **model_inputs, enable_dropout=False,
                      next_items=True)  # fmt: skip
    assert out[1].shape == (*batch["encoder_next_items"].shape, NUM_ITEMS + 1)
    plain = model.apply({"params": params}, **model_inputs, enable_dropout=False)
    np.testing.assert_array_equal(out[0], plain)  # same decoder logits, same parameters
    codes_only = dict(
        model_inputs, encoder_input_tokens=model_inputs["encoder_input_tokens"][..., :K]
    )
    bare = Transformer(get_config("tiny", vocab_size=64, encoder_causal=True))
    bare_params = bare.init(jax.random.key(0), **codes_only)["params"]
    with pytest.raises(ValueError, match="num_input_items"):
        bare.apply({"params": bare_params}, **codes_only, enable_dropout=False,
                   next_items=True)  # fmt: skip

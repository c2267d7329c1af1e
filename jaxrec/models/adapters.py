"""Model adapters in t5x's mould: the forward-only network plus what training and inference
do with it.

`EncoderDecoderModel` wraps a `jaxrec.models.network.Transformer` (which only maps inputs to
logits) with t5x's `EncoderDecoderModel` interface: `get_initial_variables`, `loss_fn`
(t5x-style token cross-entropy, label smoothing and z-loss, normalised as configured),
`score_batch` (sequence log-likelihood of the targets) and `predict_batch` (beam search,
optionally constrained to a trie). The trainer's step only calls `loss_sums`, so a recipe
with another objective is another adapter, not a flag in the trainer or the network.

`SemanticIdModel` is the semantic-id recipe's adapter: the same decoder loss plus an
auxiliary next-item cross-entropy over all items at every encoder position, scored against the
item-id input embedding (SASRec's objective, tied; no parameters of its own). Batches carry
the targets as `encoder_next_items` (item id + 1, 0 = none).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrec.training.step import LossConfig, loss_normalizer, token_losses

Batch = dict[str, Any]
# Network inputs taken from a feature-converted batch (seqio's EncDecFeatureConverter names,
# plus the prefix-shared rows' `decoder_cross_positions`).
MODEL_FEATURES = (
    "encoder_segment_ids",
    "decoder_segment_ids",
    "encoder_positions",
    "decoder_positions",
    "decoder_cross_positions",
)


def _weights(batch: Batch) -> jax.Array:
    targets = batch["decoder_target_tokens"]
    return batch.get("decoder_loss_weights", (targets > 0).astype(jnp.float32)).astype(jnp.float32)


class EncoderDecoderModel:
    """A T5 network with t5x's model interface (see the module docstring)."""

    def __init__(self, module: nn.Module, loss_cfg: LossConfig = LossConfig()):
        self.module = module
        self.loss_cfg = loss_cfg

    # -- t5x's interface ---------------------------------------------------------------------
    def get_initial_variables(self, rng: jax.Array, batch: Batch) -> dict[str, Any]:
        """Variables (boxed with their logical axes) for a batch of the training shapes."""
        inputs = {k: batch[k] for k in ("encoder_input_tokens", "decoder_input_tokens",
                                        "decoder_target_tokens")}  # fmt: skip
        return self.module.init({"params": rng, "dropout": rng}, **inputs, enable_dropout=False)

    def loss_fn(
        self, params: Any, batch: Batch, dropout_rng: jax.Array | None
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """(normalised loss, metrics) of one batch; dropout when `dropout_rng` is given."""
        total, sums = self.loss_sums(params, batch, dropout_rng, dropout_rng is not None)
        norm = self.normalizer(batch)
        return total / norm, self.metrics(sums, norm)

    def score_batch(self, params: Any, batch: Batch) -> jax.Array:
        """[batch] log-likelihood of each row's targets (sum over its weighted tokens)."""
        logits = self._logits(params, batch, None, False)
        log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
        targets = batch["decoder_target_tokens"]
        picked = jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
        return jnp.sum(picked * _weights(batch), axis=-1)

    def predict_batch(
        self,
        params: Any,
        batch: Batch,
        eos_id: int = 1,
        num_beams: int = 4,
        max_decode_len: int = 8,
        constraint: Any = None,
    ) -> tuple[jax.Array, jax.Array]:
        """(sequences [batch, beams, len], scores [batch, beams]) by beam search, best first,
        optionally constrained (`jaxrec.inference.decoding.Constraint`)."""
        from jaxrec.inference.generation import make_generate_fn

        key = (eos_id, num_beams, max_decode_len)
        cache = self.__dict__.setdefault("_generate", {})
        if key not in cache:
            cache[key] = make_generate_fn(self.module, eos_id, num_beams, None, max_decode_len)
        return cache[key](params, batch["encoder_input_tokens"], constraint)

    # -- what the train step calls -----------------------------------------------------------
    def loss_sums(
        self, params: Any, batch: Batch, rng: jax.Array | None, enable_dropout: bool
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Summed (not normalised) loss and counts of one (micro)batch: `loss`, `z_loss`,
        `correct`, `weight` (and what subclasses add). Summing over microbatches, then
        normalising once, gives the full batch's update."""
        logits = self._logits(params, batch, rng, enable_dropout)
        return self._token_sums(logits, batch)

    def normalizer(self, batch: Batch) -> jax.Array:
        """The divisor of one global batch's summed loss (`LossConfig.loss_normalizing_factor`)."""
        return loss_normalizer(_weights(batch), self.loss_cfg.loss_normalizing_factor)

    def sum_keys(self, batch: Batch) -> tuple[str, ...]:
        """The keys `loss_sums` returns for batches like `batch` (microbatch accumulators)."""
        return ("loss", "z_loss", "correct", "weight")

    def metrics(self, sums: dict[str, jax.Array], normalizer: jax.Array) -> dict[str, jax.Array]:
        return {
            "loss": sums["loss"] / normalizer,
            "z_loss": sums["z_loss"] / normalizer,
            "accuracy": sums["correct"] / jnp.maximum(sums["weight"], 1.0),
            "target_tokens": sums["weight"],
        }

    # -- internals ---------------------------------------------------------------------------
    def _apply(self, params, batch, rng, enable_dropout, method=None):
        kwargs = {k: batch[k] for k in MODEL_FEATURES if k in batch}
        return self.module.apply(
            {"params": params},
            batch["encoder_input_tokens"],
            batch["decoder_input_tokens"],
            batch["decoder_target_tokens"],
            enable_dropout=enable_dropout,
            rngs={"dropout": rng} if enable_dropout else None,
            method=method,
            **kwargs,
        )

    def _logits(self, params, batch, rng, enable_dropout) -> jax.Array:
        return self._apply(params, batch, rng, enable_dropout)  # [batch, len, vocab]

    def _token_sums(self, logits: jax.Array, batch: Batch):
        targets = batch["decoder_target_tokens"]
        weights = _weights(batch)
        cfg = self.loss_cfg
        loss, z_part = token_losses(logits, targets, cfg.label_smoothing, cfg.z_loss)
        correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
        sums = {
            "loss": jnp.sum(loss * weights),
            "z_loss": jnp.sum(z_part * weights),
            "correct": jnp.sum(correct * weights),
            "weight": jnp.sum(weights),
        }
        return sums["loss"], sums


def _encode_and_decode(
    module,
    encoder_input_tokens,
    decoder_input_tokens,
    decoder_target_tokens,
    encoder_segment_ids=None,
    decoder_segment_ids=None,
    encoder_positions=None,
    decoder_positions=None,
    *,
    enable_dropout=True,
    decoder_cross_positions=None,
):
    """(encoder outputs, decoder logits): the network's `__call__`, keeping the encoding."""
    del encoder_positions
    encoded = module.encode(
        encoder_input_tokens, encoder_segment_ids, enable_dropout=enable_dropout
    )
    logits = module.decode(
        encoded, encoder_input_tokens, decoder_input_tokens, decoder_target_tokens,
        encoder_segment_ids=encoder_segment_ids, decoder_segment_ids=decoder_segment_ids,
        decoder_positions=decoder_positions, enable_dropout=enable_dropout,
        decoder_cross_positions=decoder_cross_positions,
    )  # fmt: skip
    return encoded, logits


class SemanticIdModel(EncoderDecoderModel):
    """The semantic-id recipe: decoder loss + `next_item_weight` x the next-item loss."""

    def __init__(
        self, module: nn.Module, loss_cfg: LossConfig = LossConfig(), next_item_weight: float = 0.0
    ):
        super().__init__(module, loss_cfg)
        self.next_item_weight = float(next_item_weight)
        if self.next_item_weight and not module.config.num_input_items:
            raise ValueError("the next-item loss scores against item-id input embeddings: "
                             "the network needs num_input_items > 0")  # fmt: skip

    def _uses_next_items(self, batch: Batch) -> bool:
        return bool(self.next_item_weight) and "encoder_next_items" in batch

    def sum_keys(self, batch):
        extra = ("next_item_loss", "next_items") if self._uses_next_items(batch) else ()
        return super().sum_keys(batch) + extra

    def loss_sums(self, params, batch, rng, enable_dropout):
        if not self._uses_next_items(batch):
            return super().loss_sums(params, batch, rng, enable_dropout)
        encoded, logits = self._apply(params, batch, rng, enable_dropout, _encode_and_decode)
        total, sums = self._token_sums(logits, batch)
        item_logits = next_item_logits(params, encoded, scaled=self.module.config.scale_item_logits)
        nxt = batch["encoder_next_items"]  # [batch, input_length] item id + 1, 0 = none
        item_ce = (
            jax.nn.logsumexp(item_logits, axis=-1)
            - jnp.take_along_axis(item_logits, nxt[..., None], axis=-1)[..., 0]
        )
        real = (nxt > 0).astype(jnp.float32)
        sums["next_item_loss"] = jnp.sum(item_ce * real)
        sums["next_items"] = jnp.sum(real)
        sums["loss"] = total + self.next_item_weight * sums["next_item_loss"]
        return sums["loss"], sums

    def metrics(self, sums, normalizer):
        out = super().metrics(sums, normalizer)
        if "next_items" in sums:  # the auxiliary loss, per encoder position
            out["next_item_loss"] = sums["next_item_loss"] / jnp.maximum(sums["next_items"], 1)
        return out


def next_item_logits(params: Any, encoded: jax.Array, *, scaled: bool) -> jax.Array:
    """[batch, input_length, items + 1] float32: each encoder output scored against every
    item-id input embedding (tied, as in SASRec), divided by sqrt(embed) when `scaled`
    (`T5Config.scale_item_logits`); id 0 (padding) is never a target."""
    table = nn.meta.unbox(params["encoder"]["item_embedder"]["embedding"])
    logits = jnp.dot(encoded.astype(jnp.float32), table.astype(jnp.float32).T)
    if scaled:
        logits = logits / jnp.sqrt(jnp.float32(table.shape[-1]))
    return logits.at[..., 0].set(-1e9)

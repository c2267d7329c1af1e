"""Hybrid retrieval: the beams propose, the dense item head re-scores (LIGER-style).

A semantic-id model trained with the next-item loss (`TrainSettings.next_item_loss`) has,
beside its decoder, a dense item head: the causal encoder's output at the last history position
scored against every item's id embedding (tied; `jaxrec.models.adapters.next_item_logits`).
Three rankings come from one model:

  generative  the items of the constrained beam search, in beam order (log-probability of the
              item's semantic-id sequence);
  dense       every catalogue item ranked by the head's log-softmax (SASRec-like, no beams);
  hybrid      the beam items re-ranked by  log p_beam(i) + w * log p_dense(i),  w chosen on
              validation (`FUSION_WEIGHTS`). Only the beams' items are candidates: the model
              stays a generative recommender; the head re-orders what the beams found.

`Scored` holds, per query, what every weight needs (the beam items and both scores of each,
and the target's rank under the dense head), so choosing w costs no further inference.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.inference import metrics as eval_metrics
from jaxrec.inference.retrieval import RankedBatch
from jaxrec.models.adapters import next_item_logits

# Weights of the dense head tried on validation (0 = the generative ranking).
# Up to 20: on the demo's data validation chose 5, the largest weight of an earlier grid.
FUSION_WEIGHTS = (0.0, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0)


def has_dense_head(rec: Any) -> bool:
    """Whether the model has the item-id embedding the dense head scores against."""
    return bool(rec.config.num_input_items) and rec.item_inputs


def _dense_fn(model, scaled: bool):
    @jax.jit
    def dense(params, inputs):  # inputs [b, L, k + 1] (codes, id + 1), left-aligned
        encoded = model.apply({"params": params}, inputs, enable_dropout=False,
                              method=model.encode)  # fmt: skip  # [b, L, embed]
        last = jnp.maximum(jnp.sum(inputs[..., 0] > 0, axis=1) - 1, 0)  # [b]
        at_last = jnp.take_along_axis(encoded, last[:, None, None], axis=1)  # [b, 1, embed]
        logits = next_item_logits(params, at_last, scaled=scaled)[:, 0, 1:]  # [b, items], id + 1
        return jax.nn.log_softmax(logits, axis=-1)

    return dense


def dense_log_probs(rec: Any, params: Any, inputs: np.ndarray) -> np.ndarray:
    """[b, num_items] float32: the dense head's log-probability of each item being next."""
    fns = rec.__dict__.setdefault("_dense_fns", {})  # compiled once per model
    if "dense" not in fns:
        fns["dense"] = _dense_fn(rec.model, rec.config.scale_item_logits)
    return np.asarray(fns["dense"](params, inputs))


@dataclasses.dataclass
class Scored:
    """Beam items with both scores, per query (see the module docstring)."""

    items: np.ndarray  # [n, B] beam items, beam order, -1 padded
    beam: np.ndarray  # [n, B] log p of each item's sequence, -inf padded
    dense: np.ndarray  # [n, B] the head's log p of each beam item, -inf padded
    targets: np.ndarray  # [n]
    dense_rank: np.ndarray  # [n] 1-based rank of the target under the head, all items

    def ranks(self, weight: float | None) -> np.ndarray:
        """1-based rank of each target (0 = not among the beam items): generative order for
        weight 0, re-scored for weight > 0, the head alone over all items for None."""
        if weight is None:
            return self.dense_rank
        if weight == 0:
            return eval_metrics.target_ranks(self.items, self.targets)
        return eval_metrics.target_ranks(self.reranked(weight)[0], self.targets)

    def reranked(self, weight: float) -> tuple[np.ndarray, np.ndarray]:
        """(items [n, B], fused scores [n, B]) best first under `weight`."""
        return rescored(self.items, self.beam, self.dense, weight)


def rescored(items: np.ndarray, beam: np.ndarray, dense: np.ndarray,
             weight: float) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Beam items [n, B] (-1 padded) re-ranked by  beam + weight * dense  (both [n, B]):
    (items, fused scores), best first, ties in beam order."""
    fused = np.where(items >= 0, beam + weight * dense, -np.inf)
    order = np.argsort(-fused, axis=1, kind="stable")
    return np.take_along_axis(items, order, 1), np.take_along_axis(fused, order, 1)


def scored_batches(
    rec: Any,
    params: Any,
    histories: Sequence[Sequence[int]],
    num_beams: int = 20,
    batch_size: int = 32,
    progress: str | None = None,
) -> Iterator[tuple[RankedBatch, np.ndarray]]:
    """Streams (beam items of a batch, the head's log-probabilities `[b, num_items]` for it):
    the constrained search keeps all `num_beams` items."""
    for b in rec.ranked_batches(params, histories, num_beams, batch_size, num_beams, progress):
        inputs = rec.encoder_inputs(histories[b.start : b.start + len(b.items)])
        yield b, dense_log_probs(rec, params, inputs)


def _at(logp: np.ndarray, items: np.ndarray) -> np.ndarray:
    """[b, B] log p of each listed item (-inf where the list is padded)."""
    return np.where(items >= 0, np.take_along_axis(logp, np.maximum(items, 0), 1), -np.inf)


def reranked_batches(
    rec: Any,
    params: Any,
    histories: Sequence[Sequence[int]],
    weight: float,
    num_beams: int = 20,
    batch_size: int = 32,
    max_items: int = 20,
    progress: str | None = None,
) -> Iterator[RankedBatch]:
    """`RankedBatch`es of the hybrid ranking: the beam items ordered by their fused score,
    which `scores` holds."""
    for b, logp in scored_batches(rec, params, histories, num_beams, batch_size, progress):
        items, fused = rescored(b.items, b.scores, _at(logp, b.items), weight)
        yield dataclasses.replace(b, items=items[:, :max_items], scores=fused[:, :max_items])


def score(
    rec: Any,
    params: Any,
    histories: Sequence[Sequence[int]],
    targets: np.ndarray | None,
    num_beams: int = 20,
    batch_size: int = 32,
    progress: str | None = None,
) -> Scored:
    """Runs the constrained search (all `num_beams` items kept) and the dense head over
    `histories`; `targets` (item ids) give the head's rank of each target."""
    n = len(histories)
    items = np.full((n, num_beams), -1, np.int32)
    beam = np.full((n, num_beams), -np.inf, np.float32)
    dense = np.full((n, num_beams), -np.inf, np.float32)
    dense_rank = np.zeros(n, np.int64)
    for b, logp in scored_batches(rec, params, histories, num_beams, batch_size, progress):
        stop = b.start + len(b.items)
        items[b.start : stop], beam[b.start : stop] = b.items, b.scores
        dense[b.start : stop] = _at(logp, b.items)
        if targets is not None:
            t = np.asarray(targets[b.start : stop])
            mine = logp[np.arange(len(t)), t]
            dense_rank[b.start : stop] = 1 + (logp > mine[:, None]).sum(axis=1)
    t = np.full(n, -1, np.int64) if targets is None else np.asarray(targets, np.int64)
    return Scored(items, beam, dense, t, dense_rank)


def metrics_by_weight(
    scored: Scored,
    weights: Sequence[float] = FUSION_WEIGHTS,
    ks: Sequence[int] = eval_metrics.DEFAULT_KS,
) -> dict[str, dict[str, float]]:
    """Recall/NDCG@K of the generative ranking ("generative"), the head alone ("dense") and
    each fusion weight ("w=0.5", ...)."""
    out = {
        "generative": eval_metrics.metrics_from_ranks(scored.ranks(0.0), ks),
        "dense": eval_metrics.metrics_from_ranks(scored.ranks(None), ks),
    }
    for w in weights:
        if w > 0:
            out[f"w={w:g}"] = eval_metrics.metrics_from_ranks(scored.ranks(w), ks)
    return out


def best_weight(by_weight: dict[str, dict[str, float]], metric: str = "recall@10") -> float:
    """The fusion weight with the best `metric` (then NDCG@10; ties: the smaller weight)."""
    candidates = [(0.0, by_weight["generative"])] + [
        (float(k[2:]), v) for k, v in by_weight.items() if k.startswith("w=")
    ]
    best = max(candidates, key=lambda kv: (kv[1][metric], kv[1].get("ndcg@10", 0.0), -kv[0]))
    return best[0]


def evaluate(
    rec: Any,
    params: Any,
    dataset: Any,
    split: str,
    users: np.ndarray | None = None,
    num_beams: int = 20,
    batch_size: int = 32,
    weight: float | None = None,
    ks: Sequence[int] = eval_metrics.DEFAULT_KS,
    with_rows: bool = False,
):
    """Hybrid Recall/NDCG@K on a split (all users, or `users`), history items included.

    With `weight` None the fusion weight is chosen on these users (validation); else it is
    the given one (test, with the weight validation chose). The headline keys are the hybrid
    ranking's; `generative`, `dense` and `by_weight` hold the parts for comparison. With
    `with_rows` also per-user rows (user, target, ranked items, rank of the target)."""
    users = np.arange(dataset.num_users) if users is None else np.asarray(users)
    examples = [dataset.example(int(u), split, rec.history) for u in users]
    targets = np.array([e.target for e in examples], np.int64)
    scored = score(rec, params, [e.history for e in examples], targets, num_beams, batch_size,
                   progress=f"{split} retrieval (hybrid)")  # fmt: skip
    by_weight = metrics_by_weight(scored, FUSION_WEIGHTS, ks)
    chosen = best_weight(by_weight) if weight is None else float(weight)
    if chosen and f"w={chosen:g}" not in by_weight:
        by_weight[f"w={chosen:g}"] = eval_metrics.metrics_from_ranks(scored.ranks(chosen), ks)
    head = by_weight["generative"] if chosen == 0 else by_weight[f"w={chosen:g}"]
    metrics = {**head, "fusion_weight": chosen, "generative": by_weight["generative"],
               "dense": by_weight["dense"], "by_weight": by_weight, "num_users": len(users),
               "invalid_rate": 0.0}  # fmt: skip
    if not with_rows:
        return metrics
    ranked, _ = scored.reranked(chosen)
    ranks = scored.ranks(chosen)
    return metrics, eval_metrics.retrieval_rows(users, targets, ranked, ranks, max(ks))

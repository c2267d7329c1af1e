"""Ensembles of semantic-id recommenders at inference (seeds or tokenizations of one recipe).

Each member is a trained MODEL_DIR over the same items; its semantic ids may differ (another
seed builds another index), so members meet at the item level. Per query:

  candidates  the union of the members' beam items (each member's constrained search proposes
              its test beams' items; the ensemble stays generative: nothing outside a beam list
              is ranked);
  sum, w      score(i) = sum_m beam_m(i) + w * sum_m dense_m(i): the members' beam
              log-probabilities plus, for members with a dense item head (`jaxrec.recipes.hybrid`),
              w times the head's log-probabilities, which every item has. An item outside member
              m's beams takes m's lowest beam score there (the search kept nothing better of it);
  rrf, k      reciprocal-rank fusion over the members' own rankings (hybrid members re-scored
              with their own weight): score(i) = sum_m 1 / (k + rank_m(i)), 0 where m did not
              list i.

The variant (`sum` with w from `hybrid.FUSION_WEIGHTS`, or `rrf` with k from `RRF_KS`) is
chosen on validation; test reports the chosen one and each member alone. The fusions are pure
functions of `[n, ...]` arrays; `score_members` runs the models.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxrec.inference import metrics as eval_metrics
from jaxrec.inference import retrieval
from jaxrec.recipes import hybrid

RRF_KS = (1, 5, 10, 20, 60)  # reciprocal-rank fusion constants tried on validation


@dataclasses.dataclass
class MemberScores:
    """One member's search over n queries."""

    items: np.ndarray  # [n, B] beam items, beam order, -1 padded
    beam: np.ndarray  # [n, B] log p of each item's semantic-id sequence, -inf padded
    own: np.ndarray  # [n, B] item ids of the member's own ranking (hybrid: re-scored), -1 padded


def candidate_union(items: Sequence[np.ndarray]) -> np.ndarray:
    """[n, U] the members' items per query, first occurrence first (member order, then beam
    order), -1 padded; U = the sum of the members' list lengths."""
    stacked = np.concatenate([np.asarray(i) for i in items], axis=1)  # [n, U]
    same = stacked[:, :, None] == stacked[:, None, :]  # [n, U, U]
    seen_before = np.tril(same, -1).any(axis=2)  # [n, U]
    keep = (stacked >= 0) & ~seen_before
    order = np.argsort(~keep, axis=1, kind="stable")  # kept positions first, in order
    return np.where(np.take_along_axis(keep, order, 1), np.take_along_axis(stacked, order, 1), -1)


def beam_at(items: np.ndarray, beam: np.ndarray, union: np.ndarray) -> np.ndarray:
    """[n, U] a member's beam log-probability of each union item; where its beams do not hold
    the item, its lowest beam score of that query (-inf where it has none, and at padding)."""
    match = union[:, :, None] == items[:, None, :]  # [n, U, B]
    match &= (items >= 0)[:, None, :]
    value = np.where(match, beam[:, None, :], -np.inf).max(axis=2)  # [n, U]
    finite = np.where(np.isfinite(beam), beam, np.inf)
    floor = finite.min(axis=1, keepdims=True)  # [n, 1]
    floor = np.where(np.isfinite(floor), floor, -np.inf)
    out = np.where(match.any(axis=2), value, floor)
    return np.where(union >= 0, out, -np.inf)


def rank_at(ranked: np.ndarray, union: np.ndarray) -> np.ndarray:
    """[n, U] 1-based position of each union item in a member's ranking (0 where absent)."""
    match = (union[:, :, None] == ranked[:, None, :]) & (ranked >= 0)[:, None, :]  # [n, U, L]
    return np.where(match.any(axis=2), match.argmax(axis=2) + 1, 0)


def sum_scores(beams: Sequence[np.ndarray], dense: Sequence[np.ndarray] | None, weight: float,
               union: np.ndarray) -> np.ndarray:  # fmt: skip
    """[n, U] sum_m beam_m + weight * sum_m dense_m over the union (-inf at padding)."""
    total = np.sum(beams, axis=0)
    if weight:
        if dense is None:
            raise ValueError("a dense weight needs every member's dense head")
        total = total + weight * np.sum(dense, axis=0)
    return np.where(union >= 0, total, -np.inf)


def rrf_scores(ranks: Sequence[np.ndarray], k: float, union: np.ndarray) -> np.ndarray:
    """[n, U] sum_m 1 / (k + rank_m) over the members that listed the item (-inf at padding)."""
    ranks = np.asarray(ranks, np.float64)  # [M, n, U]
    total = np.where(ranks > 0, 1.0 / (k + ranks), 0.0).sum(axis=0)
    return np.where(union >= 0, total, -np.inf)


def ranked(union: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """[n, U] the union's items best first (ties: union order), -1 padded at the end."""
    order = np.argsort(-scores, axis=1, kind="stable")
    return np.take_along_axis(union, order, 1)


@dataclasses.dataclass
class Fusion:
    """What every variant needs for n queries (`ranking` reads it: no further inference)."""

    union: np.ndarray  # [n, U]
    beams: list[np.ndarray]  # M x [n, U] beam_at
    ranks: list[np.ndarray]  # M x [n, U] rank_at of each member's own ranking
    dense: list[np.ndarray] | None  # M x [n, U] dense log p, None unless every member has a head

    def variants(self) -> list[str]:
        weights = hybrid.FUSION_WEIGHTS if self.dense is not None else (0.0,)
        return [f"sum,w={w:g}" for w in weights] + [f"rrf,k={k:g}" for k in RRF_KS]

    def scores(self, variant: str) -> np.ndarray:
        """[n, U] the union's scores under `variant` ('sum,w=0.5', 'rrf,k=60'), -inf at
        padding."""
        kind, _, value = variant.partition(",")
        name, _, number = value.partition("=")
        if kind == "sum" and name == "w":
            return sum_scores(self.beams, self.dense, float(number), self.union)
        if kind == "rrf" and name == "k":
            return rrf_scores(self.ranks, float(number), self.union)
        raise ValueError(f"unknown ensemble variant {variant!r} (want 'sum,w=W' or 'rrf,k=K')")

    def ranking(self, variant: str) -> np.ndarray:
        """[n, U] the ensemble's ranking under `variant`, best first, -1 padded."""
        return ranked(self.union, self.scores(variant))


def fusion(members: Sequence[MemberScores], dense_at_union: Sequence[np.ndarray] | None,
           union: np.ndarray) -> Fusion:  # fmt: skip
    """The `Fusion` of members' searches; `dense_at_union` M x [n, U] (or None)."""
    return Fusion(
        union=union,
        beams=[beam_at(m.items, m.beam, union) for m in members],
        ranks=[rank_at(m.own, union) for m in members],
        dense=None if dense_at_union is None else list(dense_at_union),
    )


def metrics_by_variant(fused: Fusion, targets: np.ndarray,
                       ks: Sequence[int] = eval_metrics.DEFAULT_KS) -> dict[str, dict]:  # fmt: skip
    """Recall/NDCG@K of every variant."""
    return {v: eval_metrics.metrics_from_ranks(eval_metrics.target_ranks(fused.ranking(v),
                                                                         targets), ks)
            for v in fused.variants()}  # fmt: skip


TABLE_METRICS = ("recall@5", "ndcg@5", "recall@10", "ndcg@10", "recall@20", "ndcg@20")


def format_table(result: dict[str, Any], names: Sequence[str]) -> str:
    """The test table of an `evaluate` result: each member (named by `names`), then the
    ensemble under the chosen variant."""
    rows = [
        (f"member {i + 1} ({n})", m)
        for i, (n, m) in enumerate(zip(names, result["members_test"], strict=True))
    ]
    rows.append((f"ensemble ({result['variant']})", result["test"]))
    lines = [f"{'test':<28s}" + "".join(f"{k:>11s}" for k in TABLE_METRICS)]
    lines += [f"{n[:28]:<28s}" + "".join(f"{m[k]:>11.4f}" for k in TABLE_METRICS)
              for n, m in rows]  # fmt: skip
    return "\n".join(lines)


def best_variant(by_variant: dict[str, dict], metric: str = "recall@10") -> str:
    """The variant with the best `metric`, then NDCG@10 (ties: the first listed)."""
    names = list(by_variant)
    return max(names, key=lambda v: (by_variant[v][metric], by_variant[v].get("ndcg@10", 0.0),
                                     -names.index(v)))  # fmt: skip


# --- running the members -------------------------------------------------------------------


def beams_of(sid: Any, histories: Sequence[Sequence[int]], num_beams: int, batch_size: int,
             progress: str | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """A member's constrained search, all `num_beams` kept: (items [n, B], log p [n, B])."""
    batches = sid.rec.ranked_batches(sid.params, histories, num_beams, batch_size, num_beams,
                                     progress)  # fmt: skip
    items, beam, _ = retrieval.rank_all(batches, len(histories), num_beams)
    return items, beam


def dense_at(sid: Any, histories: Sequence[Sequence[int]], union: np.ndarray,
             batch_size: int) -> np.ndarray:  # fmt: skip
    """[n, U] a hybrid member's dense log-probability of each union item (-inf at padding)."""
    out = np.full(union.shape, -np.inf, np.float32)
    for start in range(0, len(histories), batch_size):
        stop = min(start + batch_size, len(histories))
        logp = hybrid.dense_log_probs(sid.rec, sid.params,
                                      sid.rec.encoder_inputs(histories[start:stop]))  # fmt: skip
        u = union[start:stop]
        out[start:stop] = np.where(u >= 0, np.take_along_axis(logp, np.maximum(u, 0), 1), -np.inf)
    return out


def own_ranking(items: np.ndarray, beam: np.ndarray, union: np.ndarray,
                dense: np.ndarray | None, weight: float | None) -> np.ndarray:  # fmt: skip
    """[n, B] a member's own ranking of its beams: beam order, or for a hybrid member (its
    `dense` [n, U] at the union, which holds its beams) re-scored by `hybrid.rescored`."""
    if weight is None:
        return items
    match = union[:, None, :] == items[:, :, None]  # [n, B, U]
    at_items = np.where(match, dense[:, None, :], -np.inf).max(axis=2)  # [n, B]
    return hybrid.rescored(items, beam, at_items, weight)[0]


def member_beams(sids: Sequence[Any], num_beams: int | None, at_least: int = 0) -> list[int]:
    """Beams each member proposes: `num_beams` for all, or (None) each member's own, the
    test beams its MODEL_DIR records; at least `at_least`."""
    return [max(num_beams or int(s.num_beams), at_least) for s in sids]


def score_members(
    sids: Sequence[Any],
    histories: Sequence[Sequence[int]],
    num_beams: Sequence[int],
    batch_size: int,
    what: str = "",
) -> tuple[list[MemberScores], Fusion]:
    """Runs every member over `histories` (member m proposes `num_beams[m]` items): each
    one's search, then the dense heads once over the union of the beams (`[n, U]`). Returns
    (each member's scores, their `Fusion`)."""
    found = [beams_of(s, histories, b, batch_size,
                      progress=f"{what} member {i + 1}/{len(sids)}")
             for i, (s, b) in enumerate(zip(sids, num_beams, strict=True))]  # fmt: skip
    union = candidate_union([items for items, _ in found])
    dense = [None if s.fusion_weight is None else dense_at(s, histories, union, batch_size)
             for s in sids]  # fmt: skip
    members = [MemberScores(items, beam, own_ranking(items, beam, union, d, s.fusion_weight))
               for (items, beam), d, s in zip(found, dense, sids, strict=True)]  # fmt: skip
    with_heads = None if any(d is None for d in dense) else dense
    return members, fusion(members, with_heads, union)


def history_cap(sids: Sequence[Any]) -> int:
    """The longest history any member reads (0: the whole history); each member keeps its
    own most recent items."""
    caps = [int(s.rec.history) for s in sids]
    return 0 if 0 in caps else max(caps)


def score_split(sids, dataset, split, users, num_beams, batch_size):
    """(members' scores, their `Fusion`, targets [n]) of `users` on a split; `num_beams`: for
    every member, or None (each member's own)."""
    cap = history_cap(sids)
    examples = [dataset.example(int(u), split, cap) for u in users]
    targets = np.array([e.target for e in examples], np.int64)
    members, fused = score_members(sids, [e.history for e in examples],
                                   member_beams(sids, num_beams), batch_size,
                                   what=split)  # fmt: skip
    return members, fused, targets


def evaluate(
    sids: Sequence[Any],
    dataset: Any,
    num_beams: int | None = None,
    batch_size: int = 32,
    validation_users: np.ndarray | None = None,
    ks: Sequence[int] = eval_metrics.DEFAULT_KS,
) -> dict[str, Any]:
    """Chooses the variant on validation (`validation_users`, default all), then reports test
    (all users, history included): the ensemble under that variant and each member alone.
    Each member proposes `num_beams` items, or (None) its own test beams."""
    everyone = np.arange(dataset.num_users)
    val_users = everyone if validation_users is None else np.asarray(validation_users)
    _, fused, targets = score_split(sids, dataset, "validation", val_users, num_beams, batch_size)
    validation = metrics_by_variant(fused, targets, ks)
    chosen = best_variant(validation)
    members, fused, targets = score_split(sids, dataset, "test", everyone, num_beams, batch_size)
    test = metrics_by_variant(fused, targets, ks)
    alone = [eval_metrics.metrics_from_ranks(eval_metrics.target_ranks(m.own, targets), ks)
             for m in members]  # fmt: skip
    return {"variant": chosen, "test": test[chosen], "members_test": alone,
            "validation_by_variant": validation, "test_by_variant": test,
            "validation_users": len(val_users), "test_users": len(everyone),
            "num_beams": member_beams(sids, num_beams),
            "candidates": int(fused.union.shape[1])}  # fmt: skip

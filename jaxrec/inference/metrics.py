"""Recommendation metrics as pure numpy functions over ranked item lists.

Full ranking (generative retrieval over the whole catalogue), RecBole's definitions under
leave-one-out (one relevant item per user):

    rank      1-based position of the target in the user's ranked list (0 = not listed)
    Recall@K  = HR@K = mean_u [rank_u <= K]
    NDCG@K    = mean_u [rank_u <= K] / log2(rank_u + 1)        (IDCG = 1: one relevant item)

A target missing from a (short) list counts as a miss for every K, so lists shorter than K (e.g.
20 beams, K = 20) are not padded with lucky guesses. Candidate ranking uses the same formulas
over the fixed 100 candidates (the target + 99 sampled negatives). Rating prediction reports
RMSE/MAE over the outputs that parse as a rating in [1, 5], and counts the others.

When prompts come in several templates, each template is evaluated on every user and the
headline figure is the mean over templates (`mean_over_templates`); the per-template figures
are reported beside it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import numpy as np

DEFAULT_KS = (1, 5, 10, 20)


def target_ranks(ranked: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based rank of each target in its row of `ranked` ([users, L], -1 padded); 0 if absent.

    Args:
      ranked: [users, list_length] item ids, best first, padded with -1.
      targets: [users] item ids.

    Returns:
      [users] int64 ranks.
    """
    ranked, targets = np.asarray(ranked), np.asarray(targets)
    if ranked.ndim != 2 or targets.shape != (ranked.shape[0],):
        raise ValueError(f"ranked must be [users, L] and targets [users]; got "
                         f"{ranked.shape} and {targets.shape}")  # fmt: skip
    hit = ranked == targets[:, None]  # [users, L]
    first = hit.argmax(axis=1)
    return np.where(hit.any(axis=1), first + 1, 0).astype(np.int64)


def padded_lists(lists: Sequence[Sequence[int]], width: int) -> np.ndarray:
    """[users, width] item ids from ranked lists of any lengths: each cut to `width`, padded
    with -1 (the layout `target_ranks` reads)."""
    out = np.full((len(lists), width), -1, np.int64)
    for u, items in enumerate(lists):
        items = list(items)[:width]
        out[u, : len(items)] = items
    return out


def metrics_from_ranks(ranks: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """`recall@K` and `ndcg@K` (see module docstring) from 1-based ranks (0 = miss)."""
    ranks = np.asarray(ranks)
    if ranks.size == 0:
        raise ValueError("no users to evaluate")
    found = ranks > 0
    gain = np.zeros(ranks.shape, np.float64)
    gain[found] = 1.0 / np.log2(ranks[found] + 1.0)
    out: dict[str, float] = {}
    for k in ks:
        within = found & (ranks <= k)
        out[f"recall@{k}"] = float(within.mean())
        out[f"ndcg@{k}"] = float(np.where(within, gain, 0.0).mean())
    return out


def retrieval_metrics(
    ranked: np.ndarray, targets: np.ndarray, ks: Sequence[int] = DEFAULT_KS
) -> dict[str, float]:
    """Full-ranking Recall@K and NDCG@K of ranked item lists against leave-one-out targets."""
    return metrics_from_ranks(target_ranks(ranked, targets), ks)


def retrieval_rows(users, targets: np.ndarray, ranked: np.ndarray, ranks: np.ndarray,
                   width: int | None = None) -> list[dict]:  # fmt: skip
    """Per-user rows of a retrieval evaluation (what `jaxrec eval --out` writes): user, target,
    the ranked items (the first `width`, padding dropped) and the target's rank (None: missed)."""
    return [{"user": int(u), "target": int(t), "items": [int(i) for i in it[:width] if i >= 0],
             "rank": int(r) or None}
            for u, t, it, r in zip(users, targets, ranked, ranks, strict=True)]  # fmt: skip


def invalid_rate(invalid: np.ndarray, returned: np.ndarray | None = None) -> float:
    """Fraction of returned sequences that are not catalogue items.

    Args:
      invalid: [users, num_returns] bool, from `jaxrec.inference.decoding.sequences_to_items`.
      returned: [users, num_returns] bool, which slots hold a sequence (default: all).
    """
    invalid = np.asarray(invalid, bool)
    returned = np.ones_like(invalid) if returned is None else np.asarray(returned, bool)
    n = int(returned.sum())
    return float((invalid & returned).sum() / n) if n else 0.0


def candidate_ranks(scores: np.ndarray, target_column: int = 0) -> np.ndarray:
    """1-based rank of the target among fixed candidates, from per-candidate scores.

    Ties count against the target (pessimistic), so a model giving every candidate the same
    score ranks the target last, not first.

    Args:
      scores: [users, num_candidates] higher = better (e.g. sequence log-probs).
      target_column: column of the target (the others are the negatives).
    """
    scores = np.asarray(scores, np.float64)
    target = scores[:, target_column : target_column + 1]
    others = np.delete(scores, target_column, axis=1)
    return 1 + (others >= target).sum(axis=1)


def candidate_metrics(
    scores: np.ndarray, target_column: int = 0, ks: Sequence[int] = DEFAULT_KS
) -> dict[str, float]:
    """HR@K and NDCG@K over fixed candidates (`hr@K` = `recall@K` under leave-one-out)."""
    out = metrics_from_ranks(candidate_ranks(scores, target_column), ks)
    return {k.replace("recall@", "hr@"): v for k, v in out.items()}


def ranked_list_ranks(
    ranked: np.ndarray, targets: np.ndarray, candidates: np.ndarray
) -> np.ndarray:
    """Target ranks when a model outputs a ranked list that should be drawn from candidates.

    Items outside the user's candidate set are skipped (they cannot be relevant), and
    candidates the model did not list are ranked after the listed ones: the target then counts
    as a miss for every K below the list length, like in full ranking.
    """
    out = np.zeros(len(targets), np.int64)
    for u, (row, t) in enumerate(zip(np.asarray(ranked), np.asarray(targets), strict=True)):
        allowed = set(np.asarray(candidates[u]).tolist())
        kept = [i for i in dict.fromkeys(row.tolist()) if i in allowed]
        out[u] = kept.index(t) + 1 if t in kept else 0
    return out


_RATING = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?)\s*(?:stars?)?\s*\.?\s*$", re.IGNORECASE)


def parse_rating(text: str) -> float | None:
    """A rating in [1, 5] from a model's output ("4", "4.0", "4 stars"); None otherwise."""
    m = _RATING.match(text)
    if not m:
        return None
    value = float(m.group(1))
    return value if 1.0 <= value <= 5.0 else None


def rating_metrics(outputs: Sequence[str], targets: Sequence[float]) -> dict[str, float]:
    """RMSE and MAE over parsable outputs; `unparsable_ratings` counts the rest.

    Returns NaN errors when no output parses (rather than a misleading 0).
    """
    if len(outputs) != len(targets):
        raise ValueError(f"{len(outputs)} outputs for {len(targets)} targets")
    parsed = [parse_rating(o) for o in outputs]
    pairs = np.array([(p, t) for p, t in zip(parsed, targets, strict=True) if p is not None])
    bad = sum(p is None for p in parsed)
    if len(pairs) == 0:
        rmse = mae = math.nan
    else:
        err = pairs[:, 0] - pairs[:, 1]
        rmse, mae = float(np.sqrt(np.mean(err**2))), float(np.mean(np.abs(err)))
    return {
        "rmse": rmse,
        "mae": mae,
        "num_ratings": len(outputs),
        "unparsable_ratings": int(bad),
        "unparsable_rate": bad / len(outputs) if outputs else 0.0,
    }


def mean_over_templates(per_template: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Metric-wise mean over templates (each template evaluated on all users)."""
    if not per_template:
        raise ValueError("no templates to average")
    keys = set.intersection(*(set(m) for m in per_template.values()))
    return {
        k: float(np.mean([m[k] for m in per_template.values()]))
        for k in sorted(keys)
        if all(isinstance(m[k], int | float) for m in per_template.values())
    }

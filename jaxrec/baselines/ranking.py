"""Full-ranking evaluation for score-based baselines: scores over all items → target ranks →
Recall@K / NDCG@K.

Conventions (RecBole's): ranks start at 1; Recall@K = 1[rank <= K] per user (one target);
NDCG@K = 1 / log2(rank + 1) when rank <= K, else 0; metrics are means over users.

Ties are broken by item id (the lower id ranks first), i.e. the rank is the target's position
in a stable descending sort of the scores, so a popularity list with many equal counts gets a
deterministic, non-optimistic rank.

Two ranking conventions are reportable: the target is ranked among ALL items (the default, as
generative retrieval over the whole catalogue does), or the user's history items (other than
the target itself) are excluded from the ranking (as RecBole's full-sort evaluation does).

The metric formulas are `jaxrec.inference.metrics`'s (shared with `jaxrec eval`); this
module only adds score-based ranking, tie handling and history exclusion.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxrec.inference import metrics as eval_metrics

DEFAULT_KS = (1, 5, 10, 20)


def history_mask(
    histories: Sequence[np.ndarray], targets: np.ndarray, num_items: int
) -> np.ndarray:
    """[batch, num_items] bool: items to exclude from the ranking (history minus the target)."""
    mask = np.zeros((len(histories), num_items), dtype=bool)
    for b, hist in enumerate(histories):
        mask[b, np.asarray(hist, dtype=np.int64)] = True
    mask[np.arange(len(histories)), targets] = False
    return mask


def target_ranks(
    scores: np.ndarray, targets: np.ndarray, exclude: np.ndarray | None = None
) -> np.ndarray:
    """1-based rank of each target among all items, ties broken by lower item id first.

    Args:
      scores: [batch, num_items] float scores (higher is better).
      targets: [batch] int target item ids.
      exclude: optional [batch, num_items] bool; excluded items never outrank the target.

    Returns:
      [batch] int64 ranks in 1..num_items.
    """
    scores = np.asarray(scores)
    nan_users = np.isnan(scores).any(axis=1)  # NaN compares false: its target would rank first
    if nan_users.any():
        raise FloatingPointError(f"NaN scores for {int(nan_users.sum())} user(s)")
    targets = np.asarray(targets, dtype=np.int64)
    batch, num_items = scores.shape
    target_scores = scores[np.arange(batch), targets][:, None]  # [batch, 1]
    ahead = (scores > target_scores) | (
        (scores == target_scores) & (np.arange(num_items)[None, :] < targets[:, None])
    )
    if exclude is not None:
        ahead &= ~exclude
    return 1 + ahead.sum(axis=1).astype(np.int64)


def metrics_from_ranks(ranks: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Mean Recall@K and NDCG@K over users (`jaxrec.inference.metrics`'s definitions) and
    `num_users`."""
    ranks = np.asarray(ranks)
    if ranks.size == 0 or ranks.min() < 1:
        raise ValueError("full ranking gives every user a rank >= 1")
    return {**eval_metrics.metrics_from_ranks(ranks, ks), "num_users": int(ranks.size)}

"""How many places of a recommendation list the user's own history takes, and what the list
gives with those items left out.

Under the all-items convention (the one the tables here use) a model may rank an item the
user has already interacted with. Where no leave-one-out target is in its user's earlier
history (true of every user of the prepared Amazon datasets here; `summarise` counts the
exceptions), each such place is a certain miss. SASRec-CE's tied output embedding, for one,
puts the item just read first for most users. This module measures it on any written list
(`jaxrec recommend`, `jaxrec baseline sasrec --recommendations`, the per-user rows `jaxrec
eval` writes) and reads the same list with the history items dropped,
the RecBole convention, so two models can be compared under both without ranking again:

  first_in_history          share of users whose first item is a history item
  history_in_top_k          mean number of history items among the first K
  as_ranked                 Recall@K / NDCG@K of the list as written
  history_dropped           the same after dropping history items and reading the first K of
                            what is left; exact for a user whose list keeps K items, a lower
                            bound otherwise (`short_after_drop` counts those users)

All functions are pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from jaxrec.data.dataset import Dataset
from jaxrec.inference.metrics import metrics_from_ranks, padded_lists, target_ranks


def histories(ds: Dataset, split: str) -> list[np.ndarray]:
    """Every user's whole history before the split's target (not capped), in user order."""
    return [np.asarray(ds.example(u, split, history_cap=0).history, np.int64)
            for u in range(ds.num_users)]  # fmt: skip


def summarise(
    lists: Mapping[int, Sequence[int]] | Sequence[Sequence[int]],
    history: Sequence[np.ndarray],
    targets: np.ndarray,
    top_k: int = 10,
) -> dict:
    """The history's share of each list and the lists' metrics with and without it.

    Args:
      lists: per user (index or position), item ids best first.
      history: [users] arrays of the items before each target.
      targets: [users] the split's targets.
      top_k: K of the metrics and of the share.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    n = len(history)
    if len(targets) != n or len(lists) != n:
        raise ValueError(f"{len(lists)} lists, {n} histories and {len(targets)} targets")
    rows = [list(lists[u]) for u in range(n)]
    seen = [set(int(i) for i in h) for h in history]
    in_hist = [[i in s for i in row] for row, s in zip(rows, seen, strict=True)]
    kept = [[i for i, h in zip(row, flags, strict=True) if not h]
            for row, flags in zip(rows, in_hist, strict=True)]  # fmt: skip
    ks = (top_k,)
    k = f"@{top_k}"
    as_ranked = metrics_from_ranks(target_ranks(padded_lists(rows, top_k), targets), ks)
    dropped = metrics_from_ranks(target_ranks(padded_lists(kept, top_k), targets), ks)
    return {
        "users": n,
        "top_k": top_k,
        "list_length_min": min(len(r) for r in rows),
        "targets_in_history": int(sum(int(t) in s for t, s in zip(targets, seen, strict=True))),
        "first_in_history": float(np.mean([bool(f) and f[0] for f in in_hist])),
        "any_history_in_top_k": float(np.mean([any(f[:top_k]) for f in in_hist])),
        "history_in_top_k": float(np.mean([sum(f[:top_k]) for f in in_hist])),
        "as_ranked": {m: as_ranked[m + k] for m in ("recall", "ndcg")},
        "history_dropped": {m: dropped[m + k] for m in ("recall", "ndcg")},
        "short_after_drop": int(sum(len(r) < top_k for r in kept)),
    }


def format_report(report: dict, split: str) -> str:
    r, k = report, report["top_k"]
    a, d = r["as_ranked"], r["history_dropped"]
    lines = [
        f"{split}: {r['users']} users, lists of {r['list_length_min']}+ items; "
        f"{r['targets_in_history']} targets are in their user's history",
        f"  first item in the history       {r['first_in_history']:.1%} of users",
        f"  history items in the first {k:<3d}  {r['history_in_top_k']:.3f} per user "
        f"(some: {r['any_history_in_top_k']:.1%} of users)",
        f"  as ranked          Recall@{k} {a['recall']:.4f}  NDCG@{k} {a['ndcg']:.4f}",
        f"  history dropped    Recall@{k} {d['recall']:.4f}  NDCG@{k} {d['ndcg']:.4f}",
    ]
    if r["short_after_drop"]:
        lines.append(f"  ({r['short_after_drop']} users keep fewer than {k} items after the "
                     "drop: the dropped figures are a lower bound)")  # fmt: skip
    return "\n".join(lines)

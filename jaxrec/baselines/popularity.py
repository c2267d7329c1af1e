"""Most-popular baseline: every user gets the items with the most training interactions.

Counts come from the training parts only (`Dataset.train_item_counts()`: all but the last two
items of each user), so neither validation nor test targets leak into the ranking.
"""

from __future__ import annotations

import numpy as np

from jaxrec.baselines import ranking
from jaxrec.data.dataset import Dataset


class Popularity:
    """Ranks items by training-interaction count (ties: lower item id first)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        self.counts = dataset.train_item_counts()  # [num_items]
        # Stable descending sort: equal counts keep id order, matching `ranking.target_ranks`.
        self.order = np.argsort(-self.counts, kind="stable")  # [num_items]

    def scores(self, users: np.ndarray) -> np.ndarray:
        """[len(users), num_items] float32 scores (the same row for every user)."""
        row = self.counts.astype(np.float32)
        return np.broadcast_to(row, (len(users), row.size))

    def recommend(self, user: int, k: int, split: str = "test", exclude_history: bool = False):
        """Top-k item ids for `user` when predicting the `split` target.

        With `exclude_history`, items in the user's history before that target are skipped.
        """
        if not exclude_history:
            return self.order[:k].tolist()
        seen = set(_history(self.dataset, user, split).tolist())
        return [int(i) for i in self.order if int(i) not in seen][:k]


def _history(ds: Dataset, user: int, split: str) -> np.ndarray:
    end = {"validation": 2, "test": 1}[split]
    return ds.sequences[user][:-end]


def evaluate(
    dataset: Dataset, split: str = "test", exclude_history: bool = False, batch_size: int = 1024
) -> dict[str, float]:
    """Full-ranking metrics of the popularity baseline on `split` (all users)."""
    model = Popularity(dataset)
    targets = dataset.targets(split)
    ranks = []
    for start in range(0, dataset.num_users, batch_size):
        users = np.arange(start, min(start + batch_size, dataset.num_users))
        exclude = None
        if exclude_history:
            hists = [_history(dataset, int(u), split) for u in users]
            exclude = ranking.history_mask(hists, targets[users], dataset.num_items)
        ranks.append(ranking.target_ranks(model.scores(users), targets[users], exclude))
    return ranking.metrics_from_ranks(np.concatenate(ranks))

"""The canonical dataset: users' chronological item sequences, the item table, ratings,
fixed ranking negatives and split metadata.

Item ids and user ids are dense 0-based integers. A user's sequence is in chronological order
(ties kept in file order). The split is leave-one-out, the convention of P5, S3-Rec, TIGER and
LC-Rec: test target = last item, validation target = second-to-last, training uses the items
before those.

    seq_u = [i_0, i_1, ..., i_{n-3}, i_{n-2}, i_{n-1}]
             \\______ train ______/   valid     test

Every user has at least 3 interactions (enforced on construction).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

SPLITS = ("train", "validation", "test")
DEFAULT_HISTORY_CAP = 20
MIN_SEQUENCE_LENGTH = 3


class DataError(ValueError):
    """Bad input data: the message names the file, the line or record and the problem."""


def item_map_fingerprint(source_ids: Sequence[str]) -> str:
    """Fingerprint of an item-id mapping: the source item id of each dense id, in order."""
    h = hashlib.sha256()
    for sid in source_ids:
        h.update(sid.encode("utf-8") + b"\0")
    return "sha256:" + h.hexdigest()


@dataclasses.dataclass(frozen=True)
class Item:
    """One catalogue item. Text fields are empty strings when the source has none."""

    original_id: str
    title: str = ""
    brand: str = ""
    categories: tuple[str, ...] = ()
    description: str = ""
    price: float | None = None
    attributes: tuple[int, ...] = ()

    def text(self) -> str:
        """Title, brand, categories and description as one string (for embeddings, MLM)."""
        parts = [self.title, self.brand, ", ".join(self.categories), self.description]
        return ". ".join(p for p in parts if p)


@dataclasses.dataclass(frozen=True)
class Example:
    """One leave-one-out example: a (capped) history and the next item.

    `ratings` is aligned with `history` (NaN where unknown) and `target_rating` likewise;
    both are None when the dataset has no ratings.
    """

    user: int
    history: tuple[int, ...]
    target: int
    ratings: tuple[float, ...] | None = None
    target_rating: float | None = None


@dataclasses.dataclass
class Dataset:
    """A prepared recommendation dataset (see module docstring for the split).

    Attributes:
      name: short name, e.g. "Beauty"; used in file names and task names.
      users: original user id of each dense user id.
      sequences: per user, int32 item ids in chronological order.
      items: the item table; `items[i]` describes item id i.
      ratings: per user, float32 ratings aligned with `sequences` (NaN where unknown), or None.
      timestamps: per user, int64 unix times aligned with `sequences`, or None.
      negatives: [num_users, num_negatives] int32 fixed ranking negatives (items the user never
        interacted with), or None.
      metadata: provenance, options used, filter counts, id-leakage report.
    """

    name: str
    users: list[str]
    sequences: list[np.ndarray]
    items: list[Item]
    ratings: list[np.ndarray] | None = None
    timestamps: list[np.ndarray] | None = None
    negatives: np.ndarray | None = None
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.sequences = [np.asarray(s, dtype=np.int32) for s in self.sequences]
        if len(self.users) != len(self.sequences):
            raise DataError(
                f"dataset {self.name!r}: {len(self.users)} users but "
                f"{len(self.sequences)} sequences"
            )
        n_items = len(self.items)
        for u, seq in enumerate(self.sequences):
            if len(seq) < MIN_SEQUENCE_LENGTH:
                raise DataError(
                    f"dataset {self.name!r}: user {self.users[u]!r} has {len(seq)} interactions; "
                    f"leave-one-out needs at least {MIN_SEQUENCE_LENGTH}"
                )
            if len(seq) and (seq.min() < 0 or seq.max() >= n_items):
                raise DataError(
                    f"dataset {self.name!r}: user {self.users[u]!r} has an item id outside "
                    f"[0, {n_items})"
                )
        for field in ("ratings", "timestamps"):
            values = getattr(self, field)
            if values is None:
                continue
            dtype = np.float32 if field == "ratings" else np.int64
            values = [np.asarray(v, dtype=dtype) for v in values]
            setattr(self, field, values)
            for u, (v, s) in enumerate(zip(values, self.sequences, strict=True)):
                if len(v) != len(s):
                    raise DataError(
                        f"dataset {self.name!r}: user {self.users[u]!r} has {len(s)} items "
                        f"but {len(v)} {field}"
                    )
        if self.negatives is not None:
            self.negatives = np.asarray(self.negatives, dtype=np.int32)

    # -- sizes -------------------------------------------------------------------------------
    @property
    def num_users(self) -> int:
        return len(self.sequences)

    @property
    def num_items(self) -> int:
        return len(self.items)

    @property
    def num_interactions(self) -> int:
        return int(sum(len(s) for s in self.sequences))

    def item_map_fingerprint(self) -> str:
        """Fingerprint of the dense id -> source item id mapping (`Item.original_id`)."""
        return item_map_fingerprint([it.original_id for it in self.items])

    @property
    def has_ratings(self) -> bool:
        return self.ratings is not None and any(np.isfinite(r).any() for r in self.ratings)

    @property
    def has_text(self) -> bool:
        return any(it.title for it in self.items)

    # -- leave-one-out split -----------------------------------------------------------------
    def train_sequence(self, user: int) -> np.ndarray:
        """Items the model may train on for `user`: all but the last two."""
        return self.sequences[user][:-2]

    def train_ratings(self, user: int) -> np.ndarray | None:
        return None if self.ratings is None else self.ratings[user][:-2]

    def example(self, user: int, split: str, history_cap: int = DEFAULT_HISTORY_CAP) -> Example:
        """The validation or test example of `user` (history capped to the last items)."""
        if split == "validation":
            end = len(self.sequences[user]) - 2
        elif split == "test":
            end = len(self.sequences[user]) - 1
        else:
            raise ValueError(f"split must be 'validation' or 'test', got {split!r}")
        return self._example_at(user, end, history_cap)

    def _example_at(self, user: int, end: int, history_cap: int) -> Example:
        seq = self.sequences[user]
        start = max(0, end - history_cap) if history_cap else 0
        ratings = target_rating = None
        if self.ratings is not None:
            r = self.ratings[user]
            ratings = tuple(float(x) for x in r[start:end])
            target_rating = float(r[end])
        return Example(
            user=user,
            history=tuple(int(x) for x in seq[start:end]),
            target=int(seq[end]),
            ratings=ratings,
            target_rating=target_rating,
        )

    def examples(self, split: str, history_cap: int = DEFAULT_HISTORY_CAP) -> Iterator[Example]:
        """All examples of a split, in user order.

        "train" yields one example per prefix of each user's training part (targets at
        positions 1 .. n-3), the usual way generative recommenders are trained; "validation" and
        "test" yield one example per user.
        """
        if split == "train":
            for u, seq in enumerate(self.sequences):
                for end in range(1, len(seq) - 2):
                    yield self._example_at(u, end, history_cap)
        else:
            for u in range(self.num_users):
                yield self.example(u, split, history_cap)

    def targets(self, split: str) -> np.ndarray:
        """[num_users] int32 leave-one-out targets of a split."""
        offset = {"validation": 2, "test": 1}[split]
        return np.array([s[-offset] for s in self.sequences], dtype=np.int32)

    def train_item_counts(self) -> np.ndarray:
        """[num_items] interaction counts over the training parts only (no leakage)."""
        counts = np.zeros(self.num_items, dtype=np.int64)
        for u in range(self.num_users):
            np.add.at(counts, self.train_sequence(u), 1)
        return counts

    # -- comparisons -------------------------------------------------------------------------
    def equals(self, other: Dataset) -> bool:
        """Exact equality of every field (arrays compared element-wise, NaN == NaN)."""

        def same_arrays(a: Sequence[np.ndarray] | None, b: Sequence[np.ndarray] | None) -> bool:
            if a is None or b is None:
                return a is None and b is None
            return len(a) == len(b) and all(
                x.dtype == y.dtype and np.array_equal(x, y, equal_nan=x.dtype.kind == "f")
                for x, y in zip(a, b, strict=True)
            )

        neg_same = (self.negatives is None and other.negatives is None) or (
            self.negatives is not None
            and other.negatives is not None
            and np.array_equal(self.negatives, other.negatives)
        )
        return (
            self.name == other.name
            and self.users == other.users
            and self.items == other.items
            and same_arrays(self.sequences, other.sequences)
            and same_arrays(self.ratings, other.ratings)
            and same_arrays(self.timestamps, other.timestamps)
            and neg_same
            and self.metadata == other.metadata
        )

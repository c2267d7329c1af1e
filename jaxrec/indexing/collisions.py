"""Making every item's token sequence unique, deterministically.

Two items with the same semantic id cannot be told apart by a generative recommender. After
training (and Sinkhorn) a few collisions remain; they are resolved here:

1. Within the last level: each group of colliding items keeps its best-placed item (lowest
   cost, then lowest id); every other member moves to the *free* last-level code under the same
   prefix with the lowest cost (with no costs, e.g. for an index loaded from a file: the free
   code numerically nearest to its current one, lower first). Groups are handled in sorted
   order of their code, members in ascending item id, so the result depends only on the input.
2. Only if some prefix has no free code left (more than K items share it), every item gets one
   extra level, TIGER's disambiguation token: 0, 1, 2, ... within each remaining group, in item
   id order (0 for items that never collided).

Title indexes (free text) get " (2)", " (3)", ... appended to repeated titles instead.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict

import numpy as np

from jaxrec.indexing.item_index import ItemIndex

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Resolution:
    """What `resolve_codes` did: `moved` items changed code; `extra_level`: a level was added."""

    colliding_before: int
    colliding_after: int
    moved: int
    extra_level: bool


def row_ids(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of a matrix [n, L]: (id of each row [n], count of each id), ids numbered
    in lexicographic order of the rows (as `np.unique(rows, axis=0)` orders them; other dtypes
    than integers, e.g. token strings, take that path).

    Rows become one mixed-radix int64 key when the ranges allow (a millionfold faster to sort
    than `np.unique`'s row view), else they are lexsorted column by column.
    """
    rows = np.asarray(rows)
    rows = rows.reshape(len(rows), -1)
    if not np.issubdtype(rows.dtype, np.integer):  # e.g. token strings: the general path
        _, ids, counts = np.unique(rows, axis=0, return_inverse=True, return_counts=True)
        return ids.reshape(-1), counts
    rows = rows.astype(np.int64)
    n, width = rows.shape
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    lo = rows.min(axis=0)
    radix = rows.max(axis=0) - lo + 1
    if np.sum(np.log2(radix.astype(np.float64))) < 62:
        keys = np.zeros(n, np.int64)
        for col in range(width):
            keys = keys * radix[col] + (rows[:, col] - lo[col])
        _, ids, counts = np.unique(keys, return_inverse=True, return_counts=True)
        return ids.reshape(-1), counts
    order = np.lexsort(rows.T[::-1])
    sorted_rows = rows[order]
    new = np.ones(n, bool)
    new[1:] = (sorted_rows[1:] != sorted_rows[:-1]).any(axis=1)
    ids = np.empty(n, np.int64)
    ids[order] = np.cumsum(new) - 1
    return ids, np.bincount(ids)


def count_colliding(codes: np.ndarray) -> int:
    """Items whose code row [L] equals an earlier item's row (all but one per group)."""
    return int(len(codes) - len(row_ids(codes)[1]))


def _groups(codes: np.ndarray) -> list[np.ndarray]:
    """Colliding groups (item ids ascending), in sorted order of their code rows."""
    inverse, counts = row_ids(codes)
    shared = counts > 1
    members = np.flatnonzero(shared[inverse])  # colliding items, ascending
    order = members[np.argsort(inverse[members], kind="stable")]  # grouped by code row
    return np.split(order, np.cumsum(counts[shared])[:-1]) if len(order) else []


def resolve_codes(
    codes: np.ndarray, num_codes: int, cost: np.ndarray | None = None
) -> tuple[np.ndarray, Resolution]:
    """Unique code rows for every item (see module docstring).

    Args:
      codes: [n, L] int code per item and level.
      num_codes: K, codes available at the last level.
      cost: optional [n, K] cost of each last-level code per item (RQ-VAE distances or negative
        Sinkhorn log-plan); lower is better.

    Returns:
      ([n, L] or [n, L + 1] codes, Resolution).
    """
    codes = np.array(codes, dtype=np.int64)
    n, levels = codes.shape
    before = count_colliding(codes)
    if before == 0:
        return codes.astype(np.int32), Resolution(0, 0, 0, False)
    groups = _groups(codes)
    # taken[j] = bool[K] last-level codes used under the j-th prefix that has a collision;
    # only those prefixes are tracked (a catalogue of millions has few of them).
    prefix_id, _ = row_ids(codes[:, :-1])  # [n]
    colliding = np.unique(prefix_id[[g[0] for g in groups]])
    rows = np.flatnonzero(np.isin(prefix_id, colliding))
    taken_all = np.zeros((len(colliding), num_codes), bool)
    taken_all[np.searchsorted(colliding, prefix_id[rows]), codes[rows, -1]] = True
    all_codes = np.arange(num_codes)
    moved = 0
    for group in groups:
        current = codes[group[0], -1]
        if cost is not None:
            # Stable sort: the lowest-cost member stays, ties broken by item id.
            group = group[np.argsort(cost[group, current], kind="stable")]
        taken = taken_all[np.searchsorted(colliding, prefix_id[group[0]])]  # a view
        for item in sorted(group[1:].tolist()):
            free = np.flatnonzero(~taken)
            if len(free) == 0:
                break
            if cost is not None:
                pick = free[np.argmin(cost[item, free])]
            else:
                pick = free[np.argmin(np.abs(all_codes[free] - current))]
            codes[item, -1] = pick
            taken[pick] = True
            moved += 1
    extra = count_colliding(codes) > 0
    if extra:
        extra_codes = np.zeros((n, 1), dtype=np.int64)
        for group in _groups(codes):
            extra_codes[group, 0] = np.arange(len(group))
        codes = np.concatenate([codes, extra_codes], axis=1)
    after = count_colliding(codes)
    return codes.astype(np.int32), Resolution(before, after, moved, extra)


def _resolve_titles(tokens: tuple[tuple[str, ...], ...]) -> tuple[tuple[str, ...], ...]:
    seen = {t for t in tokens}
    counts: dict[tuple[str, ...], int] = defaultdict(int)
    out = []
    for seq in tokens:
        counts[seq] += 1
        if counts[seq] == 1:
            out.append(seq)
            continue
        k = counts[seq]
        while (seq[0] + f" ({k})",) in seen:
            k += 1
        new = (seq[0] + f" ({k})",) + seq[1:]
        seen.add(new)
        out.append(new)
    return tuple(out)


def resolve_index(
    index: ItemIndex,
    cost: np.ndarray | None = None,
    num_codes: int | None = None,
    source: str = "index",
) -> ItemIndex:
    """`index` with every collision resolved, logging a warning with the count.

    Args:
      index: any ItemIndex (semantic/numeric tokens or titles).
      cost: optional [n, K] last-level costs (only for semantic indexes).
      num_codes: K at the last level; default: 256 or the largest code seen + 1 if larger.
      source: name used in the log message (e.g. the file path).
    """
    before = index.num_colliding_items()
    if before == 0:
        return index
    if index.is_text:
        tokens = _resolve_titles(index.tokens)
        log.warning("%s: %d item(s) shared a title; made unique by numbering", source, before)
        return dataclasses.replace(index, tokens=tokens)
    from jaxrec.indexing.schemes import LETTERS, codes_from_index, index_letters, semantic_index

    codes = codes_from_index(index)
    k = max(num_codes or 256, int(codes[:, -1].max()) + 1)
    new_codes, res = resolve_codes(codes, k, cost)
    log.warning(
        "%s: %d item(s) collided with another item's token sequence; resolved (%d moved to a "
        "free last-level code%s), %d left",
        source,
        before,
        res.moved,
        ", one extra level added" if res.extra_level else "",
        res.colliding_after,
    )
    letters = index_letters(index)
    if new_codes.shape[1] > len(letters):  # the extra disambiguation level
        letters += next(c for c in LETTERS if c not in letters)
    return semantic_index(new_codes, scheme=index.scheme, letters=letters)

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


def count_colliding(codes: np.ndarray) -> int:
    """Items whose code row [L] equals an earlier item's row (all but one per group)."""
    return int(len(codes) - len(np.unique(codes, axis=0)))


def _groups(codes: np.ndarray) -> list[np.ndarray]:
    """Colliding groups (item ids ascending), in sorted order of their code rows."""
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")  # items grouped by code, ids ascending
    bounds = np.cumsum(counts)[:-1]
    return [g for g in np.split(order, bounds) if len(g) > 1]


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
    # used[prefix] = bool[K] of last-level codes taken under that prefix.
    used: dict[tuple[int, ...], np.ndarray] = defaultdict(lambda: np.zeros(num_codes, bool))
    for row in codes:
        used[tuple(row[:-1])][row[-1]] = True
    all_codes = np.arange(num_codes)
    moved = 0
    for group in _groups(codes):
        current = codes[group[0], -1]
        if cost is not None:
            # Stable sort: the lowest-cost member stays, ties broken by item id.
            group = group[np.argsort(cost[group, current], kind="stable")]
        taken = used[tuple(codes[group[0], :-1])]
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

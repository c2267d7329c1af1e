"""Ranked catalogue items from a generative model: the one retrieval loop.

Everything that turns a trained model into ranked items runs `ranked_batches`: `jaxrec eval`
and `jaxrec recommend` on every kind of MODEL_DIR (text prompts or semantic-id histories) and
the semantic-id recipe's validation and test. Queries go in fixed-size batches (the last one
padded, so each shape compiles once) through a jitted, trie-constrained beam search
(`jaxrec.inference.generation`); the decoded sequences become item ids with their sequence
scores (`jaxrec.inference.decoding.sequences_to_items`), streamed batch by batch with progress.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from jaxrec.indexing.trie import PrefixTable
from jaxrec.inference.decoding import Constraint, leaf_sequences, sequences_to_items

log = logging.getLogger(__name__)

# `(start, stop) -> [stop - start, ...]` encoder inputs of queries start..stop-1, built on demand
# (histories of a whole split need not sit in memory as one array).
InputFn = Callable[[int, int], np.ndarray]


@dataclasses.dataclass(frozen=True)
class RankedBatch:
    """One batch of ranked items (real queries only; padding rows are dropped)."""

    start: int  # index of the batch's first query
    items: np.ndarray  # [b, max_items] int32 item ids, best first, -1 padded
    scores: np.ndarray  # [b, max_items] float32 log-probability of each item's sequence, -inf pad
    invalid: int  # returned sequences that are no catalogue item (0 under the constraint)
    returned: int  # returned sequences (finite score)


@dataclasses.dataclass
class Catalogue:
    """The prefix table of the items a model may return, with what decoding it needs."""

    table: PrefixTable

    def __post_init__(self):
        self.constraint = Constraint.from_table(self.table)

    @functools.cached_property
    def lookup(self) -> dict[tuple[int, ...], tuple[int, ...]]:
        """Every item path -> its items (built on first use: a dictionary over the whole
        catalogue; retrieval walks the table instead)."""
        return leaf_sequences(self.table)


def ranked_batches(
    generate: Callable,
    params: Any,
    inputs: InputFn | np.ndarray,
    num_queries: int,
    catalogue: Catalogue,
    batch_size: int,
    max_items: int,
    constrained: bool = True,
    place: Callable[[np.ndarray], Any] | None = None,
    context: Callable[[], Any] | None = None,
    progress: str | None = "retrieval",
) -> Iterator[RankedBatch]:
    """Streams the ranked items of `num_queries` queries, `batch_size` at a time.

    Args:
      generate: jitted `(params, encoder_inputs, constraint | None) -> (sequences [b, R, len],
        scores [b, R])` (`jaxrec.inference.generation.make_generate_fn`).
      params: the network's parameters.
      inputs: encoder inputs `[num_queries, ...]`, or an `InputFn`.
      catalogue: the items' prefix table.
      batch_size: queries per call (the last batch is padded with copies of its first row).
      max_items: items kept per query.
      constrained: decode under the catalogue trie (else free decoding; invalid sequences are
        counted).
      place: host array -> device array (e.g. split over a mesh's `data` axis).
      context: a context manager factory entered around each call (e.g. the mesh).
      progress: label of the progress log lines (None: silent).
    """
    context = context or contextlib.nullcontext
    constraint = catalogue.constraint if constrained else None
    t0 = time.perf_counter()
    for start in range(0, num_queries, batch_size):
        stop = min(start + batch_size, num_queries)
        chunk = inputs(start, stop) if callable(inputs) else np.asarray(inputs[start:stop])
        real = len(chunk)
        if real < batch_size:  # one compiled shape
            chunk = np.concatenate([chunk, np.repeat(chunk[:1], batch_size - real, axis=0)])
        with context():
            seqs, scores = generate(params, chunk if place is None else place(chunk), constraint)
        seqs, scores = np.asarray(seqs)[:real], np.asarray(scores)[:real]
        items, invalid, item_scores = sequences_to_items(
            seqs, scores, catalogue.table, max_items, with_scores=True
        )
        finite = np.isfinite(scores)
        yield RankedBatch(start, items, item_scores, int((invalid & finite).sum()),
                          int(finite.sum()))  # fmt: skip
        batch_no = start // batch_size
        if progress and (batch_no % 50 == 49 or stop == num_queries):
            rate = stop / max(time.perf_counter() - t0, 1e-9)
            log.info("%s: %d/%d queries (%.1f/s)", progress, stop, num_queries, rate)


def rank_all(batches: Iterator[RankedBatch], num_queries: int, max_items: int):
    """Collects `ranked_batches` into (items [n, max_items], scores [n, max_items], invalid
    rate: the share of returned sequences that are no catalogue item)."""
    items = np.full((num_queries, max_items), -1, np.int32)
    scores = np.full((num_queries, max_items), -np.inf, np.float32)
    invalid = returned = 0
    for b in batches:
        items[b.start : b.start + len(b.items)] = b.items
        scores[b.start : b.start + len(b.items)] = b.scores
        invalid += b.invalid
        returned += b.returned
    return items, scores, invalid / max(returned, 1)

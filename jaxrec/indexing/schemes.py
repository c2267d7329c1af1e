"""Item-id schemes, all producing an `ItemIndex` (tasks and decoding never see the scheme).

- semantic (RQ-VAE): level l, code c -> token `<{letter l}_{c}>`, e.g. `<a_183><b_70><c_232>`.
- random: each item gets a distinct random number in [0, n), written as fixed-width base-10
  digits, one *positional digit token* per digit: item number 4071 of 12,101 items ->
  `<a_0><b_4><c_0><d_7><e_1>`. Why digit tokens rather than one `<i_4071>` token per item or
  the text "item_4071": they add only 10 x width vocabulary entries (50 for 12k items) instead of
  n, their embeddings are shared across items (as sub-word pieces of "4071" would be, but with
  a fixed length and no tokenizer ambiguity), and constrained decoding treats them exactly like
  semantic ids. `as_text=True` gives the plain number as text instead (P5 style).
- sequential: the same digits, numbered in order of first appearance in the users' sequences
  (P5 / S3-Rec). This leaks interaction order into the ids; a warning is logged.
- title: the item title as text (`is_text=True`), tokenized by the model's SentencePiece.
"""

from __future__ import annotations

import logging
import string

import numpy as np

from jaxrec.data.dataset import DataError, Item
from jaxrec.indexing.item_index import SEMANTIC_TOKEN, ItemIndex

log = logging.getLogger(__name__)

LETTERS = string.ascii_lowercase


def semantic_index(
    codes: np.ndarray, scheme: str = "rqvae", letters: str | None = None
) -> ItemIndex:
    """ItemIndex from codes [n, L]: level l, code c -> `<{letters[l]}_{c}>` (letters a, b, ...)."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[1] > len(LETTERS):
        raise ValueError(f"codes must be [n, L] with L <= 26, got shape {codes.shape}")
    letters = letters or LETTERS[: codes.shape[1]]
    tokens = tuple(
        tuple(f"<{letters[level]}_{c}>" for level, c in enumerate(row)) for row in codes.tolist()
    )
    return ItemIndex(tokens=tokens, scheme=scheme, is_text=False)


def index_letters(index: ItemIndex) -> str:
    """Level letters of a semantic index, e.g. "abcd" (from its first item)."""
    return "".join(SEMANTIC_TOKEN.match(t).group(1) for t in index.tokens[0])


def codes_from_index(index: ItemIndex) -> np.ndarray:
    """[n, L] int32 codes of a semantic index (every item must have L tokens)."""
    if index.is_text:
        raise ValueError("a text index has no codes")
    levels = {len(t) for t in index.tokens}
    if len(levels) != 1:
        raise DataError(f"index has mixed level counts {sorted(levels)}")
    return np.array(
        [[int(SEMANTIC_TOKEN.match(t).group(2)) for t in seq] for seq in index.tokens],
        dtype=np.int32,
    )


def _digits(numbers: np.ndarray, base: int) -> np.ndarray:
    """[n, width] most-significant-first digits of non-negative numbers [n]."""
    width = max(1, int(np.ceil(np.log(max(int(numbers.max()) + 1, 2)) / np.log(base))))
    powers = base ** np.arange(width - 1, -1, -1)
    return (numbers[:, None] // powers[None, :]) % base


def numeric_index(numbers: np.ndarray, scheme: str, base: int = 10, as_text: bool = False):
    """ItemIndex from distinct non-negative numbers [n] (digit tokens, or text if `as_text`)."""
    numbers = np.asarray(numbers, dtype=np.int64)
    if len(np.unique(numbers)) != len(numbers):
        raise ValueError("numeric ids must be distinct")
    if as_text:
        return ItemIndex(tuple((str(v),) for v in numbers.tolist()), scheme, is_text=True)
    if not 2 <= base <= 10_000:
        raise ValueError(f"base must be in [2, 10000], got {base}")
    return semantic_index(_digits(numbers, base), scheme=scheme)


def random_index(num_items: int, seed: int = 0, base: int = 10, as_text: bool = False):
    """Random distinct numbers in [0, num_items) (seeded permutation), as digit tokens."""
    numbers = np.random.default_rng(seed).permutation(num_items)
    return numeric_index(numbers, "random", base, as_text)


def first_seen_order(sequences, num_items: int) -> np.ndarray:
    """[num_items] number of each item in order of first appearance, user by user."""
    numbers = np.full(num_items, -1, dtype=np.int64)
    nxt = 0
    for seq in sequences:
        for item in np.asarray(seq).tolist():
            if numbers[item] < 0:
                numbers[item] = nxt
                nxt += 1
    unseen = np.flatnonzero(numbers < 0)
    numbers[unseen] = nxt + np.arange(len(unseen))
    return numbers


def sequential_index(sequences, num_items: int, base: int = 10, as_text: bool = False):
    """Sequential ids (first appearance, user by user), as P5 / S3-Rec number items.

    Logs a warning: a user's consecutive items get consecutive numbers, so the id of the next
    item is partly predictable from the history's ids (information leakage).
    """
    log.warning(
        "sequential item ids leak interaction order (a user's next item often has the next "
        "number); results are not comparable to random or semantic ids"
    )
    return numeric_index(first_seen_order(sequences, num_items), "sequential", base, as_text)


def title_index(items: list[Item], source: str = "dataset") -> ItemIndex:
    """Titles as text ids (`is_text=True`). Duplicate titles are kept (resolve them later)."""
    tokens = []
    for i, item in enumerate(items):
        title = " ".join(item.title.split())
        if not title:
            raise DataError(
                f"{source}: item {i} ({item.original_id!r}) has no title; the title scheme needs "
                "titles for every item (use --method rqvae or random)"
            )
        if SEMANTIC_TOKEN.match(title):
            raise DataError(f"{source}: item {i}: title {title!r} looks like an item token")
        tokens.append((title,))
    return ItemIndex(tokens=tuple(tokens), scheme="title", is_text=True)


def load_index(
    path: str, num_items: int | None = None, resolve: bool = True, num_codes: int | None = None
) -> ItemIndex:
    """Read an LC-Rec `.index.json`, detecting collisions.

    With `resolve` (the default) colliding items are made unique (`collisions.resolve_index`)
    and a warning says how many there were; with `resolve=False` they are kept, with a warning,
    and decoding must expand shared leaves (`PrefixTable.leaf_groups`).
    """
    from jaxrec.indexing.collisions import resolve_index

    index = ItemIndex.from_json(path, num_items=num_items)
    colliding = index.num_colliding_items()
    if colliding and not resolve:
        log.warning(
            "%s: %d item(s) share another item's token sequence (%d groups); kept as is",
            path,
            colliding,
            len(index.collisions()),
        )
        return index
    return resolve_index(index, num_codes=num_codes, source=path)

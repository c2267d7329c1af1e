"""Auxiliary tasks of the semantic-id recipe, as training rows beside the retrieval rows.

The two papers' auxiliary tasks, restated in the token space of a model trained from scratch on
semantic ids (`SidVocabulary` plus a few extra tokens: one task marker per task, `<mask>`,
`<sep>` and one token per item attribute):

  mim         masked item modeling (Cao et al.): a user's window with one item replaced by
              `<mask>` -> that item's semantic id;
  bpr         pairwise preference (Cao et al.'s BPR task): a history, `<sep>`, then the next
              item and a random item the user never interacted with, in random order -> the
              semantic id of the one the user chose;
  item2index  item -> index alignment (LC-Rec): the item's attributes -> its semantic id;
  index2item  index -> item alignment (LC-Rec): the semantic id -> the item's attributes.

Every example is an encoder segment that starts with its task marker (item-level positions:
an item is its codes [+ item id]; a marker, `<mask>`, `<sep>` or an attribute is one token in
the first slot) and one decoder span (target tokens + EOS) that cross-attends to the whole
segment. Examples are packed several to a row in the same arrays as the prefix-shared rows
(`jaxrec.recipes.prefix_shared`), so one batch mixes both and the network is unchanged. Example
(k = 2, row of 4 positions, a `bpr` example over history [x] with candidates y, z):

    encoder_input_tokens     [<bpr>  x  <sep>  y  z ...]
    decoder_target_tokens    [t1 t2 E | 0 0 0 | ...]     (block of the segment's first position)
    decoder_cross_positions  [4  4  4 | ...]             (the segment's last position)

A target longer than its segment's decoder blocks gets empty positions in front of the
segment's content (they are padding for attention), so nothing is cut.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import numpy as np

from jaxrec.baselines import packing
from jaxrec.data.dataset import DataError, Dataset
from jaxrec.indexing.sid_vocab import SidVocabulary

log = logging.getLogger(__name__)

TASKS = ("mim", "bpr", "item2index", "index2item")
MASK, SEP = "<mask>", "<sep>"
Batch = dict[str, np.ndarray]


def marker(task: str) -> str:
    return f"<task_{task}>"


def attribute_token(attribute: int) -> str:
    return f"<attr_{attribute}>"


@dataclasses.dataclass(frozen=True)
class Example:
    """One auxiliary example: `inputs [n, width]` item-level encoder positions and the target's
    token ids (EOS is added when packed)."""

    inputs: np.ndarray
    target: tuple[int, ...]


def check_tasks(tasks: Sequence[str], dataset: Dataset) -> None:
    """Clear errors for unknown tasks or missing data (attributes for the alignment tasks)."""
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown auxiliary task(s) {unknown}; known: {list(TASKS)}")
    if {"item2index", "index2item"} & set(tasks):
        without = sum(1 for item in dataset.items if not item.attributes)
        if without == len(dataset.items):
            raise DataError(
                f"dataset {dataset.name!r}: no item has attributes; item2index and index2item "
                "align attributes with semantic ids (prepare the data with its item "
                "attributes, e.g. the P5 item2attributes file)"
            )
        if without:
            log.warning(
                "dataset %r: %d of %d items have no attributes and get no item2index/"
                "index2item examples", dataset.name, without, len(dataset.items),
            )  # fmt: skip


def extra_tokens(tasks: Sequence[str], dataset: Dataset) -> list[str]:
    """The extra vocabulary entries `tasks` need (markers, `<mask>`, `<sep>`, attributes)."""
    names = [marker(t) for t in tasks] + [MASK, SEP]
    if {"item2index", "index2item"} & set(tasks):
        attrs = sorted({a for item in dataset.items for a in item.attributes})
        names += [attribute_token(a) for a in attrs]
    return names


def _token_position(token_id: int, width: int) -> np.ndarray:
    row = np.zeros((1, width), np.int32)
    row[0, 0] = token_id
    return row


class AuxTasks:
    """Draws each epoch's auxiliary examples (pure given the rng) for a dataset and vocabulary.

    Args:
      dataset: training sequences (the windows) and item attributes.
      vocab: a `SidVocabulary` holding `extra_tokens(tasks, dataset)`.
      input_codes: `[num_items, width]` per-item encoder inputs (codes, optionally item id + 1).
      history: encoder positions per example at most (the row length); the users' training
        windows are those of the retrieval rows (`packing.user_windows`).
    """

    def __init__(
        self,
        tasks: Sequence[str],
        dataset: Dataset,
        vocab: SidVocabulary,
        input_codes: np.ndarray,
        history: int,
    ):
        check_tasks(tasks, dataset)
        self.tasks = tuple(tasks)
        self.vocab, self.codes, self.history = vocab, vocab.codes, history
        self.input_codes = input_codes
        self.width = input_codes.shape[1]
        self.num_items = len(vocab.codes)
        # Each window with its user's items (BPR negatives avoid everything the user bought).
        self.windows: list[np.ndarray] = []
        self.seen: list[frozenset] = []
        for u in range(dataset.num_users):
            seq = dataset.train_sequence(u)
            user_windows = packing.user_windows(seq, history)
            self.windows += user_windows
            self.seen += [frozenset(seq.tolist())] * len(user_windows)
        self.attributes = [item.attributes for item in dataset.items]
        self.with_attributes = np.array([i for i, a in enumerate(self.attributes) if a], np.int64)
        self.ids = {name: vocab.token_id(name) for name in vocab.extra_tokens}

    def _pos(self, name: str) -> np.ndarray:
        return _token_position(self.ids[name], self.width)

    def _code_only(self, item: int) -> np.ndarray:
        row = np.zeros((1, self.width), np.int32)
        row[0, : self.codes.shape[1]] = self.codes[item]
        return row

    def mim(self, window: np.ndarray, rng: np.random.Generator) -> Example:
        items = np.asarray(window)[-(self.history - 1) :]
        j = int(rng.integers(len(items)))
        inputs = self.input_codes[items].copy()
        inputs[j] = self._pos(MASK)[0]
        return Example(np.concatenate([self._pos(marker("mim")), inputs]),
                       tuple(self.codes[items[j]].tolist()))  # fmt: skip

    def bpr(self, window: np.ndarray, seen: set, rng: np.random.Generator) -> Example:
        t = int(rng.integers(1, len(window)))
        history, positive = np.asarray(window[:t])[-(self.history - 4) :], int(window[t])
        negative = int(rng.integers(self.num_items))
        while negative in seen and len(seen) < self.num_items:
            negative = int(rng.integers(self.num_items))
        pair = [positive, negative] if rng.random() < 0.5 else [negative, positive]
        inputs = np.concatenate([self._pos(marker("bpr")), self.input_codes[history],
                                 self._pos(SEP), self.input_codes[pair]])  # fmt: skip
        return Example(inputs, tuple(self.codes[positive].tolist()))

    def item2index(self, item: int) -> Example:
        attrs = self.attributes[item][: self.history - 1]
        inputs = [self._pos(marker("item2index"))] + [self._pos(attribute_token(a)) for a in attrs]
        return Example(np.concatenate(inputs), tuple(self.codes[item].tolist()))

    def index2item(self, item: int) -> Example:
        inputs = np.concatenate([self._pos(marker("index2item")), self._code_only(item)])
        target = tuple(self.ids[attribute_token(a)] for a in self.attributes[item])
        return Example(inputs, target)

    def examples(self, rng: np.random.Generator, rate: float = 1.0) -> list[Example]:
        """One epoch's examples: per task, a `rate` share of the windows (mim, bpr) or of the
        items with attributes (item2index, index2item), drawn anew from `rng`; shuffled."""
        out: list[Example] = []
        for task in self.tasks:
            if task in ("mim", "bpr"):
                pool = np.arange(len(self.windows))
            else:
                pool = self.with_attributes
            n = int(round(rate * len(pool)))
            chosen = rng.choice(pool, size=n, replace=n > len(pool)) if n else pool[:0]
            for i in chosen.tolist():
                if task == "mim":
                    out.append(self.mim(self.windows[i], rng))
                elif task == "bpr":
                    out.append(self.bpr(self.windows[i], self.seen[i], rng))
                elif task == "item2index":
                    out.append(self.item2index(i))
                else:
                    out.append(self.index2item(i))
        order = rng.permutation(len(out))
        return [out[i] for i in order]


def pack_examples(examples: Sequence[Example], length: int, k: int, eos_id: int) -> Batch:
    """Examples -> rows in the prefix-shared layout (`jaxrec.recipes.prefix_shared.shared_batch`):
    encoder `[rows, length, width]`, decoder `[rows, length * (k + 1)]`. Examples fill rows in
    order, a new row when the next one does not fit."""
    block = k + 1
    width = examples[0].inputs.shape[1] if examples else k
    placed: list[list[tuple[int, Example, int]]] = [[]]  # per row: (offset, example, positions)
    used = 0
    for ex in examples:
        n_in = len(ex.inputs)
        n = max(n_in, -(-(len(ex.target) + 1) // block))  # room for the target and EOS
        if n > length:
            raise ValueError(f"an example needs {n} positions, rows have {length}")
        if used + n > length:
            placed.append([])
            used = 0
        placed[-1].append((used, ex, n))
        used += n
    rows = len(placed) if placed[0] else 0
    enc = np.zeros((rows, length, width), np.int32)
    enc_seg = np.zeros((rows, length), np.int32)
    dec_in = np.zeros((rows, length * block), np.int32)
    dec_tgt = np.zeros((rows, length * block), np.int32)
    dec_seg = np.zeros((rows, length * block), np.int32)
    cross = np.zeros((rows, length * block), np.int32)
    for r in range(rows):
        for seg, (offset, ex, n) in enumerate(placed[r], start=1):
            start = offset + n - len(ex.inputs)  # content at the end of the segment
            enc[r, start : offset + n] = ex.inputs
            enc_seg[r, offset : offset + n] = seg
            tgt = list(ex.target) + [eos_id]
            s = slice(offset * block, offset * block + len(tgt))
            dec_tgt[r, s] = tgt
            dec_in[r, s] = [0] + tgt[:-1]
            dec_seg[r, s] = seg
            cross[r, s] = offset + n - 1
    return {
        "encoder_input_tokens": enc,
        "encoder_segment_ids": enc_seg,
        "decoder_input_tokens": dec_in,
        "decoder_target_tokens": dec_tgt,
        "decoder_segment_ids": dec_seg,
        "decoder_cross_positions": cross,
    }

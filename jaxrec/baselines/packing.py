"""SASRec training batches: users' training sequences as next-item windows, packed several to a
row (segment-causal attention) or padded one to a row.

Token space: item id + 1, 0 is padding. A window of a user's training items
`w = [i_0, ..., i_m]` (m <= max_len) gives inputs `w[:-1]` and targets `w[1:]`: every position
is a next-item target in one forward pass (the SASRec way).

Packing example (row_len 8, windows of 3, 4 and 2 items):

    inputs    [a0 a1 b0 b1 b2 c0 0  0 ]
    targets   [a1 a2 b1 b2 b3 c1 0  0 ]
    segments  [1  1  2  2  2  3  0  0 ]
    positions [0  1  0  1  2  0  0  0 ]

Attention is allowed from position i to j only when j <= i and both are in the same segment,
so packed users never see each other and the loss equals the padded-per-user loss.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxrec.data.dataset import Dataset


@dataclasses.dataclass(frozen=True)
class Rows:
    """Training rows; every array is [num_rows, row_len] int32."""

    inputs: np.ndarray
    targets: np.ndarray
    segments: np.ndarray
    positions: np.ndarray

    @property
    def num_tokens(self) -> int:
        return int((self.targets > 0).sum())

    def take(self, idx: np.ndarray) -> Rows:
        return Rows(self.inputs[idx], self.targets[idx], self.segments[idx], self.positions[idx])


def user_windows(seq: np.ndarray, max_len: int) -> list[np.ndarray]:
    """Windows of at most `max_len + 1` items covering every next-item target of `seq` once.

    The last window holds the most recent `max_len` targets; earlier ones end where the next
    starts, so each target has up to `max_len` items of context, as at evaluation time.
    """
    windows = []
    end = len(seq)
    while end >= 2:
        start = max(0, end - max_len - 1)
        windows.append(np.asarray(seq[start:end]))
        end = start + 1
    return windows[::-1]


def training_windows(dataset: Dataset, max_len: int, users=None) -> list[np.ndarray]:
    """All training windows (item ids, 0-based) of `users` (default: all) in user order."""
    users = range(dataset.num_users) if users is None else users
    out = []
    for u in users:
        out.extend(user_windows(dataset.train_sequence(int(u)), max_len))
    return out


def _empty(num_rows: int, row_len: int) -> dict[str, np.ndarray]:
    names = ("inputs", "targets", "segments", "positions")
    return {k: np.zeros((num_rows, row_len), np.int32) for k in names}


def _place(arrays: dict[str, np.ndarray], row: int, offset: int, seg: int, w: np.ndarray):
    n = len(w) - 1
    sl = slice(offset, offset + n)
    arrays["inputs"][row, sl] = w[:-1] + 1
    arrays["targets"][row, sl] = w[1:] + 1
    arrays["segments"][row, sl] = seg
    arrays["positions"][row, sl] = np.arange(n)


def pad_rows(windows: list[np.ndarray], max_len: int) -> Rows:
    """One window per row, right-padded to `max_len` (the padded-per-user layout)."""
    arrays = _empty(len(windows), max_len)
    for r, w in enumerate(windows):
        if len(w) - 1 > max_len:
            raise ValueError(f"window of {len(w)} items is longer than max_len + 1")
        _place(arrays, r, 0, 1, w)
    return Rows(**arrays)


def pack_rows(windows: list[np.ndarray], row_len: int) -> Rows:
    """Best-fit-decreasing packing of windows into rows of `row_len` tokens.

    Rows are found by remaining capacity (at most `row_len` buckets), so packing is
    O(num_windows * row_len) rather than O(num_windows * num_rows).
    """
    sizes = np.array([len(w) - 1 for w in windows], dtype=np.int64)
    if sizes.size and sizes.max() > row_len:
        raise ValueError(f"a window has {sizes.max()} inputs, more than row_len {row_len}")
    order = np.argsort(-sizes, kind="stable")
    by_free: list[list[int]] = [[] for _ in range(row_len + 1)]  # free space -> rows
    row_free: list[int] = []
    placement = []  # (window, row, offset, segment)
    row_segments: list[int] = []
    for w in order.tolist():
        s = int(sizes[w])
        row = -1
        for free in range(s, row_len + 1):
            if by_free[free]:
                row = by_free[free].pop()
                break
        if row < 0:
            row = len(row_free)
            row_free.append(row_len)
            row_segments.append(0)
        offset = row_len - row_free[row]
        row_free[row] -= s
        row_segments[row] += 1
        by_free[row_free[row]].append(row)
        placement.append((w, row, offset, row_segments[row]))
    arrays = _empty(len(row_free), row_len)
    for w, row, offset, seg in placement:
        _place(arrays, row, offset, seg, windows[w])
    return Rows(**arrays)


def history_batch(histories: list[np.ndarray], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded evaluation inputs: ([batch, max_len] tokens, [batch] last index).

    Each history is cut to its last `max_len` items.
    """
    tokens = np.zeros((len(histories), max_len), np.int32)
    last = np.zeros(len(histories), np.int32)
    for b, h in enumerate(histories):
        h = np.asarray(h)[-max_len:]
        tokens[b, : len(h)] = h + 1
        last[b] = len(h) - 1
    return tokens, last

"""Generative-retrieval training rows over semantic ids, per prefix or prefix-shared.

Items are given by their semantic-id tokens (`codes [num_items, k]`, token ids of a
`SidVocabulary`); the model reads item-level encoder inputs (one position per history item,
`[rows, length, k]`) and emits the target's k tokens and EOS.

*Per prefix* (TIGER's layout): one row per (history, target) pair; the encoder reads the
history, the decoder emits the target.

*Prefix-shared*: one row holds whole user windows (several users packed into a row, as for
SASRec in `jaxrec.baselines.packing`). With a causal encoder, position p's encoding depends only
on the items up to p, which is exactly the encoding of the prefix that ends at p. So every
encoder position p gets its own decoder block (k + 1 tokens: the next item's tokens and EOS)
that cross-attends only to positions <= p of its own user. One forward pass trains every
next-item target of every user in the row, and gives the same losses and gradients as the
per-prefix rows of those targets (`tests/recipes/test_prefix_shared.py` checks this).

Example (k = 2, row of 4 positions, one user window [x, y, z] and one [u, v]):

    encoder_input_tokens     [x  y  u  -]        (each entry: the item's k tokens)
    encoder_segment_ids      [1  1  2  0]
    decoder_target_tokens    [y1 y2 E | z1 z2 E | v1 v2 E | 0 0 0]
    decoder_input_tokens     [0  y1 y2| 0  z1 z2| 0  v1 v2| 0 0 0]
    decoder_segment_ids      [1  1  1 | 2  2  2 | 3  3  3 | 0 0 0]
    decoder_cross_positions  [0  0  0 | 1  1  1 | 2  2  2 | 0 0 0]

Decoder block p attends causally within itself (its segment) and to encoder positions
j <= decoder_cross_positions of the same encoder segment.
"""

from __future__ import annotations

import numpy as np

from jaxrec.baselines import packing

Batch = dict[str, np.ndarray]


def target_blocks(targets: np.ndarray, codes: np.ndarray, eos_id: int) -> tuple[np.ndarray, ...]:
    """Decoder (inputs, targets), each `[..., k + 1]`, for item ids `targets [...]` (-1 = none).

    Targets are the item's k tokens then EOS; inputs are the same shifted right with 0 as the
    start token. Positions with no target are all 0.
    """
    valid = targets >= 0
    tok = np.where(valid[..., None], codes[np.maximum(targets, 0)], 0)  # [..., k]
    eos = np.where(valid, eos_id, 0)[..., None]
    dec_targets = np.concatenate([tok, eos], axis=-1).astype(np.int32)
    dec_inputs = np.concatenate([np.zeros_like(eos), tok], axis=-1).astype(np.int32)
    return dec_inputs, dec_targets


def history_inputs(histories: list, codes: np.ndarray, length: int) -> np.ndarray:
    """Item-level encoder inputs `[n, length, k]` (left-aligned, 0-padded) of item-id lists;
    each history keeps its last `length` items."""
    out = np.zeros((len(histories), length, codes.shape[1]), np.int32)
    for r, h in enumerate(histories):
        h = np.asarray(h, np.int64)[-length:] if length else np.asarray(h, np.int64)
        out[r, : len(h)] = codes[h]
    return out


def with_item_ids(codes: np.ndarray) -> np.ndarray:
    """`[num_items, k]` codes -> `[num_items, k + 1]` encoder inputs ending with item id + 1
    (for a network with `num_input_items`)."""
    ids = np.arange(1, len(codes) + 1, dtype=codes.dtype)[:, None]
    return np.concatenate([codes, ids], axis=1)


def shared_batch(
    rows: packing.Rows, codes: np.ndarray, eos_id: int, input_codes: np.ndarray | None = None
) -> Batch:
    """Prefix-shared model inputs from SASRec-style rows (`inputs`/`targets` = item id + 1).

    Returns the arrays in the module docstring: encoder `[rows, length, k]` and
    `[rows, length]`, decoder `[rows, length * (k + 1)]`. `input_codes` (default `codes`)
    gives the encoder's per-item inputs, e.g. `with_item_ids(codes)`.
    """
    num_rows, length = rows.inputs.shape
    k = codes.shape[1]
    input_codes = codes if input_codes is None else input_codes
    valid = rows.segments > 0  # [rows, length]
    enc = np.where(valid[..., None], input_codes[np.maximum(rows.inputs - 1, 0)], 0)
    dec_in, dec_tgt = target_blocks(np.where(valid, rows.targets - 1, -1), codes, eos_id)
    block = np.where(valid, np.arange(1, length + 1)[None], 0)  # one segment per target
    flat = (num_rows, length * (k + 1))
    return {
        "encoder_input_tokens": enc.astype(np.int32),
        "encoder_segment_ids": rows.segments.astype(np.int32),
        "decoder_input_tokens": dec_in.reshape(flat),
        "decoder_target_tokens": dec_tgt.reshape(flat),
        "decoder_segment_ids": np.repeat(block, k + 1, axis=1).astype(np.int32),
        "decoder_cross_positions": np.repeat(
            np.broadcast_to(np.arange(length, dtype=np.int32), (num_rows, length)), k + 1, axis=1
        ),
    }


def per_prefix_batch(
    histories: list,
    targets: np.ndarray,
    codes: np.ndarray,
    eos_id: int,
    length: int,
    input_codes: np.ndarray | None = None,
) -> Batch:
    """TIGER-shaped rows: encoder `[n, length, k]` histories, decoder `[n, k + 1]` targets."""
    dec_in, dec_tgt = target_blocks(np.asarray(targets, np.int64), codes, eos_id)
    input_codes = codes if input_codes is None else input_codes
    return {
        "encoder_input_tokens": history_inputs(histories, input_codes, length),
        "decoder_input_tokens": dec_in,
        "decoder_target_tokens": dec_tgt,
    }


def to_token_level(batch: Batch) -> Batch:
    """Item-level rows -> token-level ones: each item's k tokens become k encoder positions
    (`[rows, length * k]`, TIGER's input), segments repeat, and a decoder block that saw items
    <= p now sees tokens <= (p + 1) * k - 1."""
    enc = batch["encoder_input_tokens"]
    rows, length, k = enc.shape
    out = dict(batch, encoder_input_tokens=enc.reshape(rows, length * k))
    if "encoder_segment_ids" in batch:
        out["encoder_segment_ids"] = np.repeat(batch["encoder_segment_ids"], k, axis=1)
    if "decoder_cross_positions" in batch:
        out["decoder_cross_positions"] = (batch["decoder_cross_positions"] + 1) * k - 1
    return out


def prefix_examples(windows: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
    """The (history, target) pairs that the windows' prefix-shared rows train, in order:
    for window w, the history w[:t] and target w[t] for t = 1 .. len(w) - 1."""
    histories, targets = [], []
    for w in windows:
        for t in range(1, len(w)):
            histories.append(np.asarray(w[:t]))
            targets.append(int(w[t]))
    return histories, np.asarray(targets, np.int64)

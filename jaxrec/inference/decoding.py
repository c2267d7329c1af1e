"""Beam search over a `tokens_to_logits` callable, optionally constrained to a catalogue trie.

The shape follows `t5x.decoding.beam_search`, so the function can serve as the `decode_fn` of an
encoder-decoder model adapter: the caller passes a cache for `batch` rows, `beam_search` expands
it to `batch * num_decodes` rows, and at every step calls

    tokens_to_logits(DecodingState) -> (logits [batch * beam, vocab], new_cache)

The loop is a `lax.while_loop` with static shapes; nothing leaves the device until it returns.

Constrained mode (`constraint=Constraint.from_table(prefix_table)`) tracks one trie node per beam
(see `jaxrec.indexing.trie`). At node n only `tokens[offsets[n] + k]`, k < degree(n), may follow;
instead of masking a [vocab] row we gather the log-probs of those (at most `max_children`)
tokens, so candidate selection works on [batch, beam * max_children] scores. Log-probs are
normalised over the full vocabulary first (the model's own probabilities, and what
`transformers`' `prefix_allowed_tokens_fn` yields), so constraining changes which sequences are
explored, never their scores. Every finished sequence is a complete path to a leaf: a valid item.

Scores are summed log-probs divided by t5x's brevity penalty ((5 + length) / 6) ** alpha, where
length counts the generated tokens including EOS; alpha = 0 gives plain log-probs. Results are
sorted best first (t5x sorts worst first).

Decoded sequences become ranked item lists with `sequences_to_items` (pure numpy, host side).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.indexing.trie import PrefixTable, walk_paths

PyTree = Any
# Finite "minus infinity" for masked scores: keeps arithmetic free of inf - inf = nan.
NEG_INF = -1.0e7


@flax.struct.dataclass
class DecodingState:
    """What `tokens_to_logits` sees at each step (t5x's `DecodingState` fields).

    Attributes:
      cur_index: [rows] position of `cur_token` in the decoder input (0 = start token).
      sequences: [rows, max_decode_len] tokens generated so far (0 after `cur_index`).
      cur_token: [rows, 1] the token to feed now.
      cache: the model's cache, rows = batch * beam (or batch on an unexpanded first step).
    """

    cur_index: jnp.ndarray
    sequences: jnp.ndarray
    cur_token: jnp.ndarray
    cache: PyTree


@flax.struct.dataclass
class Constraint:
    """Device-side prefix table (a pytree; the two sizes are static)."""

    offsets: jnp.ndarray  # [num_nodes + 1]
    tokens: jnp.ndarray  # [num_edges + max_children], -1 padding
    targets: jnp.ndarray  # [num_edges + max_children]
    max_children: int = flax.struct.field(pytree_node=False)
    max_length: int = flax.struct.field(pytree_node=False)

    @classmethod
    def from_table(cls, table: PrefixTable) -> Constraint:
        return cls(
            offsets=jnp.asarray(table.offsets, jnp.int32),
            tokens=jnp.asarray(table.tokens, jnp.int32),
            targets=jnp.asarray(table.targets, jnp.int32),
            max_children=int(table.max_children),
            max_length=int(table.max_length),
        )


@flax.struct.dataclass
class BeamState:
    """Loop state. Sequences keep the start token at position 0."""

    cur_index: jnp.ndarray  # [] position of the token fed at this step
    live_logprobs: jnp.ndarray  # [batch, beam] summed log-probs of live prefixes
    live_seqs: jnp.ndarray  # [batch, beam, max_decode_len + 1]
    live_nodes: jnp.ndarray  # [batch, beam] trie node of each live prefix (0 if unconstrained)
    finished_scores: jnp.ndarray  # [batch, beam] length-penalised scores
    finished_seqs: jnp.ndarray  # [batch, beam, max_decode_len + 1]
    finished_flags: jnp.ndarray  # [batch, beam] bool, slot holds a finished sequence
    cache: PyTree  # leaves with batch * beam rows at axis `cache_offset`


def brevity_penalty(alpha: float, length: jnp.ndarray) -> jnp.ndarray:
    """t5x / GNMT length normalisation ((5 + length) / 6) ** alpha."""
    return jnp.power((5.0 + length) / 6.0, alpha)


def _is_index_leaf(path, leaf) -> bool:
    """Cache position counters (flax's `cache_index`) are shared by all rows: never reorder."""
    name = str(getattr(path[-1], "key", path[-1])) if path else ""
    return jnp.ndim(leaf) == 0 or "index" in name


def _path_str(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def _map_rows(fn: Callable, cache: PyTree, offset: int, skip: Callable | None = None) -> PyTree:
    def apply(path, leaf):
        if _is_index_leaf(path, leaf) or (skip is not None and skip(_path_str(path))):
            return leaf
        return jnp.moveaxis(fn(jnp.moveaxis(leaf, offset, 0)), 0, offset)

    return jax.tree_util.tree_map_with_path(apply, cache)


def expand_rows(
    cache: PyTree, beam: int, offset: int = 0, skip: Callable[[str], bool] | None = None
) -> PyTree:
    """[batch, ...] -> [batch * beam, ...] (rows of one query stay adjacent), at axis `offset`.

    Leaves whose path ("a/b/cached_key") satisfies `skip` are left as they are.
    """
    return _map_rows(lambda x: jnp.repeat(x, beam, axis=0), cache, offset, skip)


def gather_beams(x: jnp.ndarray, beam_idx: jnp.ndarray) -> jnp.ndarray:
    """x [batch, old_beam, ...], beam_idx [batch, new_beam] -> [batch, new_beam, ...]."""
    return x[jnp.arange(x.shape[0])[:, None], beam_idx]


def _gather_cache(
    cache: PyTree, beam_idx: jnp.ndarray, offset: int, per_query: Callable | None
) -> PyTree:
    batch, beam = beam_idx.shape

    def fn(x):  # [batch * old_beam, ...]
        x = x.reshape((batch, -1) + x.shape[1:])
        return gather_beams(x, beam_idx).reshape((batch * beam,) + x.shape[2:])

    return _map_rows(fn, cache, offset, skip=per_query)


def _candidates(logprobs, nodes, constraint):
    """Per live beam, the tokens it may emit and their log-probs.

    Args:
      logprobs: [batch, beam, vocab] log-softmax of the step's logits.
      nodes: [batch, beam] trie nodes.
      constraint: a `Constraint` or None.

    Returns:
      (cand_logprobs, cand_tokens, cand_nodes, cand_valid), each [batch, beam, width] where width
      is max_children (constrained) or vocab.
    """
    if constraint is None:
        vocab = logprobs.shape[-1]
        tokens = jnp.broadcast_to(jnp.arange(vocab, dtype=jnp.int32), logprobs.shape)
        return logprobs, tokens, jnp.zeros_like(tokens), jnp.ones(logprobs.shape, bool)
    lo = constraint.offsets[nodes]  # [batch, beam]
    degree = constraint.offsets[nodes + 1] - lo
    k = jnp.arange(constraint.max_children, dtype=jnp.int32)
    slots = lo[..., None] + k  # [batch, beam, max_children]
    tokens = constraint.tokens[slots]
    valid = k < degree[..., None]
    cand = jnp.take_along_axis(logprobs, jnp.maximum(tokens, 0), axis=-1)
    return cand, jnp.where(valid, tokens, 0), constraint.targets[slots], valid


def _step(state: BeamState, logprobs, new_cache, *, eos_id, alpha, constraint, offset, per_query):
    """Extend every live beam by one token; update the finished and live sets.

    logprobs: [batch, beam, vocab]; new_cache has batch * beam rows in the live-beam order.
    """
    batch, beam = state.live_logprobs.shape
    cand_lp, cand_tok, cand_node, valid = _candidates(logprobs, state.live_nodes, constraint)
    width = cand_lp.shape[-1]
    valid = valid & (state.live_logprobs > NEG_INF / 2)[..., None]
    total = jnp.where(valid, state.live_logprobs[..., None] + cand_lp, NEG_INF)
    total = total.reshape(batch, beam * width)
    # 2 * beam candidates guarantee `beam` non-EOS ones even if up to `beam` of them end here.
    n_top = min(2 * beam, beam * width)
    top_lp, top_flat = jax.lax.top_k(total, n_top)  # [batch, n_top]
    top_beam = top_flat // width
    top_tok = cand_tok.reshape(batch, -1)[jnp.arange(batch)[:, None], top_flat]
    top_node = cand_node.reshape(batch, -1)[jnp.arange(batch)[:, None], top_flat]
    top_ok = top_lp > NEG_INF / 2
    pos = state.cur_index + 1
    top_seqs = gather_beams(state.live_seqs, top_beam).at[:, :, pos].set(top_tok)
    ends = top_ok & (top_tok == eos_id)

    # Finished: merge this step's EOS candidates into the kept best `beam`.
    new_fin = jnp.where(ends, top_lp / brevity_penalty(alpha, pos.astype(jnp.float32)), NEG_INF)
    all_scores = jnp.concatenate([state.finished_scores, new_fin], axis=1)
    all_flags = jnp.concatenate([state.finished_flags, ends], axis=1)
    all_seqs = jnp.concatenate([state.finished_seqs, top_seqs], axis=1)
    fin_scores, fin_idx = jax.lax.top_k(jnp.where(all_flags, all_scores, NEG_INF), beam)

    # Live: best `beam` non-EOS candidates; the cache follows the beams they came from.
    live_lp, live_idx = jax.lax.top_k(jnp.where(ends, NEG_INF, top_lp), beam)
    parent = gather_beams(top_beam, live_idx)  # [batch, beam]
    return BeamState(
        cur_index=pos,
        live_logprobs=live_lp,
        live_seqs=gather_beams(top_seqs, live_idx),
        live_nodes=gather_beams(top_node, live_idx),
        finished_scores=fin_scores,
        finished_seqs=gather_beams(all_seqs, fin_idx),
        finished_flags=gather_beams(all_flags, fin_idx),
        cache=_gather_cache(new_cache, parent, offset, per_query),
    )


def _logprobs(logits: jnp.ndarray, batch: int) -> jnp.ndarray:
    """[rows, vocab] or [rows, 1, vocab] logits -> [batch, rows // batch, vocab] f32 log-probs."""
    logits = logits.reshape(logits.shape[0], logits.shape[-1]).astype(jnp.float32)
    return jax.nn.log_softmax(logits).reshape(batch, -1, logits.shape[-1])


def _nonzero(x) -> bool:
    try:
        return bool(np.any(np.asarray(x) != 0))
    except jax.errors.TracerArrayConversionError:
        return False  # traced: cannot check here


def beam_search(
    inputs: jnp.ndarray,
    cache: PyTree,
    tokens_to_logits: Callable[[DecodingState], tuple[jnp.ndarray, PyTree]],
    eos_id: int,
    num_decodes: int = 20,
    alpha: float = 0.0,
    decode_rng: jax.Array | None = None,
    cache_offset: int = 0,
    initial_index: jnp.ndarray | None = None,
    max_decode_len: int | None = None,
    constraint: Constraint | PrefixTable | None = None,
    num_returns: int | None = None,
    expand_after_first_step: bool = False,
    per_query_cache: Callable[[str], bool] | None = None,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Beam search; jittable (wrap in `jax.jit` with `tokens_to_logits` closed over).

    Args:
      inputs: [batch, max_decode_len] decoder prompt; only its shape is used (generation starts
        from the start token 0, as for T5; forced prompt prefixes are not supported).
      cache: model cache for `batch` rows (expanded to `batch * num_decodes` here).
      tokens_to_logits: `DecodingState -> (logits [rows, vocab], new_cache)`.
      eos_id: end-of-sequence id.
      num_decodes: beam width.
      alpha: length-penalty exponent (see `brevity_penalty`).
      decode_rng: unused (beam search is deterministic); kept for t5x's `decode_fn` signature.
      cache_offset: axis of the row dimension in cache leaves (t5x: 1 for scanned layers).
      initial_index: must be None or all zeros (no decoder-only prompts).
      max_decode_len: number of positions to generate; defaults to `inputs.shape[1]`.
        Constrained search stops after `constraint.max_length` steps anyway.
      constraint: a `Constraint` (or `PrefixTable`): only catalogue sequences are generated.
      num_returns: how many sequences to return per query (<= num_decodes; default all).
      expand_after_first_step: run the first step on the `batch` unexpanded rows (all beams of a
        query are identical then) and expand the returned cache afterwards; `tokens_to_logits`
        must then accept both `batch` and `batch * num_decodes` rows.
      per_query_cache: `cache path -> bool`, true for leaves kept with one row per query:
        never expanded to beams nor reordered; `tokens_to_logits` must broadcast them over the
        beams of each query (rows b * num_decodes .. (b + 1) * num_decodes - 1 belong to b).

    Returns:
      sequences [batch, num_returns, max_decode_len] (generated tokens, EOS included, 0 after)
      and scores [batch, num_returns], best first. Slots without a finished sequence (fewer
      valid items than beams) score -inf. Unconstrained queries that finish nothing fall back to
      their live beams, as in t5x.
    """
    del decode_rng
    if initial_index is not None and _nonzero(initial_index):
        raise ValueError("beam_search: prompt prefixes (initial_index > 0) are not supported")
    if isinstance(constraint, PrefixTable):
        constraint = Constraint.from_table(constraint)
    batch, length = inputs.shape
    max_len = int(max_decode_len or length)
    beam = int(num_decodes)
    num_returns = beam if num_returns is None else int(num_returns)
    if not 0 < num_returns <= beam:
        raise ValueError(f"num_returns must be in [1, num_decodes={beam}], got {num_returns}")
    steps = max_len if constraint is None else min(max_len, constraint.max_length)
    step = dict(
        eos_id=eos_id,
        alpha=alpha,
        constraint=constraint,
        offset=cache_offset,
        per_query=per_query_cache,
    )

    def call(seqs, cur_index, cache):  # seqs [rows, max_len + 1]
        rows = seqs.shape[0]
        ds = DecodingState(
            cur_index=jnp.full((rows,), cur_index, jnp.int32),
            sequences=seqs[:, 1:],
            cur_token=jax.lax.dynamic_slice_in_dim(seqs, cur_index, 1, axis=1),
            cache=cache,
        )
        return tokens_to_logits(ds)

    seqs0 = jnp.zeros((batch, beam, max_len + 1), jnp.int32)
    state = BeamState(
        cur_index=jnp.array(0, jnp.int32),
        # Only beam 0 is alive at first, so the identical copies are not extended twice.
        live_logprobs=jnp.tile(jnp.array([0.0] + [NEG_INF] * (beam - 1)), (batch, 1)),
        live_seqs=seqs0,
        live_nodes=jnp.zeros((batch, beam), jnp.int32),
        finished_scores=jnp.full((batch, beam), NEG_INF),
        finished_seqs=seqs0,
        finished_flags=jnp.zeros((batch, beam), bool),
        cache=cache
        if expand_after_first_step
        else expand_rows(cache, beam, cache_offset, per_query_cache),
    )
    if expand_after_first_step:
        logits, new_cache = call(seqs0[:, 0], 0, state.cache)
        logprobs = jnp.broadcast_to(_logprobs(logits, batch), (batch, beam, logits.shape[-1]))
        new_cache = expand_rows(new_cache, beam, cache_offset, per_query_cache)
        state = _step(state, logprobs, new_cache, **step)

    def cond(state: BeamState) -> jnp.ndarray:
        # Stop when no live beam can still beat the worst kept finished sequence.
        best_live = state.live_logprobs[:, 0] / brevity_penalty(alpha, float(max_len))
        worst_fin = jnp.where(
            state.finished_flags.all(axis=1), state.finished_scores.min(axis=1), NEG_INF
        )
        improvable = (best_live > worst_fin) & (state.live_logprobs[:, 0] > NEG_INF / 2)
        return (state.cur_index < steps) & improvable.any()

    def body(state: BeamState) -> BeamState:
        logits, new_cache = call(
            state.live_seqs.reshape(batch * beam, -1), state.cur_index, state.cache
        )
        return _step(state, _logprobs(logits, batch), new_cache, **step)

    state = jax.lax.while_loop(cond, body, state)

    # t5x fallback: a query that finished nothing returns its live beams.
    none_done = ~state.finished_flags.any(axis=1)  # [batch]
    live_scores = state.live_logprobs / brevity_penalty(alpha, state.cur_index.astype(float))
    flags = jnp.where(none_done[:, None], state.live_logprobs > NEG_INF / 2, state.finished_flags)
    scores = jnp.where(none_done[:, None], live_scores, state.finished_scores)
    seqs = jnp.where(none_done[:, None, None], state.live_seqs, state.finished_seqs)
    scores = jnp.where(flags, scores, -jnp.inf)
    order = jnp.argsort(-scores, axis=1, stable=True)[:, :num_returns]
    return gather_beams(seqs, order)[:, :, 1:], gather_beams(scores, order)


# -- decoded sequences -> ranked item lists (host side) ------------------------------------------


def leaf_sequences(table: PrefixTable) -> dict[tuple[int, ...], tuple[int, ...]]:
    """Every complete path of the trie (tokens without EOS) -> all items on its leaf."""
    out: dict[tuple[int, ...], tuple[int, ...]] = {}
    stack: list[tuple[int, tuple[int, ...]]] = [(0, ())]
    while stack:
        node, path = stack.pop()
        for k in range(table.offsets[node], table.offsets[node + 1]):
            tok, child = int(table.tokens[k]), int(table.targets[k])
            if tok == table.eos_id:
                out[path] = table.leaf_groups[child]
            else:
                stack.append((child, path + (tok,)))
    return out


def _strip(seq: np.ndarray, eos_id: int) -> tuple[int, ...] | None:
    """Tokens before the first EOS, or None if the sequence never ends."""
    hits = np.flatnonzero(seq == eos_id)
    return tuple(int(t) for t in seq[: hits[0]]) if len(hits) else None


def sequences_to_items(
    sequences: np.ndarray,
    scores: np.ndarray,
    table: PrefixTable,
    max_items: int | None = None,
    lookup: dict[tuple[int, ...], tuple[int, ...]] | None = None,
    with_scores: bool = False,
) -> tuple[np.ndarray, ...]:
    """Ranked item lists from decoded sequences.

    Each sequence is cut at its first EOS and looked up in the trie. A leaf shared by colliding
    items expands into all of them, in ascending item id, at consecutive ranks (the model cannot
    tell them apart; this fixed tie order is what the metrics see). Items already listed are
    skipped, and sequences with score -inf (empty beam slots) are ignored.

    Args:
      sequences: [batch, num_returns, len] decoded tokens (best first).
      scores: [batch, num_returns].
      table: the catalogue's prefix table.
      max_items: width of the output (default num_returns).
      lookup: `leaf_sequences(table)`; without it the sequences are walked through `table`
        (`jaxrec.indexing.trie.walk_paths`), which needs no per-catalogue dictionary.

    Returns:
      items [batch, max_items] int32 padded with -1, and invalid [batch, num_returns] bool:
      the returned sequence (with finite score) is not a catalogue item. With `with_scores`,
      also item_scores [batch, max_items] float32: each listed item's sequence score (the
      beam's log-probability; colliding items share it), -inf where padded.
    """
    sequences, scores = np.asarray(sequences), np.asarray(scores)
    batch, n = scores.shape
    width = n if max_items is None else int(max_items)
    if lookup is None:  # walk the table: no per-catalogue dictionary needed
        leaves = walk_paths(table, sequences.reshape(batch * n, -1)).reshape(batch, n)

        def group_of(b: int, r: int) -> tuple[int, ...]:
            return table.leaf_groups.get(int(leaves[b, r]), ()) if leaves[b, r] >= 0 else ()

    else:

        def group_of(b: int, r: int) -> tuple[int, ...]:
            key = _strip(sequences[b, r], table.eos_id)
            return lookup.get(key, ()) if key is not None else ()

    items = np.full((batch, width), -1, np.int32)
    item_scores = np.full((batch, width), -np.inf, np.float32)
    invalid = np.zeros((batch, n), bool)
    for b in range(batch):
        ranked: list[int] = []
        ranked_scores: list[float] = []
        seen: set[int] = set()
        for r in range(n):
            if not np.isfinite(scores[b, r]):
                continue
            group = group_of(b, r)
            invalid[b, r] = not group
            for item in group:
                if item not in seen:
                    seen.add(item)
                    ranked.append(item)
                    ranked_scores.append(scores[b, r])
        ranked = ranked[:width]
        items[b, : len(ranked)] = ranked
        item_scores[b, : len(ranked)] = ranked_scores[:width]
    return (items, invalid, item_scores) if with_scores else (items, invalid)

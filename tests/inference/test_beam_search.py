"""Beam search against an analytic fake model whose item scores are computed by enumeration."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.indexing.trie import build_prefix_table
from jaxrec.inference.decoding import Constraint, beam_search, brevity_penalty, sequences_to_items

EOS = 1
VOCAB = 12
STATES = 97


def fake_model(seed=0, cache_offset=0):
    """A prefix-dependent fake LM: the cache holds a hash of the prefix, logits = W[hash].

    Reordering the cache wrongly changes later logits, so beam bookkeeping errors show up.
    """
    w = np.random.default_rng(seed).normal(size=(STATES, VOCAB)).astype(np.float32) * 2.0

    def next_state(s, tok):
        return (s * 7 + tok + 1) % STATES

    def tokens_to_logits(ds):
        s = ds.cache["state"][0] if cache_offset else ds.cache["state"]  # [rows]
        s2 = next_state(s, ds.cur_token[:, 0])
        new = dict(ds.cache, state=s2[None] if cache_offset else s2)
        return jnp.asarray(w)[s2], new

    def init_cache(batch):
        state = jnp.arange(batch, dtype=jnp.int32) + 3
        if cache_offset:
            state = state[None]
        return {"state": state, "cache_index": jnp.array(0, jnp.int32)}

    def score(b, seq, alpha=0.0):
        """Exact log-prob of `seq` + EOS for query b, with the length penalty."""
        logp = w - np.log(np.exp(w).sum(axis=1, keepdims=True))
        s, tok, total = b + 3, 0, 0.0
        for t in list(seq) + [EOS]:
            s = next_state(s, tok)
            total += logp[s, t]
            tok = t
        return total / float(brevity_penalty(alpha, len(seq) + 1))

    return tokens_to_logits, init_cache, score


def run(items, batch, beams, alpha=0.0, returns=None, constrained=True, max_len=None, **kw):
    tokens_to_logits, init_cache, _ = fake_model(cache_offset=kw.get("cache_offset", 0))
    table = build_prefix_table(items, EOS)
    max_len = max_len or table.max_length

    @jax.jit
    def go(constraint):
        return beam_search(
            jnp.zeros((batch, max_len), jnp.int32),
            init_cache(batch),
            tokens_to_logits,
            EOS,
            num_decodes=beams,
            alpha=alpha,
            constraint=constraint,
            num_returns=returns,
            **kw,
        )

    seqs, scores = go(Constraint.from_table(table) if constrained else None)
    return table, np.asarray(seqs), np.asarray(scores)


def expected_ranking(items, b, alpha=0.0):
    """Distinct item sequences sorted by exact score (best first) -> [(seq, score)]."""
    _, _, score = fake_model()
    distinct = sorted({tuple(s) for s in items})
    ranked = sorted(((s, score(b, s, alpha)) for s in distinct), key=lambda x: -x[1])
    return ranked


def strip(seq):
    seq = list(seq)
    return tuple(seq[: seq.index(EOS)]) if EOS in seq else None


def random_items(n, length, seed=1):
    rng = np.random.default_rng(seed)
    return [tuple(int(t) for t in rng.integers(2, VOCAB, size=length)) for _ in range(n)]


@pytest.mark.parametrize("first_unexpanded", [False, True])
def test_exact_top_k_fixed_length_with_collisions(first_unexpanded):
    items = random_items(30, 3)
    items += [items[4], items[7], items[4]]  # items 30 and 32 collide with 4, item 31 with 7
    batch, beams = 3, 40
    table, seqs, scores = run(
        items, batch, beams, returns=beams, expand_after_first_step=first_unexpanded
    )
    for b in range(batch):
        want = expected_ranking(items, b)
        got = [strip(s) for s, sc in zip(seqs[b], scores[b], strict=True) if np.isfinite(sc)]
        assert got == [s for s, _ in want]  # all distinct sequences, exact order
        np.testing.assert_allclose(scores[b, : len(want)], [s for _, s in want], rtol=1e-5)
        assert np.all(np.isneginf(scores[b, len(want) :]))
    ranked, invalid = sequences_to_items(seqs, scores, table, max_items=len(items))
    assert not invalid.any()
    for b in range(batch):
        want_items = [i for s, _ in expected_ranking(items, b) for i in table.items_for(s)]
        assert ranked[b].tolist() == want_items  # collisions expand in ascending item id
        assert sorted(want_items) == list(range(len(items)))


def test_returns_fewer_than_beams_is_the_prefix():
    items = random_items(25, 3, seed=5)
    _, seqs_all, scores_all = run(items, 2, 32)
    _, seqs, scores = run(items, 2, 32, returns=7)
    assert seqs.shape == (2, 7, 4)
    np.testing.assert_array_equal(seqs, seqs_all[:, :7])
    np.testing.assert_allclose(scores, scores_all[:, :7])


@pytest.mark.parametrize("alpha", [0.0, 0.8])
def test_exact_top_k_variable_length_prefixes(alpha):
    # Titles-like items: different lengths; (5,) is a prefix of (5, 6) and (5, 6, 7).
    items = [(5,), (5, 6), (5, 6, 7), (2, 9, 4, 3), (8,), (8, 2, 2), (3, 3), (11, 10, 9, 8, 7)]
    items += random_items(10, 2, seed=3)
    batch, beams = 2, 24
    table, seqs, scores = run(items, batch, beams, alpha=alpha, max_len=8)
    assert seqs.shape == (batch, beams, 8)
    for b in range(batch):
        want = expected_ranking(items, b, alpha)
        got = [strip(s) for s, sc in zip(seqs[b], scores[b], strict=True) if np.isfinite(sc)]
        assert got == [s for s, _ in want]
        np.testing.assert_allclose(scores[b, : len(want)], [s for _, s in want], rtol=1e-5)


def test_narrow_beams_return_only_valid_items_with_their_exact_scores():
    items = random_items(200, 4, seed=7)
    _, _, score = fake_model()
    table, seqs, scores = run(items, 4, 5, cache_offset=1)
    _, invalid = sequences_to_items(seqs, scores, table)
    assert not invalid.any()
    valid = {tuple(s) for s in items}
    for b in range(4):
        for s, sc in zip(seqs[b], scores[b], strict=True):
            assert strip(s) in valid
            assert sc == pytest.approx(score(b, strip(s)), rel=1e-5)
        assert list(scores[b]) == sorted(scores[b], reverse=True)


def test_unconstrained_matches_enumeration_of_all_sequences():
    # Every token sequence of length < 3 followed by EOS (padding id 0 included) is a candidate.
    batch, beams, max_len = 2, 150, 3
    _, _, score = fake_model()
    tokens = [t for t in range(VOCAB) if t != EOS]
    allseqs = [s for n in range(max_len) for s in itertools.product(tokens, repeat=n)]
    _, seqs, scores = run([(2, 3)], batch, beams, returns=10, constrained=False, max_len=max_len)
    for b in range(batch):
        want = sorted(((s, score(b, s)) for s in allseqs), key=lambda x: -x[1])[:10]
        assert [strip(s) for s in seqs[b]] == [s for s, _ in want]
        np.testing.assert_allclose(scores[b], [s for _, s in want], rtol=1e-5)


def test_unconstrained_outputs_can_be_invalid_and_are_reported():
    items = random_items(6, 3, seed=11)
    table, seqs, scores = run(items, 3, 10, constrained=False, max_len=4)
    ranked, invalid = sequences_to_items(seqs, scores, table)
    assert invalid.mean() > 0.5  # 6 items among ~10^3 sequences: nearly all outputs are invalid
    lookup = {tuple(s): i for i, s in enumerate(items)}
    for b in range(3):
        valid_items = [lookup[strip(s)] for s in seqs[b] if strip(s) in lookup]
        assert ranked[b][ranked[b] >= 0].tolist() == valid_items


def test_sequences_to_items_dedups_pads_and_skips_empty_slots():
    table = build_prefix_table([(2, 3), (2, 4), (2, 3)], EOS)  # items 0 and 2 collide
    seqs = np.array([[[2, 3, EOS], [2, 4, EOS], [2, 3, EOS], [9, 9, 9]]])
    scores = np.array([[-1.0, -2.0, -3.0, -np.inf]])
    ranked, invalid = sequences_to_items(seqs, scores, table, max_items=5)
    assert ranked.tolist() == [[0, 2, 1, -1, -1]]
    assert invalid.tolist() == [[False, False, False, False]]
    ranked, invalid = sequences_to_items(seqs, np.array([[-1.0, -2, -3, -4]]), table, max_items=2)
    assert ranked.tolist() == [[0, 2]]
    assert invalid.tolist() == [[False, False, False, True]]


def test_rejects_bad_arguments():
    tokens_to_logits, init_cache, _ = fake_model()
    call = functools.partial(beam_search, jnp.zeros((1, 3), jnp.int32), init_cache(1))
    with pytest.raises(ValueError, match="num_returns"):
        call(tokens_to_logits, EOS, num_decodes=4, num_returns=5)
    with pytest.raises(ValueError, match="prefix"):
        call(tokens_to_logits, EOS, num_decodes=4, initial_index=jnp.ones((1,), jnp.int32))


def test_per_query_cache_leaves_stay_unexpanded():
    # A per-query logit bias kept at [batch, vocab] in the cache: never expanded or reordered.
    items = random_items(20, 3, seed=4)
    batch, beams = 2, 24
    bias = np.random.default_rng(9).normal(size=(batch, VOCAB)).astype(np.float32)
    tokens_to_logits, init_cache, _ = fake_model()

    def with_bias(ds):
        assert ds.cache["query_bias"].shape == (batch, VOCAB)
        logits, cache = tokens_to_logits(ds)
        per_row = jnp.repeat(ds.cache["query_bias"], logits.shape[0] // batch, axis=0)
        return logits + per_row, cache

    cache = dict(init_cache(batch), query_bias=jnp.asarray(bias))
    table = build_prefix_table(items, EOS)
    seqs, scores = beam_search(
        jnp.zeros((batch, 4), jnp.int32), cache, with_bias, EOS, num_decodes=beams,
        constraint=table, per_query_cache=lambda p: p.endswith("query_bias"),
    )  # fmt: skip
    w = np.random.default_rng(0).normal(size=(STATES, VOCAB)).astype(np.float32) * 2.0
    for b in range(batch):
        logits = w + bias[b]
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        want = []
        for seq in sorted(set(items)):
            s, tok, total = b + 3, 0, 0.0
            for t in list(seq) + [EOS]:
                s = (s * 7 + tok + 1) % STATES
                total += logp[s, t]
                tok = t
            want.append((total, seq))
        want.sort(reverse=True)
        n = len(want)
        assert [strip(x) for x in np.asarray(seqs[b, :n])] == [q for _, q in want]
        np.testing.assert_allclose(np.asarray(scores[b, :n]), [t for t, _ in want], rtol=1e-5)
        assert np.all(np.isneginf(np.asarray(scores[b, n:])))

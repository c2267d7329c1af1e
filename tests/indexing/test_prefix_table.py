"""PrefixTable correctness against brute-force enumeration over item token sequences."""

import itertools

import numpy as np
import pytest

from jaxrec.indexing.schemes import load_index, random_index
from jaxrec.indexing.trie import build_prefix_table, prefix_table_for_index

EOS = 1


def _brute_force_allowed(sequences):
    """prefix (tuple of ids) -> set of allowed next ids, from the sequences alone."""
    allowed = {}
    for seq in sequences:
        path = list(seq) + [EOS]
        for j in range(len(path)):
            allowed.setdefault(tuple(path[:j]), set()).add(path[j])
    return allowed


def _check(sequences, vocab):
    table = build_prefix_table(sequences, EOS)
    allowed = _brute_force_allowed(sequences)
    items_of = {}
    for i, seq in enumerate(sequences):
        items_of.setdefault(tuple(seq), []).append(i)
    # Every prefix of every item: the node exists and its allowed set matches exactly.
    for prefix, expected in allowed.items():
        node = table.walk(prefix)
        assert node >= 0, prefix
        assert set(table.allowed_tokens(node)) == expected, prefix
        assert table.depth[node] == len(prefix)
        lo = table.offsets[node]
        window = table.tokens[lo : lo + table.max_children]  # static-shape gather
        assert set(window[: table.degree[node]].tolist()) == expected
    # Every item path (with EOS) reaches a leaf holding exactly the items of that sequence.
    for seq, items in items_of.items():
        assert table.items_for(seq) == tuple(items)
        leaf = table.walk(list(seq) + [EOS])
        assert table.leaf_items[leaf] == min(items) and table.degree[leaf] == 0
    # Nodes = distinct prefixes (root + every prefix incl. EOS-terminated paths).
    assert table.num_nodes == len(allowed) + len(items_of)
    # Non-item paths are rejected: one-token extensions outside the allowed set, and a sample
    # of arbitrary sequences over the vocabulary.
    for prefix, expected in allowed.items():
        for t in set(vocab) - expected:
            assert table.walk(list(prefix) + [t]) == -1
    max_len = max(len(s) for s in sequences)
    for cand in itertools.islice(itertools.product(vocab, repeat=max_len), 3000):
        if cand not in items_of:
            assert table.items_for(cand) == ()
    return table


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_catalogues_with_collisions_and_ragged_lengths(seed):
    rng = np.random.default_rng(seed)
    vocab = list(range(2, 7))
    sequences = [
        rng.integers(2, 7, size=rng.integers(1, 4)).tolist() for _ in range(60)
    ]  # duplicates and prefixes of each other occur by construction
    assert len({tuple(s) for s in sequences}) < len(sequences)
    _check(sequences, vocab)


def test_numeric_scheme_table():
    index = random_index(137, seed=3)
    token_ids = {t: 2 + j for j, t in enumerate(index.item_tokens())}
    table = prefix_table_for_index(index.tokens, lambda seq: [token_ids[t] for t in seq], EOS)
    _check([[token_ids[t] for t in seq] for seq in index.tokens], list(token_ids.values()))
    assert len(table.leaf_groups) == 137


def test_real_beauty_index_with_collisions(shared_data):
    index = load_index(str(shared_data / "lcrec" / "Beauty.index.json"), 12101, resolve=False)
    token_ids = {t: 2 + j for j, t in enumerate(index.item_tokens())}
    sequences = [[token_ids[t] for t in seq] for seq in index.tokens]
    table = build_prefix_table(sequences, EOS)
    allowed = _brute_force_allowed(sequences)
    for prefix, expected in allowed.items():
        assert set(table.allowed_tokens(table.walk(prefix))) == expected
    shared = {leaf: g for leaf, g in table.leaf_groups.items() if len(g) > 1}
    assert sum(len(g) - 1 for g in shared.values()) == 13
    assert sorted(i for g in table.leaf_groups.values() for i in g) == list(range(12101))
    # Level-b tokens after an a-token that never precedes them are rejected.
    first = sequences[0]
    bad = next(t for t in token_ids.values() if t not in allowed[tuple(first[:1])])
    assert table.walk([first[0], bad]) == -1
    resolved = load_index(str(shared_data / "lcrec" / "Beauty.index.json"), 12101)
    table2 = build_prefix_table([[token_ids[t] for t in s] for s in resolved.tokens], EOS)
    assert all(len(g) == 1 for g in table2.leaf_groups.values())
    assert len(table2.leaf_groups) == 12101

"""The vectorised prefix-table build equals item-by-item insertion, and the vectorised walk
equals `PrefixTable.walk` and the dictionary lookup of decoded sequences."""

import numpy as np
import pytest

from jaxrec.indexing.trie import build_prefix_table, walk_paths
from jaxrec.inference.decoding import leaf_sequences, sequences_to_items

EOS = 1


def inserted_table(sequences):
    """Reference: insert items one by one into a dict trie, numbering nodes as they appear."""
    children, depth, groups = [{}], [0], {}
    for item, seq in enumerate(sequences):
        node = 0
        for t in list(seq) + [EOS]:
            if t not in children[node]:
                children[node][t] = len(children)
                children.append({})
                depth.append(depth[node] + 1)
            node = children[node][t]
        groups.setdefault(node, []).append(item)
    offsets = np.concatenate([[0], np.cumsum([len(c) for c in children])])
    edges = [(t, c) for kids in children for t, c in sorted(kids.items())]
    return offsets, edges, np.array(depth), {n: tuple(g) for n, g in groups.items()}


@pytest.mark.parametrize("seed", range(8))
def test_vectorised_build_equals_insertion_order(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 120))
    sequences = [rng.integers(2, 9, size=rng.integers(1, 5)).tolist() for _ in range(n)]
    table = build_prefix_table(sequences, EOS)
    offsets, edges, depth, groups = inserted_table(sequences)
    np.testing.assert_array_equal(table.offsets, offsets)
    np.testing.assert_array_equal(table.tokens[: len(edges)], [t for t, _ in edges])
    np.testing.assert_array_equal(table.targets[: len(edges)], [c for _, c in edges])
    assert (table.tokens[len(edges) :] == -1).all() and len(table.tokens) == len(edges) + (
        table.max_children
    )
    np.testing.assert_array_equal(table.depth, depth)
    assert dict(table.leaf_groups) == groups and list(table.leaf_groups) == list(groups)
    for node, items in groups.items():
        assert table.leaf_items[node] == min(items)
    assert (table.leaf_items >= 0).sum() == len(groups)


def test_array_input_and_errors():
    codes = np.array([[3, 4], [3, 5], [6, 4], [3, 4]])
    a, b = build_prefix_table(codes, EOS), build_prefix_table(codes.tolist(), EOS)
    np.testing.assert_array_equal(a.offsets, b.offsets)
    assert a.leaf_groups[a.walk([3, 4, EOS])] == (0, 3)
    with pytest.raises(ValueError, match="item 1: empty"):
        build_prefix_table([[2], []], EOS)
    with pytest.raises(ValueError, match="item 2: token sequence contains the EOS"):
        build_prefix_table([[2], [3], [4, EOS]], EOS)


def test_walk_paths_and_items_without_a_lookup_dictionary():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 6, (300, 3)) + 2  # collisions included
    table = build_prefix_table(codes, EOS)
    paths = np.concatenate([codes, np.full((300, 1), EOS), np.zeros((300, 1), int)], axis=1)
    paths[::7, 1] = 0  # leaves the trie
    paths[::11, 3] = 5  # no EOS
    nodes = walk_paths(table, paths)
    for row, node in zip(paths.tolist(), nodes.tolist(), strict=True):
        cut = row[: row.index(EOS) + 1] if EOS in row else None
        assert node == (table.walk(cut) if cut else -1)
    seqs = paths.reshape(30, 10, 5)
    scores = -rng.random((30, 10))
    scores[3, 4] = -np.inf
    walked = sequences_to_items(seqs, scores, table, 15, with_scores=True)
    looked = sequences_to_items(seqs, scores, table, 15, leaf_sequences(table), with_scores=True)
    for a, b in zip(walked, looked, strict=True):
        np.testing.assert_array_equal(a, b)

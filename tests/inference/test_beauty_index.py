"""The real Beauty semantic index (13 colliding items) through the prefix table and ranking."""

import numpy as np

from jaxrec.indexing.item_index import ItemIndex
from jaxrec.indexing.trie import build_prefix_table
from jaxrec.inference.decoding import leaf_sequences, sequences_to_items

EOS = 1


def test_every_beauty_item_is_reachable_and_collisions_expand(shared_data):
    index = ItemIndex.from_json(str(shared_data / "lcrec" / "Beauty.index.json"))
    token_id = {t: i + 3 for i, t in enumerate(index.item_tokens())}
    seqs = [[token_id[t] for t in s] for s in index.tokens]
    table = build_prefix_table(seqs, EOS)
    lookup = leaf_sequences(table)
    assert len(lookup) == 12088  # distinct codes
    assert sorted(i for items in lookup.values() for i in items) == list(range(12101))
    groups = [g for g in lookup.values() if len(g) > 1]
    assert sum(len(g) - 1 for g in groups) == index.num_colliding_items() == 13
    # A "decoded" list: one colliding code first, then two ordinary items.
    shared = next(k for k, g in lookup.items() if len(g) > 1)
    plain = [k for k, g in lookup.items() if len(g) == 1][:2]
    decoded = np.array([[list(k) + [EOS] for k in [shared, *plain]]])
    ranked, invalid = sequences_to_items(decoded, np.array([[-1.0, -2.0, -3.0]]), table, 20)
    expect = list(lookup[shared]) + [lookup[plain[0]][0], lookup[plain[1]][0]]
    assert ranked[0, : len(expect)].tolist() == expect
    assert (ranked[0, len(expect) :] == -1).all() and not invalid.any()

"""Static-shape prefix tables: the trie of all valid item token sequences, usable in `jax.jit`.

Every item's path is its token-id sequence followed by EOS. The trie is stored in CSR form over
a single global node numbering (node 0 is the root):

    children of node n  =  edge slots offsets[n] .. offsets[n+1]-1
    edge e              =  (tokens[e]: token id, targets[e]: child node)

A decoder keeps one node id per beam. At node n the allowed next tokens are
`tokens[offsets[n] + k]` for `k < degree[n]`; those are gathered with a fixed
`max_children`-wide window, so every shape is static. After EOS the beam sits on a leaf
(degree 0): only EOS/padding follows. `leaf_items[node]` is the item id of a leaf (the smallest
one when items collide); `leaf_groups` lists every item of each leaf, so colliding items are never
lost: evaluation expands a leaf into all of its items.

Example (items 0: [5, 7], 1: [5, 8], 2: [6, 7]; EOS = 1):

    root(0) ─5→ n1 ─7→ n3 ─EOS→ leaf(6)
                   └8→ n4 ─EOS→ leaf(7)
            └6→ n2 ─7→ n5 ─EOS→ leaf(8)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from jaxrec.data.dataset import DataError


@dataclasses.dataclass(frozen=True)
class PrefixTable:
    """CSR trie over token ids (see module docstring). Arrays are numpy; pass them to jit as is.

    Attributes:
      offsets: int32[num_nodes + 1] first edge slot of each node.
      tokens: int32[num_edges + max_children] token id per edge (padded with -1 at the end so a
        `max_children` window from any offset stays in bounds).
      targets: int32[num_edges + max_children] child node per edge (padding: 0).
      leaf_items: int32[num_nodes] item id at leaves, -1 elsewhere.
      depth: int32[num_nodes] number of tokens from the root.
      max_children: widest fan-out (static).
      max_length: longest path in tokens, EOS included (static).
      eos_id: the end-of-sequence token id.
      leaf_groups: leaf node -> all items on it (ascending); more than one only on collisions.
    """

    offsets: np.ndarray
    tokens: np.ndarray
    targets: np.ndarray
    leaf_items: np.ndarray
    depth: np.ndarray
    max_children: int
    max_length: int
    eos_id: int
    leaf_groups: dict[int, tuple[int, ...]]

    @property
    def num_nodes(self) -> int:
        return len(self.offsets) - 1

    @property
    def degree(self) -> np.ndarray:
        return np.diff(self.offsets)

    def arrays(self) -> dict[str, np.ndarray]:
        """The device-side part, a pytree of arrays for jitted code."""
        return {
            "offsets": self.offsets,
            "tokens": self.tokens,
            "targets": self.targets,
            "leaf_items": self.leaf_items,
        }

    def allowed_tokens(self, node: int) -> list[int]:
        """Token ids allowed after the prefix ending at `node` (host-side, for tests/peers)."""
        lo, hi = self.offsets[node], self.offsets[node + 1]
        return self.tokens[lo:hi].tolist()

    def walk(self, token_ids: Sequence[int]) -> int:
        """Node reached by following `token_ids` from the root, or -1 if it leaves the trie."""
        node = 0
        for t in token_ids:
            lo, hi = self.offsets[node], self.offsets[node + 1]
            hits = np.flatnonzero(self.tokens[lo:hi] == t)
            if len(hits) == 0:
                return -1
            node = int(self.targets[lo + hits[0]])
        return node

    def items_for(self, token_ids: Sequence[int]) -> tuple[int, ...]:
        """All items whose full sequence (EOS optional at the end) is `token_ids`; () if none."""
        ids = list(token_ids)
        if not ids or ids[-1] != self.eos_id:
            ids.append(self.eos_id)
        node = self.walk(ids)
        return self.leaf_groups.get(node, ()) if node >= 0 else ()


def build_prefix_table(sequences: Sequence[Sequence[int]], eos_id: int) -> PrefixTable:
    """Build the trie of `sequences[item]` (token ids, without EOS).

    Sequences may differ in length (e.g. tokenized titles) and may collide; a sequence that is a
    strict prefix of another is fine, since EOS marks where each item ends.
    """
    if not len(sequences):
        raise DataError("cannot build a prefix table for an empty catalogue")
    children: list[dict[int, int]] = [{}]
    depth = [0]
    leaf_groups: dict[int, list[int]] = {}
    for item, seq in enumerate(sequences):
        if len(seq) == 0:
            raise DataError(f"item {item}: empty token sequence")
        if eos_id in seq:
            raise DataError(f"item {item}: token sequence contains the EOS id {eos_id}")
        node = 0
        for t in list(seq) + [eos_id]:
            t = int(t)
            nxt = children[node].get(t)
            if nxt is None:
                nxt = len(children)
                children[node][t] = nxt
                children.append({})
                depth.append(depth[node] + 1)
            node = nxt
        leaf_groups.setdefault(node, []).append(item)

    num_nodes = len(children)
    degree = np.array([len(c) for c in children], dtype=np.int32)
    offsets = np.zeros(num_nodes + 1, dtype=np.int32)
    np.cumsum(degree, out=offsets[1:])
    max_children = int(degree.max())
    num_edges = int(offsets[-1])
    tokens = np.full(num_edges + max_children, -1, dtype=np.int32)
    targets = np.zeros(num_edges + max_children, dtype=np.int32)
    for n, kids in enumerate(children):
        # Sorted by token id so the table is canonical for a given catalogue.
        for k, (t, child) in enumerate(sorted(kids.items())):
            tokens[offsets[n] + k] = t
            targets[offsets[n] + k] = child
    leaf_items = np.full(num_nodes, -1, dtype=np.int32)
    for node, items in leaf_groups.items():
        leaf_items[node] = min(items)
    return PrefixTable(
        offsets=offsets,
        tokens=tokens,
        targets=targets,
        leaf_items=leaf_items,
        depth=np.array(depth, dtype=np.int32),
        max_children=max_children,
        max_length=int(max(depth)),
        eos_id=int(eos_id),
        leaf_groups={n: tuple(sorted(v)) for n, v in leaf_groups.items()},
    )


def prefix_table_for_index(
    token_sequences: Sequence[Sequence[str]],
    encode: Callable[[Sequence[str]], Sequence[int]],
    eos_id: int,
) -> PrefixTable:
    """Trie over an `ItemIndex`'s token strings, mapped to vocabulary ids by `encode`.

    `encode` turns one item's token strings into token ids (for semantic ids one id per token;
    for titles the SentencePiece pieces of the text).
    """
    return build_prefix_table([list(encode(seq)) for seq in token_sequences], eos_id)

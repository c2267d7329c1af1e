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

Example (items 0: [5, 7], 1: [5, 8], 2: [6, 7]; EOS = 1; nodes are numbered in the order
item-by-item insertion would create them):

    root(0) ─5→ n1 ─7→ n2 ─EOS→ leaf(3)
                   └8→ n4 ─EOS→ leaf(5)
            └6→ n6 ─7→ n7 ─EOS→ leaf(8)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np

from jaxrec.data.dataset import DataError


class LeafGroups(Mapping):
    """Leaf node -> all items on it (ascending), stored as arrays (a dict of ten million tuples
    would take gigabytes). Iterates leaves in node order.

    Attributes:
      nodes: int64[num_leaves] leaf node ids, ascending.
      starts: int64[num_leaves + 1] first slot of each leaf's items in `members`.
      members: int32[num_items] item ids grouped by leaf, ascending within a leaf.
    """

    def __init__(self, nodes: np.ndarray, starts: np.ndarray, members: np.ndarray):
        self.nodes, self.starts, self.members = nodes, starts, members

    def _slot(self, node) -> int:
        k = int(np.searchsorted(self.nodes, node))
        if k == len(self.nodes) or self.nodes[k] != node:
            raise KeyError(node)
        return k

    def __getitem__(self, node) -> tuple[int, ...]:
        k = self._slot(node)
        return tuple(self.members[self.starts[k] : self.starts[k + 1]].tolist())

    def __iter__(self) -> Iterator[int]:
        return iter(self.nodes.tolist())

    def __len__(self) -> int:
        return len(self.nodes)

    def sizes(self) -> np.ndarray:
        """int64[num_leaves] items per leaf (more than one only on collisions)."""
        return np.diff(self.starts)


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
    leaf_groups: Mapping[int, tuple[int, ...]]

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


def _padded_paths(sequences, eos_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Item paths with EOS appended, `[n, max_len + 1]` int64 padded with -1, and their
    lengths `[n]` (EOS included); raises a DataError naming the first bad item."""
    if isinstance(sequences, np.ndarray) and sequences.ndim == 2:
        n, width = sequences.shape
        lengths = np.full(n, width, np.int64)
        flat = sequences.astype(np.int64).reshape(-1)
    else:
        lengths = np.fromiter((len(s) for s in sequences), np.int64, len(sequences))
        flat = np.fromiter((int(t) for s in sequences for t in s), np.int64, int(lengths.sum()))
    empty = np.flatnonzero(lengths == 0)
    if len(empty):
        raise DataError(f"item {int(empty[0])}: empty token sequence")
    owner = np.repeat(np.arange(len(lengths)), lengths)  # [total] item of each token
    with_eos = np.flatnonzero(flat == eos_id)
    if len(with_eos):
        raise DataError(
            f"item {int(owner[with_eos[0]])}: token sequence contains the EOS id {eos_id}"
        )
    if (flat < 0).any():
        bad = int(owner[np.flatnonzero(flat < 0)[0]])
        raise DataError(f"item {bad}: negative token id")
    paths = np.full((len(lengths), int(lengths.max()) + 1), -1, np.int64)
    starts = np.cumsum(lengths) - lengths
    paths[owner, np.arange(len(flat)) - starts[owner]] = flat
    paths[np.arange(len(lengths)), lengths] = eos_id
    return paths, lengths + 1


def build_prefix_table(sequences: Sequence[Sequence[int]] | np.ndarray, eos_id: int) -> PrefixTable:
    """Build the trie of `sequences[item]` (token ids, without EOS; a list of lists or an
    `[n, k]` array).

    Sequences may differ in length (e.g. tokenized titles) and may collide; a sequence that is a
    strict prefix of another is fine, since EOS marks where each item ends.

    Vectorised level by level (about 1 s per million items of 4 tokens): the distinct prefixes
    of each depth are `np.unique` over (parent prefix, token). Nodes are numbered as if the items
    were inserted one by one in id order (by the first item that reaches them, then by depth),
    edges of a node are sorted by token id, so the table is canonical for a given catalogue.
    """
    if not len(sequences):
        raise DataError("cannot build a prefix table for an empty catalogue")
    paths, path_len = _padded_paths(sequences, eos_id)  # [n, L], [n]
    n, max_len = paths.shape
    radix = int(paths.max()) + 1
    local = np.zeros(n, np.int64)  # each item's prefix id at the current depth (root: 0)
    leaf_local = np.zeros(n, np.int64)  # each item's prefix id at its full path's depth
    # Per depth d >= 1: first item, parent's local id and token of each distinct prefix.
    first_item, parent_local, token = [], [], []
    for d in range(1, max_len + 1):
        active = np.flatnonzero(path_len >= d)  # ascending item ids
        keys = local[active] * radix + paths[active, d - 1]
        uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        first_item.append(active[first])
        parent_local.append(uniq // radix)
        token.append(uniq % radix)
        local[active] = inverse
        ends = path_len[active] == d
        leaf_local[active[ends]] = inverse[ends]
    counts = np.array([len(f) for f in first_item])
    depth_of = np.repeat(np.arange(1, max_len + 1), counts)  # [nodes - 1]
    order = np.lexsort((depth_of, np.concatenate(first_item)))  # insertion order
    global_id = np.empty(len(order), np.int64)
    global_id[order] = np.arange(1, len(order) + 1)
    base = np.concatenate([[0], np.cumsum(counts)])  # first slot of each depth
    parent = np.concatenate(
        [np.zeros(counts[0], np.int64)]
        + [global_id[base[d - 1] + parent_local[d]] for d in range(1, max_len)]
    )
    child_tokens = np.concatenate(token)

    num_nodes = len(order) + 1
    degree = np.bincount(parent, minlength=num_nodes)
    offsets = np.zeros(num_nodes + 1, dtype=np.int32)
    np.cumsum(degree, out=offsets[1:])
    max_children = int(degree.max())
    num_edges = int(offsets[-1])
    edge_order = np.lexsort((child_tokens, parent))  # by node, then token id
    tokens = np.full(num_edges + max_children, -1, dtype=np.int32)
    targets = np.zeros(num_edges + max_children, dtype=np.int32)
    tokens[:num_edges] = child_tokens[edge_order]
    targets[:num_edges] = global_id[edge_order]
    depth = np.zeros(num_nodes, np.int32)
    depth[global_id] = depth_of
    # Each item's leaf: the node of its whole path (EOS included).
    item_leaf = global_id[base[path_len - 1] + leaf_local]  # [n]
    leaf_items = np.full(num_nodes, -1, dtype=np.int32)
    by_leaf = np.argsort(item_leaf, kind="stable")  # items grouped by leaf, ids ascending
    leaves, starts = np.unique(item_leaf[by_leaf], return_index=True)
    leaf_items[leaves] = by_leaf[starts]
    return PrefixTable(
        offsets=offsets,
        tokens=tokens,
        targets=targets,
        leaf_items=leaf_items,
        depth=depth,
        max_children=max_children,
        max_length=int(depth.max()),
        eos_id=int(eos_id),
        leaf_groups=LeafGroups(
            leaves.astype(np.int64),
            np.append(starts, n).astype(np.int64),
            by_leaf.astype(np.int32),
        ),
    )


def walk_paths(table: PrefixTable, paths: np.ndarray) -> np.ndarray:
    """Vectorised `PrefixTable.walk`: the node each row of `paths [N, T]` reaches, following
    its tokens up to and including its first EOS; -1 where a row leaves the trie or has no EOS.

    Each step gathers a `max_children` window of the current nodes' edges, so the cost is
    O(N * T * max_children), independent of the catalogue's size.
    """
    paths = np.asarray(paths)
    rows, steps = paths.shape
    node = np.zeros(rows, np.int64)
    alive = np.ones(rows, bool)
    done = np.zeros(rows, bool)  # EOS followed
    k = np.arange(table.max_children)
    for t in range(steps):
        step = alive & ~done
        if not step.any():
            break
        tok = paths[:, t]
        lo = table.offsets[node].astype(np.int64)
        degree = table.offsets[node + 1] - lo
        window = table.tokens[lo[:, None] + k]  # [N, max_children]
        match = (window == tok[:, None]) & (k < degree[:, None])
        found = match.any(axis=1)
        nxt = table.targets[lo + match.argmax(axis=1)]
        node = np.where(step & found, nxt, node)
        alive &= ~step | found
        done |= step & (tok == table.eos_id)
    return np.where(alive & done, node, -1)


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

"""`SidVocabulary`: a vocabulary of semantic-id tokens only, for models trained from scratch on
item ids (TIGER): no SentencePiece pieces in the embedding or the softmax.

Ids: 0 padding (also the decoder start token), 1 EOS, 2 unknown, then the index's item tokens
in `ItemIndex.item_tokens()` order (level letter, then code), then any extra tokens (task
markers, attribute tokens of the auxiliary tasks in `jaxrec.recipes.sid_aux`), which never appear in
an item's semantic id and so are never produced by the constrained search.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from jaxrec.indexing.item_index import ItemIndex

PAD_ID, EOS_ID, UNK_ID = 0, 1, 2
NUM_RESERVED = 3


@dataclasses.dataclass(frozen=True)
class SidVocabulary:
    """Item tokens <-> ids, and every item's token ids (`codes [num_items, k]`)."""

    tokens: tuple[str, ...]
    codes: np.ndarray  # [num_items, k] int32
    extra_tokens: tuple[str, ...] = ()

    @classmethod
    def from_index(cls, index: ItemIndex) -> SidVocabulary:
        if index.is_text:
            raise ValueError("a semantic-id vocabulary needs item tokens, not a text index")
        tokens = tuple(index.item_tokens())
        ids = {t: i + NUM_RESERVED for i, t in enumerate(tokens)}
        levels = {len(seq) for seq in index.tokens}
        if len(levels) != 1:
            raise ValueError(f"items have different numbers of tokens: {sorted(levels)}")
        codes = np.array([[ids[t] for t in seq] for seq in index.tokens], np.int32)
        return cls(tokens, codes)

    def with_extra_tokens(self, names: Sequence[str]) -> SidVocabulary:
        """The same vocabulary with `names` appended after the item tokens (item ids kept)."""
        names = tuple(names)
        taken = set(self.tokens) | set(self.extra_tokens)
        clash = sorted(taken.intersection(names)) or sorted(
            {n for n in names if names.count(n) > 1}
        )
        if clash:
            raise ValueError(f"extra tokens already in the vocabulary: {clash[:5]}")
        return dataclasses.replace(self, extra_tokens=self.extra_tokens + names)

    def token_id(self, name: str) -> int:
        """Id of an extra token (a task marker or attribute token)."""
        try:
            return NUM_RESERVED + len(self.tokens) + self.extra_tokens.index(name)
        except ValueError:
            raise KeyError(f"{name!r} is not an extra token of this vocabulary") from None

    @property
    def eos_id(self) -> int:
        return EOS_ID

    @property
    def vocab_size(self) -> int:
        return NUM_RESERVED + len(self.tokens) + len(self.extra_tokens)

    @property
    def levels(self) -> int:
        return int(self.codes.shape[1])

    def padded_vocab_size(self, multiple: int = 64) -> int:
        """Embedding rows: the vocabulary rounded up (rows past it are never targets)."""
        return -(-self.vocab_size // multiple) * multiple

    def decode(self, ids: Sequence[int]) -> str:
        """Token ids -> text ("<a_1><b_2>"), stopping at EOS, skipping padding."""
        out = []
        for i in ids:
            if i == EOS_ID:
                break
            if NUM_RESERVED <= i < NUM_RESERVED + len(self.tokens):
                out.append(self.tokens[i - NUM_RESERVED])
            elif i >= NUM_RESERVED + len(self.tokens):
                out.append(self.extra_tokens[i - NUM_RESERVED - len(self.tokens)])
            elif i == UNK_ID:
                out.append("<unk>")
        return "".join(out)

    def item_sequences(self) -> list[list[int]]:
        """Every item's token ids (without EOS), for the decoding trie."""
        return self.codes.tolist()

"""`ItemIndex`: item id <-> token sequence, the one interface tasks and decoding rely on.

Whatever scheme produced the ids (RQ-VAE semantic ids, random numeric ids, sequential ids,
titles), an `ItemIndex` is a list of token sequences, one per item id. Semantic and numeric
schemes use *item tokens* that are added to the LLM vocabulary as single ids (`<a_12>`);
the title scheme uses plain text (`tokens` hold the title as one string and `is_text` is True),
which the vocabulary tokenizes with SentencePiece.

On disk this is LC-Rec's `.index.json`: `{"item_id": ["<a_183>", "<b_70>", ...]}`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections import defaultdict

from jaxrec.data.dataset import DataError

SEMANTIC_TOKEN = re.compile(r"^<([a-z])_(\d+)>$")


@dataclasses.dataclass(frozen=True)
class ItemIndex:
    """Token sequence of every item (`tokens[i]` for item id i).

    Attributes:
      tokens: per item, a tuple of token strings (item tokens such as "<a_12>", or a single
        text string when `is_text`).
      scheme: "rqvae", "random", "sequential", "title" or "loaded".
      is_text: tokens are free text to be tokenized, not vocabulary additions.
    """

    tokens: tuple[tuple[str, ...], ...]
    scheme: str = "loaded"
    is_text: bool = False

    @property
    def num_items(self) -> int:
        return len(self.tokens)

    @property
    def levels(self) -> int:
        """Length of the longest token sequence."""
        return max(len(t) for t in self.tokens)

    def item_tokens(self) -> list[str]:
        """The distinct new vocabulary tokens, in a stable order (level letter, then code).

        Empty for text schemes. These are appended after the base vocabulary, one id each.
        """
        if self.is_text:
            return []
        distinct = {tok for seq in self.tokens for tok in seq}

        def key(tok: str):
            m = SEMANTIC_TOKEN.match(tok)
            return (0, m.group(1), int(m.group(2)), "") if m else (1, "", 0, tok)

        return sorted(distinct, key=key)

    def collisions(self) -> dict[tuple[str, ...], list[int]]:
        """Token sequences shared by more than one item -> those items (ascending)."""
        groups: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for item, seq in enumerate(self.tokens):
            groups[seq].append(item)
        return {seq: items for seq, items in groups.items() if len(items) > 1}

    def num_colliding_items(self) -> int:
        """Items whose sequence is shared (counting all but the first of each group)."""
        return sum(len(v) - 1 for v in self.collisions().values())

    def format_item(self, item: int) -> str:
        """The item as it appears in a prompt or target, e.g. "<a_1><b_2><c_3><d_4>"."""
        return "".join(self.tokens[item])

    def to_json(self, path: str, dataset=None) -> None:
        """Write LC-Rec's `.index.json`; with `dataset`, also the record of which items it
        indexes (`jaxrec.indexing.binding`), else any old record beside `path` is removed."""
        from jaxrec.indexing import binding

        obj = {str(i): list(seq) for i, seq in enumerate(self.tokens)}
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False)
            f.write("\n")
        if dataset is not None:
            if dataset.num_items != self.num_items:
                raise ValueError(f"{self.num_items} items indexed, dataset has {dataset.num_items}")
            binding.write_record(path, dataset)
        elif os.path.exists(binding.record_path(path)):
            os.remove(binding.record_path(path))
        os.replace(tmp, path)

    @classmethod
    def from_json(cls, path: str, num_items: int | None = None, scheme: str = "loaded"):
        """Read an LC-Rec `.index.json`, checking every record.

        Errors name the file and item: missing items (when `num_items` is given), non-dense ids,
        malformed tokens, mixed level counts for semantic tokens.
        """
        from jaxrec.data.formats import read_json_object

        obj = read_json_object(path)
        n = num_items if num_items is not None else len(obj)
        missing = [i for i in range(n) if str(i) not in obj]
        if missing:
            raise DataError(f"{path}: {len(missing)} item(s) missing, first ids {missing[:5]}")
        extra = sorted(set(obj) - {str(i) for i in range(n)})
        if extra:
            raise DataError(f"{path}: unknown item id(s) {extra[:5]} (catalogue has {n} items)")
        tokens = []
        is_text = False
        for i in range(n):
            seq = obj[str(i)]
            if isinstance(seq, str):
                seq = [seq]
            if not isinstance(seq, list) or not seq or not all(isinstance(t, str) for t in seq):
                raise DataError(f"{path}: item {i}: expected a non-empty list of token strings")
            for t in seq:
                if t.startswith("<") and t.endswith(">") and not SEMANTIC_TOKEN.match(t):
                    raise DataError(f"{path}: item {i}: malformed token {t!r} (expected <x_N>)")
            if not all(SEMANTIC_TOKEN.match(t) for t in seq):
                is_text = True
            tokens.append(tuple(seq))
        if not is_text:
            lengths = {len(s) for s in tokens}
            if len(lengths) > 1:
                counts = defaultdict(int)
                for s in tokens:
                    counts[len(s)] += 1
                first_odd = next(
                    i for i, s in enumerate(tokens) if len(s) != max(counts, key=counts.get)
                )
                raise DataError(
                    f"{path}: mixed level counts {dict(counts)}; item {first_odd} has "
                    f"{len(tokens[first_odd])} tokens"
                )
            for i, seq in enumerate(tokens):
                letters = [SEMANTIC_TOKEN.match(t).group(1) for t in seq]
                if len(set(letters)) != len(letters):
                    raise DataError(f"{path}: item {i}: repeated level prefix in {seq}")
        else:
            bad = next(
                (i for i, s in enumerate(tokens) if any(SEMANTIC_TOKEN.match(t) for t in s)), None
            )
            if bad is not None:
                raise DataError(
                    f"{path}: item {bad}: mixes item tokens with free text ({list(tokens[bad])})"
                )
        return cls(tokens=tuple(tokens), scheme=scheme, is_text=is_text)

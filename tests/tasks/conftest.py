"""Small datasets for task tests: text, ratings and fixed negatives, plus a semantic index."""

from __future__ import annotations

import numpy as np
import pytest

from jaxrec.data.canonical import write_dataset
from jaxrec.data.dataset import Dataset, Item
from jaxrec.indexing.item_index import ItemIndex

_WORDS = ["rose", "lavender", "shea", "cocoa", "argan", "mint", "citrus", "velvet", "matte",
          "glossy", "silky", "pure"]  # fmt: skip
_KINDS = ["lotion", "serum", "cream", "balm", "oil", "mask", "soap", "gel", "mist", "polish"]


def make_dataset(num_users: int = 30, num_items: int = 40, seed: int = 0, name="Tiny") -> Dataset:
    """Users with 4-12 distinct items, titles for all items, ratings, 20 fixed negatives."""
    rng = np.random.default_rng(seed)
    seqs = [
        rng.choice(num_items, size=int(rng.integers(4, 13)), replace=False)
        for _ in range(num_users)
    ]
    items = [
        Item(
            original_id=f"I{i}",
            title=f"{_WORDS[i % len(_WORDS)].title()} {_KINDS[i % len(_KINDS)].title()} {i}",
            description=f"A {_WORDS[(3 * i) % len(_WORDS)]} {_KINDS[i % len(_KINDS)]}.",
            categories=("Beauty", _KINDS[i % len(_KINDS)].title()),
        )
        for i in range(num_items)
    ]
    ratings = [rng.integers(1, 6, size=len(s)).astype(np.float32) for s in seqs]
    ratings[0][1] = np.nan  # one unknown rating
    negatives = np.stack(
        [rng.choice(np.setdiff1d(np.arange(num_items), s), size=20, replace=False) for s in seqs]
    )
    return Dataset(
        name=name,
        users=[f"U{u}" for u in range(num_users)],
        sequences=seqs,
        items=items,
        ratings=ratings,
        negatives=negatives,
        metadata={"name": name},
    )


def make_index(num_items: int, seed: int = 0, levels: int = 3, codes: int = 8) -> ItemIndex:
    """Distinct semantic ids <a_x><b_y><c_z> for every item."""
    rng = np.random.default_rng(seed)
    flat = rng.choice(codes**levels, size=num_items, replace=False)
    letters = "abcdefgh"[:levels]
    tokens = tuple(
        tuple(
            f"<{letters[k]}_{(int(v) // codes ** (levels - 1 - k)) % codes}>" for k in range(levels)
        )
        for v in flat
    )
    return ItemIndex(tokens=tokens, scheme="test")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """A canonical dataset directory with an index (`Tiny.index.json`)."""
    d = tmp_path_factory.mktemp("tiny")
    ds = make_dataset()
    write_dataset(ds, str(d))
    make_index(ds.num_items).to_json(str(d / "Tiny.index.json"), dataset=ds)
    return str(d)

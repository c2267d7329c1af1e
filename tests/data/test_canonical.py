"""The canonical on-disk dataset round-trips exactly, and rejects inconsistent files."""

import json
import os

import numpy as np
import pytest

from jaxrec.data import canonical
from jaxrec.data.dataset import DataError, Dataset, Item


def _dataset(with_extras=True):
    rng = np.random.default_rng(0)
    seqs = [rng.choice(40, size=int(rng.integers(3, 9)), replace=False) for _ in range(12)]
    items = [
        Item(
            f"B{i:03d}",
            title=f"Item “{i}”",
            brand="Acme",
            categories=("Beauty", "Bath"),
            description="Soft.",
            price=None if i % 2 else 1.5 * i,
            attributes=(i, i + 1),
        )
        for i in range(40)
    ]
    ratings = [np.where(rng.random(len(s)) < 0.2, np.nan, rng.integers(1, 6, len(s))) for s in seqs]
    return Dataset(
        name="Tiny",
        users=[f"A{u}" for u in range(12)],
        sequences=seqs,
        items=items,
        ratings=ratings if with_extras else None,
        timestamps=[np.arange(len(s)) * 86400 + 1_300_000_000 for s in seqs]
        if with_extras
        else None,
        negatives=rng.integers(0, 40, (12, 5)) if with_extras else None,
        metadata={"name": "Tiny", "filters": {"kcore_removed_items": 3}, "leakage": {"x": 0.25}},
    )


@pytest.mark.parametrize("with_extras", [True, False])
def test_round_trip_is_exact(tmp_path, with_extras):
    ds = _dataset(with_extras)
    canonical.write_dataset(ds, tmp_path)
    again = canonical.read_dataset(str(tmp_path))
    assert again.equals(ds)
    # Writing what was read gives byte-identical files.
    canonical.write_dataset(again, tmp_path / "second")
    for name in os.listdir(tmp_path / "second"):
        assert (tmp_path / name).read_bytes() == (tmp_path / "second" / name).read_bytes()


def test_lcrec_layout_is_what_lcrec_tools_read(tmp_path):
    ds = _dataset()
    canonical.write_dataset(ds, tmp_path)
    inter = json.loads((tmp_path / "Tiny.inter.json").read_text())
    assert inter["0"] == ds.sequences[0].tolist()
    item = json.loads((tmp_path / "Tiny.item.json").read_text())["3"]
    assert item["title"] == "Item “3”" and item["description"] == "Soft."


def test_inconsistent_files_are_rejected(tmp_path):
    canonical.write_dataset(_dataset(), tmp_path)
    ratings = json.loads((tmp_path / "Tiny.rating.json").read_text())
    ratings["0"] = ratings["0"][:-1]
    (tmp_path / "Tiny.rating.json").write_text(json.dumps(ratings))
    with pytest.raises(DataError, match="user 'A0' has .* items but .* ratings"):
        canonical.read_dataset(str(tmp_path))


def test_non_dense_ids_and_missing_meta_are_rejected(tmp_path):
    canonical.write_dataset(_dataset(), tmp_path)
    inter = json.loads((tmp_path / "Tiny.inter.json").read_text())
    inter["99"] = inter.pop("3")
    (tmp_path / "Tiny.inter.json").write_text(json.dumps(inter))
    with pytest.raises(DataError, match=r"Tiny\.inter\.json: keys must be the dense ids"):
        canonical.read_dataset(str(tmp_path))
    os.remove(tmp_path / "Tiny.meta.json")
    with pytest.raises(DataError, match="not a prepared jaxrec dataset"):
        canonical.read_dataset(str(tmp_path))


def test_out_of_range_item_ids_are_rejected():
    with pytest.raises(DataError, match=r"item id outside \[0, 2\)"):
        Dataset(name="x", users=["a"], sequences=[[0, 1, 5]], items=[Item("p"), Item("q")])

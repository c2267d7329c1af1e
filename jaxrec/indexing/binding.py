"""Which dataset an item index belongs to: a record beside the index, checked by every consumer.

An `.index.json` (LC-Rec's format: `{"item_id": [tokens]}`) says nothing about which items its
dense ids are. `jaxrec index build` therefore writes a record beside it,

    {name}.index.json  ->  {name}.index.dataset.json
        {"dataset": "Beauty", "num_items": 12101, "item_map_fingerprint": "sha256:...",
         "source_ids": ["B0001", ...]}     # source item id of each dense id, in order

and `verify_index` compares it with the dataset's item-id mapping (the `original_id` of each
item in `{name}.item.json`). An index without a record (e.g. LC-Rec's released ones) is taken
to be keyed by source item id, which holds only when the dataset kept its source ids
(`--item-order original` on 0-based ids). Any mismatch is an error naming both files and the
first mismatching item: an index of other items trains and evaluates without complaint but
means nothing.
"""

from __future__ import annotations

import json
import os

from jaxrec.data.dataset import DataError, Dataset, item_map_fingerprint


def record_path(index_path: str) -> str:
    """`X.index.json` -> `X.index.dataset.json` (any `*.json` -> `*.dataset.json`)."""
    base = index_path[: -len(".json")] if index_path.endswith(".json") else index_path
    return base + ".dataset.json"


def dataset_record(ds: Dataset) -> dict:
    source_ids = [it.original_id for it in ds.items]
    return {
        "dataset": ds.name,
        "num_items": ds.num_items,
        "item_map_fingerprint": item_map_fingerprint(source_ids),
        "source_ids": source_ids,
    }


def write_record(index_path: str, ds: Dataset) -> str:
    path = record_path(index_path)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(dataset_record(ds), ensure_ascii=False))
        f.write("\n")
    os.replace(tmp, path)
    return path


def read_record(index_path: str) -> dict | None:
    from jaxrec.data.formats import read_json_object

    path = record_path(index_path)
    if not os.path.exists(path):
        return None
    rec = read_json_object(path)
    ids = rec.get("source_ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise DataError(f"{path}: 'source_ids' must be a list of strings")
    if rec.get("item_map_fingerprint") != item_map_fingerprint(ids):
        raise DataError(f"{path}: item_map_fingerprint does not match its source_ids")
    return rec


def verify_index(index_path: str, ds: Dataset, dataset_dir: str) -> None:
    """DataError unless the index at `index_path` indexes exactly `ds`'s items, in its order."""
    items_file = os.path.join(dataset_dir, f"{ds.name}.item.json")
    ours = [it.original_id for it in ds.items]
    rec = read_record(index_path)
    if rec is None:
        # No record: LC-Rec keys its indexes by its own (source) item ids.
        first = next((i for i, sid in enumerate(ours) if sid != str(i)), None)
        if first is not None:
            raise DataError(
                f"{index_path}: has no record of the dataset it indexes "
                f"({os.path.basename(record_path(index_path))}), so its keys are taken as source "
                f"item ids, but {items_file} gives dense item {first} the source id "
                f"{ours[first]!r}: rebuild it with `jaxrec index build`, or prepare the dataset "
                "with --item-order original"
            )
        return
    theirs = rec["source_ids"]
    if rec["item_map_fingerprint"] == item_map_fingerprint(ours):
        return
    first = next(
        (i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b),
        min(len(ours), len(theirs)),
    )
    mine = repr(ours[first]) if first < len(ours) else "absent"
    other = repr(theirs[first]) if first < len(theirs) else "absent"
    raise DataError(
        f"{index_path}: built for another item-id mapping than {items_file} "
        f"({len(theirs)} vs {len(ours)} items; dataset {rec.get('dataset')!r}): first mismatch "
        f"at item {first}, source id {other} in {record_path(index_path)} but {mine} in the "
        "dataset; rebuild the index with `jaxrec index build`"
    )

"""The canonical on-disk dataset: LC-Rec's layout plus what LC-Rec lacks, in the same style.

    DIR/{name}.inter.json      {"0": [item, ...], ...}       chronological (LC-Rec)
    DIR/{name}.item.json       {"0": {"title": ..., ...}}    item table (LC-Rec, extended)
    DIR/{name}.rating.json     {"0": [5.0, null, ...]}       aligned with inter (optional)
    DIR/{name}.time.json       {"0": [1388534400, ...]}      aligned with inter (optional)
    DIR/{name}.negatives.json  {"0": [item x 99], ...}       fixed ranking negatives (optional)
    DIR/{name}.user.map.json   {"0": "A1YJEY40YUW4SE", ...}  dense user id -> source user id
    DIR/{name}.meta.json       split, options, filter counts, leakage report, and the
                               fingerprint of the item-id mapping (see below)
    DIR/{name}.index.json      item tokens, written by `jaxrec index build` (LC-Rec)

The item-id mapping (dense id -> source item id) is the `original_id` of each record of
`{name}.item.json`; `meta.json` records its fingerprint (`item_map_fingerprint`), which
`read_dataset` checks and an index's dataset record refers to (`jaxrec.indexing.binding`).

`read_dataset(write_dataset(ds))` equals `ds` exactly (`Dataset.equals`).
"""

from __future__ import annotations

import glob
import itertools
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable

import numpy as np

from jaxrec.data.dataset import DataError, Dataset, Item, item_map_fingerprint
from jaxrec.data.formats import json_kind, read_json_object

FORMAT_VERSION = 1


def _dump(obj, path: str, indent: int | None = None) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        # json.dumps (one shot) uses the C encoder; json.dump streams through pure Python.
        f.write(json.dumps(obj, ensure_ascii=False, indent=indent))
        f.write("\n")
    os.replace(tmp, path)


def _item_record(item: Item) -> dict:
    return {
        "title": item.title,
        "description": item.description,
        "brand": item.brand,
        "categories": list(item.categories),
        "price": item.price,
        "attributes": list(item.attributes),
        "original_id": item.original_id,
    }


def write_dataset(ds: Dataset, out_dir: str) -> str:
    """Write `ds` in the canonical layout; returns the path of its `.inter.json`."""
    os.makedirs(out_dir, exist_ok=True)
    p = os.path.join(out_dir, ds.name)
    _dump({str(u): s.tolist() for u, s in enumerate(ds.sequences)}, p + ".inter.json")
    _dump({str(i): _item_record(it) for i, it in enumerate(ds.items)}, p + ".item.json")
    if ds.ratings is not None:
        _dump(
            {
                str(u): [None if math.isnan(x) else float(x) for x in r.tolist()]
                for u, r in enumerate(ds.ratings)
            },
            p + ".rating.json",
        )
    if ds.timestamps is not None:
        _dump({str(u): t.tolist() for u, t in enumerate(ds.timestamps)}, p + ".time.json")
    if ds.negatives is not None:
        _dump({str(u): n.tolist() for u, n in enumerate(ds.negatives)}, p + ".negatives.json")
    _dump({str(u): name for u, name in enumerate(ds.users)}, p + ".user.map.json")
    meta = {
        "format_version": FORMAT_VERSION,
        **ds.metadata,
        "item_map_fingerprint": ds.item_map_fingerprint(),
    }
    _dump(meta, p + ".meta.json", indent=2)
    return p + ".inter.json"


def check_out_dir(out_dir: str, overwrite: bool) -> None:
    """Refuse an existing, non-empty `out_dir` unless `overwrite` (checked before any work)."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise DataError(f"{out_dir}: exists and is not a directory")
    entries = sorted(os.listdir(out_dir)) if os.path.isdir(out_dir) else []
    if entries and not overwrite:
        raise DataError(
            f"{out_dir}: directory is not empty ({len(entries)} entries, e.g. {entries[0]!r}); "
            "pass --overwrite to replace it as a whole"
        )


def replace_dir(out_dir: str, write: Callable[[str], object]) -> None:
    """Run `write(tmp)` into a temporary sibling of `out_dir`, then swap it in as a whole.

    A failure leaves `out_dir` untouched; an existing `out_dir` is replaced entirely (nothing of
    the old directory survives), never merged into, so no stale file can outlive a rewrite.
    """
    out_dir = os.path.abspath(out_dir)
    parent, base = os.path.split(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{base}.tmp-", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if os.path.exists(out_dir):
        old = tempfile.mkdtemp(prefix=f".{base}.old-", dir=parent)
        os.rmdir(old)
        os.rename(out_dir, old)
        os.rename(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out_dir)


def write_dataset_dir(ds: Dataset, out_dir: str, overwrite: bool = False) -> str:
    """`write_dataset` into a fresh `out_dir` (see `check_out_dir`, `replace_dir`)."""
    check_out_dir(out_dir, overwrite)
    replace_dir(out_dir, lambda tmp: write_dataset(ds, tmp))
    return os.path.join(os.path.abspath(out_dir), f"{ds.name}.inter.json")


def find_dataset_name(data_dir: str) -> str:
    """The `{name}` of the single `{name}.inter.json` in `data_dir`."""
    if not os.path.isdir(data_dir):
        raise DataError(f"{data_dir}: not a directory")
    names = sorted(
        os.path.basename(f)[: -len(".inter.json")]
        for f in glob.glob(os.path.join(data_dir, "*.inter.json"))
    )
    if not names:
        raise DataError(f"{data_dir}: no *.inter.json file (not a prepared dataset)")
    if len(names) > 1:
        raise DataError(f"{data_dir}: several datasets ({names}); pass the name explicitly")
    return names[0]


def _dense_lists(path: str, obj: dict, count: int | None = None) -> list:
    """Values of a {"0": ..., "1": ...} object in key order; keys must be exactly 0..n-1."""
    n = len(obj) if count is None else count
    if len(obj) != n or any(str(k) not in obj for k in range(n)):
        raise DataError(f"{path}: keys must be the dense ids 0..{n - 1} ({len(obj)} keys found)")
    return [obj[str(k)] for k in range(n)]


def _item_id_lists(path: str, values: list) -> list:
    """Each user's value of an `.inter.json` as a list of integer item ids (integers, or strings
    of integers); anything else is a DataError naming the file, the user and the entry."""
    int32 = np.iinfo(np.int32)
    if all(isinstance(seq, list) for seq in values):  # the common case: integers only
        flat = list(itertools.chain.from_iterable(values))
        if set(map(type, flat)) <= {int}:  # ints only (a bool is not one here)
            try:
                arr = np.asarray(flat, np.int64)
                in_range = not arr.size or (int32.min <= arr.min() and arr.max() <= int32.max)
            except OverflowError:  # beyond int64
                in_range = False
            if in_range:
                return values
    out = []
    for u, seq in enumerate(values):
        user = f'"{u}"'  # the JSON key
        if not isinstance(seq, list):
            raise DataError(
                f"{path}: user {user}: expected a list of item ids, got {json_kind(seq)}"
            )
        ids = []
        for pos, item in enumerate(seq):
            try:
                if isinstance(item, bool) or not isinstance(item, int | str):
                    raise ValueError
                item_id = int(item)
            except ValueError:
                raise DataError(
                    f"{path}: user {user}, position {pos}: expected an integer item id, "
                    f"got {json_kind(item, show=True)}"
                ) from None
            if not int32.min <= item_id <= int32.max:
                raise DataError(f"{path}: user {user}, position {pos}: item id {item} out of range")
            ids.append(item_id)
        out.append(ids)
    return out


def read_dataset(data_dir: str, name: str | None = None) -> Dataset:
    """Read a dataset written by `write_dataset` (validates every file against the others)."""
    name = name or find_dataset_name(data_dir)
    p = os.path.join(data_dir, name)
    meta_path = p + ".meta.json"
    if not os.path.exists(meta_path):
        raise DataError(
            f"{meta_path}: missing; {data_dir} is not a prepared jaxrec dataset "
            "(run `jaxrec data prepare` first)"
        )
    metadata = read_json_object(meta_path)
    version = metadata.pop("format_version", None)
    fingerprint = metadata.pop("item_map_fingerprint", None)
    if version != FORMAT_VERSION:
        raise DataError(f"{meta_path}: format_version {version!r}, expected {FORMAT_VERSION}")
    inter_path = p + ".inter.json"
    seqs = _item_id_lists(inter_path, _dense_lists(inter_path, read_json_object(inter_path)))
    num_users = len(seqs)
    item_path = p + ".item.json"
    items = []
    for i, rec in enumerate(_dense_lists(item_path, read_json_object(item_path))):
        try:
            items.append(
                Item(
                    original_id=rec["original_id"],
                    title=rec["title"],
                    brand=rec["brand"],
                    categories=tuple(rec["categories"]),
                    description=rec["description"],
                    price=rec["price"],
                    attributes=tuple(rec["attributes"]),
                )
            )
        except (KeyError, TypeError) as e:
            raise DataError(f"{item_path}: item {i}: bad or missing field {e}") from None
    users_path = p + ".user.map.json"
    users = _dense_lists(users_path, read_json_object(users_path), num_users)

    def optional(suffix: str, convert):
        path = p + suffix
        if not os.path.exists(path):
            return None
        return [convert(v) for v in _dense_lists(path, read_json_object(path), num_users)]

    ratings = optional(
        ".rating.json", lambda r: np.array([np.nan if x is None else x for x in r], np.float32)
    )
    timestamps = optional(".time.json", lambda t: np.array(t, np.int64))
    negatives = optional(".negatives.json", lambda n: np.array(n, np.int32))
    if fingerprint is not None and fingerprint != item_map_fingerprint(
        [it.original_id for it in items]
    ):
        raise DataError(
            f"{item_path}: its item-id mapping does not match the fingerprint in {meta_path} "
            "(files from different preparations)"
        )
    try:
        return Dataset(
            name=name,
            users=[str(u) for u in users],
            sequences=[np.array(s, np.int32) for s in seqs],
            items=items,
            ratings=ratings,
            timestamps=timestamps,
            negatives=None if negatives is None else np.stack(negatives),
            metadata=metadata,
        )
    except DataError as e:
        raise DataError(f"{data_dir}: {e}") from None

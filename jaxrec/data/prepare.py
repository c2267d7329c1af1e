"""`prepare_dataset`: one entry from any supported raw layout to a `Dataset`.

Sources (`input_path`; `meta_path`):
  * amazon: `reviews_{Cat}_5.json.gz` (2014 or 2018, detected) or `ratings_{Cat}.csv`;
    `meta_{Cat}.json.gz`.
  * p5: `{Cat}.txt` or `sequential_data.txt`; `{Cat}_item2attributes.json` (found beside the
    txt by default) or `datamaps.json`.
  * lcrec: `{name}.inter.json` or its directory; `{name}.item.json` (found beside it).
  * synthetic: a directory written by `jaxrec data synth` (meta found inside it).
"""

from __future__ import annotations

import glob
import logging
import os
import re

from jaxrec.data import formats, synthetic
from jaxrec.data.dataset import DataError, Dataset, Item
from jaxrec.data.processing import PrepareOptions, build_dataset

log = logging.getLogger(__name__)

SOURCES = ("amazon", "p5", "lcrec", "synthetic")


def default_name(source: str, input_path: str) -> str:
    """A dataset name from the file name: reviews_Beauty_5.json.gz -> Beauty."""
    base = os.path.basename(os.path.normpath(input_path))
    for pattern in (
        r"^reviews_(.+?)(_5)?\.json(\.gz)?$",
        r"^ratings_(.+?)\.csv$",
        r"^(.+?)\.inter\.json$",
        r"^(.+?)\.txt$",
        r"^(.+?)(\.json)?(\.gz)?$",
    ):
        m = re.match(pattern, base)
        if m:
            name = m.group(1)
            return "P5" if name == "sequential_data" else name
    return source


def _read_p5(input_path: str, meta_path: str | None) -> tuple[formats.Interactions, dict | None]:
    inter = formats.read_sequence_txt(input_path)
    if meta_path is None:
        guess = re.sub(r"\.txt$", "_item2attributes.json", input_path)
        meta_path = guess if os.path.exists(guess) else None
    if meta_path is None:
        return inter, None
    if os.path.basename(meta_path) == "datamaps.json":
        id2item = formats.read_p5_datamaps(meta_path)
        return inter, {k: Item(original_id=v) for k, v in id2item.items()}
    attrs = formats.read_item2attributes(meta_path)
    # S3-Rec's attribute file omits items without attributes: those get an empty bag (counted).
    seen = set(inter.items)
    missing = seen - set(attrs)
    if missing:
        log.warning("%s: %d item(s) have no attributes", meta_path, len(missing))
        attrs.update({it: Item(original_id=it) for it in missing})
    return inter, attrs


def _read_lcrec(input_path: str, meta_path: str | None):
    if os.path.isdir(input_path):
        matches = sorted(glob.glob(os.path.join(input_path, "*.inter.json")))
        if len(matches) != 1:
            raise DataError(f"{input_path}: expected one *.inter.json, found {len(matches)}")
        input_path = matches[0]
    inter = formats.read_lcrec_inter(input_path)
    if meta_path is None:
        guess = re.sub(r"\.inter\.json$", ".item.json", input_path)
        meta_path = guess if os.path.exists(guess) else None
    return input_path, inter, (formats.read_lcrec_items(meta_path) if meta_path else None)


def prepare_dataset(
    source: str,
    input_path: str,
    meta_path: str | None = None,
    options: PrepareOptions = PrepareOptions(),
    name: str | None = None,
    amazon_version: int | None = None,
) -> Dataset:
    """Read raw files of `source` (see module docstring) and apply the processing options."""
    if source not in SOURCES:
        raise DataError(f"unknown source {source!r}; expected one of {SOURCES}")
    if source == "synthetic":
        reviews, meta = synthetic.raw_paths(input_path)
        ds = prepare_dataset("amazon", reviews, meta, options, name or "synthetic", 2014)
        ds.metadata["oracle"] = synthetic.oracle_for_dataset(input_path, ds)
        return ds
    if source == "amazon":
        if input_path.endswith(".csv"):
            inter = formats.read_amazon_ratings_csv(input_path, amazon_version or 2014)
        else:
            inter = formats.read_amazon_reviews(input_path, amazon_version)
        meta = formats.read_amazon_meta(meta_path, amazon_version) if meta_path else None
    elif source == "p5":
        inter, meta = _read_p5(input_path, meta_path)
    else:
        input_path, inter, meta = _read_lcrec(input_path, meta_path)
    if not len(inter):
        raise DataError(f"{input_path}: no interactions (the file has no records)")
    name = name or default_name(source, input_path)
    ds = build_dataset(inter, meta, name, options, meta_path=meta_path)
    ds.metadata["input"] = {
        "source": source,
        "input_path": os.path.abspath(input_path),
        "meta_path": os.path.abspath(meta_path) if meta_path else None,
    }
    return ds

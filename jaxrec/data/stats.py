"""Statistics of a prepared dataset or of a raw file, for `jaxrec data stats`."""

from __future__ import annotations

import os
from collections import Counter

import numpy as np

from jaxrec.data import canonical, formats, synthetic
from jaxrec.data.dataset import DataError, Dataset


def _length_stats(lengths: np.ndarray) -> dict[str, float]:
    return {
        "mean_length": round(float(lengths.mean()), 3),
        "median_length": float(np.median(lengths)),
        "min_length": int(lengths.min()),
        "max_length": int(lengths.max()),
    }


def dataset_stats(ds: Dataset) -> dict:
    """Sizes, sequence lengths, sparsity, and everything the processing filters removed."""
    lengths = np.array([len(s) for s in ds.sequences])
    out = {
        "name": ds.name,
        "users": ds.num_users,
        "items": ds.num_items,
        "interactions": ds.num_interactions,
        "density": round(ds.num_interactions / (ds.num_users * ds.num_items), 6),
        **_length_stats(lengths),
        "has_ratings": ds.has_ratings,
        "has_text": ds.has_text,
        "has_timestamps": ds.timestamps is not None,
        "negatives_per_user": 0 if ds.negatives is None else int(ds.negatives.shape[1]),
        "filters": ds.metadata.get("filters", {}),
        "leakage": ds.metadata.get("leakage", {}),
    }
    if "oracle" in ds.metadata:
        out["oracle"] = ds.metadata["oracle"]
    return out


def interactions_stats(inter: formats.Interactions) -> dict:
    """Raw counts of a file, before any filtering."""
    per_user = Counter(inter.users)
    pairs = len(set(zip(inter.users, inter.items, strict=True)))
    return {
        "source": inter.source,
        "users": len(per_user),
        "items": len(set(inter.items)),
        "interactions": len(inter),
        "duplicate_interactions": len(inter) - pairs,
        **_length_stats(np.array(list(per_user.values()))),
        "has_ratings": inter.has_ratings,
        "has_timestamps": inter.has_timestamps,
    }


def stats_for_path(path: str) -> dict:
    """Stats of a prepared dataset directory, a `jaxrec data synth` directory or a raw file."""
    if os.path.isdir(path):
        if any(f.endswith(".meta.json") for f in os.listdir(path)):
            return dataset_stats(canonical.read_dataset(path))
        if os.path.exists(os.path.join(path, synthetic.REVIEWS_FILE)):
            return interactions_stats(
                formats.read_amazon_reviews(synthetic.raw_paths(path)[0], 2014)
            )
        raise DataError(f"{path}: neither a prepared dataset nor a synthetic raw directory")
    base = os.path.basename(path)
    if base.endswith(".inter.json"):
        inter = formats.read_lcrec_inter(path)
    elif base.endswith(".txt"):
        inter = formats.read_sequence_txt(path)
    elif base.endswith(".csv"):
        inter = formats.read_amazon_ratings_csv(path)
    elif base.endswith((".json", ".json.gz", ".jsonl", ".jsonl.gz")):
        inter = formats.read_amazon_reviews(path)
    else:
        raise DataError(
            f"{path}: unknown file type (expected .txt, .inter.json, .csv, reviews .json[.gz] "
            "or a dataset directory)"
        )
    if not len(inter):
        raise DataError(f"{path}: no interactions (the file has no records)")
    return interactions_stats(inter)

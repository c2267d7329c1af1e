"""A TFDS builder over a canonical dataset directory (given as TFDS's `manual_dir`).

This lets seqio read prepared data with `seqio.TfdsDataSource`, and lets pods read the
TFRecords from a shared data_dir (e.g. GCS) instead of re-running preparation on every host:

    builder = tfds_builder("/data/beauty")           # registers TFDS name "jaxrec_beauty"
    build(builder_name="jaxrec_beauty", dataset_dir="/data/beauty", data_dir="gs://bucket/tfds")
    seqio.TfdsDataSource(tfds_name="jaxrec_beauty:1.0.0", tfds_data_dir="gs://bucket/tfds")

Each example is one leave-one-out example (see `Dataset.examples`): `user`, `history`
(capped item ids), `target`, `history_ratings` / `target_rating` (NaN when unknown) and
`negatives` (the user's fixed ranking negatives, empty when the dataset has none).
"""

from __future__ import annotations

import abc
import re

import numpy as np
import tensorflow_datasets as tfds

from jaxrec.data import canonical
from jaxrec.data.dataset import DEFAULT_HISTORY_CAP

TFDS_VERSION = "1.0.0"


class _CanonicalDatasetBuilder(tfds.core.GeneratorBasedBuilder, abc.ABC):
    """Base class; `tfds_builder` makes one registered subclass per dataset name."""

    VERSION = tfds.core.Version(TFDS_VERSION)
    RELEASE_NOTES = {TFDS_VERSION: "Leave-one-out examples from a jaxrec canonical dataset."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Pass the directory written by `jaxrec data prepare` as manual_dir."
    )
    HISTORY_CAP = DEFAULT_HISTORY_CAP

    @property
    @abc.abstractmethod
    def dataset_name(self) -> str:
        """The `{name}` of the canonical files."""

    def _info(self) -> tfds.core.DatasetInfo:
        features = tfds.features.FeaturesDict(
            {
                "user": np.int32,
                "history": tfds.features.Sequence(np.int32),
                "target": np.int32,
                "history_ratings": tfds.features.Sequence(np.float32),
                "target_rating": np.float32,
                "negatives": tfds.features.Sequence(np.int32),
            }
        )
        return self.dataset_info_from_configs(features=features, supervised_keys=None)

    def _split_generators(self, dl_manager):
        ds = canonical.read_dataset(str(dl_manager.manual_dir), self.dataset_name)
        return {
            split: self._generate_examples(ds, split) for split in ("train", "validation", "test")
        }

    def _generate_examples(self, ds, split):
        no_negatives = np.zeros((0,), np.int32)
        for k, ex in enumerate(ds.examples(split, self.HISTORY_CAP)):
            yield (
                f"{ex.user}-{k}",
                {
                    "user": ex.user,
                    "history": np.array(ex.history, np.int32),
                    "target": ex.target,
                    "history_ratings": np.array(
                        ex.ratings if ex.ratings is not None else [np.nan] * len(ex.history),
                        np.float32,
                    ),
                    "target_rating": np.nan if ex.target_rating is None else ex.target_rating,
                    "negatives": no_negatives if ds.negatives is None else ds.negatives[ex.user],
                },
            )


_BUILDERS: dict[str, type] = {}


def builder_name(dataset_name: str) -> str:
    """TFDS name of a dataset's builder: "Beauty" -> "jaxrec_beauty"."""
    snake = re.sub(r"[^0-9a-z]+", "_", dataset_name.lower()).strip("_")
    return f"jaxrec_{snake}"


def tfds_builder_class(dataset_name: str) -> type:
    """The registered builder class for `dataset_name` (created once per process)."""
    name = builder_name(dataset_name)
    if name not in _BUILDERS:
        class_name = "".join(part.capitalize() for part in name.split("_"))
        _BUILDERS[name] = type(
            class_name,
            (_CanonicalDatasetBuilder,),
            {"dataset_name": dataset_name, "name": name, "__module__": __name__},
        )
    return _BUILDERS[name]


def build(dataset_dir: str, data_dir: str, dataset_name: str | None = None):
    """Write the TFRecords of a canonical dataset into `data_dir`; returns the builder."""
    dataset_name = dataset_name or canonical.find_dataset_name(dataset_dir)
    builder = tfds_builder_class(dataset_name)(data_dir=data_dir)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=dataset_dir)
    )
    return builder

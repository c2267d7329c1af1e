"""A seqio `DataSource` of one task's text examples, built from a prepared dataset in shards
of users.

    source = UserShardedSource(dataset_source, "retrieval", users_per_shard=10_000)
    source.list_shards("train")
      -> ["users-00000-of-00003", "users-00001-of-00003", "users-00002-of-00003"]
    source.get_dataset("train", shard_info=seqio.ShardInfo(index=1, num_shards=3))
      -> {"inputs", "targets"} string scalars of users 10000..19999 (in user order)

A user's examples are a pure function of (dataset, task, split, user): their randomness is
seeded by (seed, task, split, user) (`jaxrec.tasks.examples`). So a shard builds its users'
examples on its own, and the shards read in order are the whole split. That is what lets
seqio's offline cache (`python -m seqio.scripts.cache_tasks_main`, an Apache Beam pipeline)
build every shard in its own worker, and each host of a multi-host run read only its shards.
Item-level tasks (item2index, index2item) carry no user data: they are one shard.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import seqio
import tensorflow as tf

from jaxrec.tasks import examples as ex_lib

USERS_PER_SHARD = 10_000


def shard_users(num_users: int, num_shards: int, index: int) -> range:
    """The contiguous, balanced user range of shard `index` of `num_shards`.

    >>> [list(shard_users(5, 2, i)) for i in range(2)]
    [[0, 1], [2, 3, 4]]
    """
    return range(index * num_users // num_shards, (index + 1) * num_users // num_shards)


def to_tf_dataset(examples: Sequence[ex_lib.TextExample]) -> tf.data.Dataset:
    """Text examples -> a dataset of {"inputs", "targets"} string scalars."""
    if not examples:
        empty = tf.constant([], dtype=tf.string)
        return tf.data.Dataset.from_tensor_slices({"inputs": empty, "targets": empty})
    inputs = np.array([e.inputs for e in examples], dtype=object)
    targets = np.array([e.targets for e in examples], dtype=object)
    return tf.data.Dataset.from_tensor_slices({"inputs": inputs, "targets": targets})


class UserShardedSource(seqio.DataSource):
    """One task of a `jaxrec.tasks.registry.DatasetSource`, in shards of `users_per_shard` users.

    Reading every shard uses the `DatasetSource`'s in-memory examples (built once per task
    and split); reading some shards (a Beam worker, one host of several) builds only theirs.
    """

    def __init__(
        self,
        source,  # jaxrec.tasks.registry.DatasetSource
        task: str,
        splits: Sequence[str],
        users_per_shard: int = USERS_PER_SHARD,
    ):
        if users_per_shard < 1:
            raise ValueError(f"users_per_shard must be positive, got {users_per_shard}")
        super().__init__(splits=splits)
        self.source = source
        self.task = task
        users = source.dataset.num_users
        item_level = task in ex_lib.ITEM_TASKS
        self.num_shards = 1 if item_level else max(1, math.ceil(users / users_per_shard))
        self._kind = "items" if item_level else "users"

    @property
    def supports_arbitrary_sharding(self) -> bool:
        return False

    def list_shards(self, split: str) -> Sequence[str]:
        n = self.num_shards
        return [f"{self._kind}-{i:05d}-of-{n:05d}" for i in range(n)]

    def shard_examples(self, split: str, index: int) -> list[ex_lib.TextExample]:
        """The examples of shard `index` (those of its users, in user order)."""
        if self.num_shards == 1:
            return self.source.examples(self.task, split)
        users = shard_users(self.source.dataset.num_users, self.num_shards, index)
        return self.source.examples(self.task, split, users)

    def get_dataset(
        self,
        split: str = "train",
        shuffle: bool = True,
        seed: int | None = None,
        shard_info: seqio.ShardInfo | None = None,
        *,
        sequence_length: Mapping[str, int] | None = None,
        use_cached: bool = False,
        num_epochs: int | None = 1,
    ) -> tf.data.Dataset:
        """The examples of this host's shards (all without `shard_info`), in shard order.

        `shuffle` and `seed` are unused: examples are built in a fixed order and seqio
        shuffles them after preprocessing.
        """
        del shuffle, seed, sequence_length, use_cached, num_epochs
        indices = list(range(self.num_shards))
        if shard_info is not None:
            indices = indices[shard_info.index :: shard_info.num_shards]
        if len(indices) == self.num_shards:
            return to_tf_dataset(self.source.examples(self.task, split))
        return to_tf_dataset([e for i in indices for e in self.shard_examples(split, i)])

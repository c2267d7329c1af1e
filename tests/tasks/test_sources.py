"""Task sources in shards of users: the shards, read in order, are exactly the whole split, so
a Beam worker (or a host) builds one shard's examples alone and gets the same ones."""

import pytest
import seqio

from jaxrec.tasks import registry
from jaxrec.tasks.sources import UserShardedSource, shard_users

from .conftest import make_dataset, make_index, write_dataset


@pytest.fixture(scope="module")
def names(tmp_path_factory):
    d = tmp_path_factory.mktemp("sharded")
    ds = make_dataset(num_users=50, name="Sharded")
    write_dataset(ds, str(d))
    make_index(ds.num_items).to_json(str(d / "Sharded.index.json"), dataset=ds)
    cache = str(tmp_path_factory.mktemp("spm"))
    return registry.register_dataset_tasks(str(d), cache_dir=cache, users_per_shard=16)


def _texts(ds) -> list[tuple[bytes, bytes]]:
    return [(e["inputs"], e["targets"]) for e in ds.as_numpy_iterator()]


def test_user_ranges_are_contiguous_balanced_and_cover_every_user():
    ranges = [shard_users(50, 4, i) for i in range(4)]
    assert [len(r) for r in ranges] == [12, 13, 12, 13]
    assert [u for r in ranges for u in r] == list(range(50))


@pytest.mark.parametrize("split", ["train", "validation"])
def test_shards_in_order_are_the_whole_split(names, split):
    source = seqio.get_mixture_or_task("sharded_sid_retrieval").source
    assert isinstance(source, UserShardedSource)
    shards = source.list_shards(split)
    assert shards == [f"users-{i:05d}-of-00004" for i in range(4)]  # 50 users, 16 per shard
    whole = _texts(source.get_dataset(split, shuffle=False))
    pieces = [
        _texts(source.get_dataset(split, shuffle=False, shard_info=seqio.ShardInfo(i, 4)))
        for i in range(4)
    ]
    assert all(pieces) and sum(pieces, []) == whole
    expected = registry.source_of("sharded_sid_retrieval").examples("retrieval", split)
    assert whole == [(e.inputs.encode(), e.targets.encode()) for e in expected]


def test_a_host_of_two_reads_every_other_shard(names):
    source = seqio.get_mixture_or_task("sharded_sid_mim").source
    host = _texts(source.get_dataset("train", shard_info=seqio.ShardInfo(1, 2)))
    assert host == sum((_texts(source.get_dataset("train", shard_info=seqio.ShardInfo(i, 4)))
                        for i in (1, 3)), [])  # fmt: skip


def test_item_level_tasks_are_one_shard(names):
    source = seqio.get_mixture_or_task("sharded_sid_item2index").source
    assert source.list_shards("train") == ["items-00000-of-00001"]
    assert len(_texts(source.get_dataset("train"))) == 40  # one example per item


def test_tasks_support_offline_caching(names):
    for name in names:
        if name in seqio.TaskRegistry.names():
            assert seqio.get_mixture_or_task(name).supports_caching, name

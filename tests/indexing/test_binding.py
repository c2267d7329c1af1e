"""An index is tied to its dataset's item-id mapping; every consumer checks it."""

import json
import shutil

import pytest

from jaxrec.cli import main
from jaxrec.data import synthetic
from jaxrec.data.canonical import read_dataset, write_dataset
from jaxrec.data.dataset import DataError
from jaxrec.data.formats import Interactions
from jaxrec.data.processing import PrepareOptions, build_dataset
from jaxrec.indexing import binding


@pytest.fixture(scope="module")
def two_preparations(tmp_path_factory):
    """The same raw data prepared twice with the default shuffled order (seeds 0 and 1)."""
    root = tmp_path_factory.mktemp("bind")
    synthetic.generate(str(root / "raw"), num_users=120, num_items=60, num_topics=4, seed=0)
    dirs = []
    for seed in (0, 1):
        out = root / f"ds{seed}"
        argv = ["data", "prepare", "--source", "synthetic", "--input", str(root / "raw")]
        assert main(argv + ["--out", str(out), "--seed", str(seed), "--num-negatives", "5"]) == 0
        dirs.append(out)
    index = dirs[0] / "synthetic.index.json"
    assert main(["index", "build", str(dirs[0]), "--method", "random", "--out", str(index)]) == 0
    return dirs


def test_index_build_records_the_mapping(two_preparations):
    d = two_preparations[0]
    rec = json.loads((d / "synthetic.index.dataset.json").read_text())
    ds = read_dataset(str(d))
    assert rec["source_ids"] == [it.original_id for it in ds.items]
    assert rec["item_map_fingerprint"] == ds.item_map_fingerprint()
    assert main(["index", "check", str(d / "synthetic.index.json"), "--dataset", str(d)]) == 0


@pytest.mark.parametrize("with_record", [True, False])
def test_index_of_another_preparation_is_refused(two_preparations, tmp_path, capsys, with_record):
    src, other = two_preparations
    d = tmp_path / "copy"
    shutil.copytree(other, d)
    shutil.copy(src / "synthetic.index.json", d)
    if with_record:
        shutil.copy(src / "synthetic.index.dataset.json", d)
    capsys.readouterr()
    index = str(d / "synthetic.index.json")
    assert main(["index", "check", index, "--dataset", str(d)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert index in err and str(d / "synthetic.item.json") in err and "item 0" in err

    from jaxrec.tasks import registry

    with pytest.raises(DataError, match="item 0"):
        registry.register_dataset_tasks(str(d), item_repr="sid", cache_dir=str(tmp_path))


def test_legacy_index_keyed_by_source_ids_is_accepted(tmp_path):
    rows = [(f"u{u}", str(i)) for u in range(6) for i in range(5)]
    inter = Interactions(source="lcrec:x.inter.json", positions_only=True)
    for pos, (u, i) in enumerate(rows):
        inter.append(u, i, ts=pos)
    ds = build_dataset(inter, None, "X", PrepareOptions(kcore=0, num_negatives=0,
                                                        item_order="original"))  # fmt: skip
    write_dataset(ds, str(tmp_path))
    (tmp_path / "X.index.json").write_text(json.dumps({str(i): [f"<a_{i}>"] for i in range(5)}))
    binding.verify_index(str(tmp_path / "X.index.json"), ds, str(tmp_path))


def test_item_order_original_refuses_to_renumber():
    inter = Interactions(source="p5:Gap.txt", positions_only=True)
    for u in range(5):
        for pos, i in enumerate(["1", "2", "4", "5"] if u else ["1", "2", "3", "4", "5"]):
            inter.append(f"u{u}", i, ts=pos)
    opts = PrepareOptions(kcore=2, num_negatives=0, item_order="original")
    with pytest.raises(DataError, match="source item 3 is not in the prepared data"):
        build_dataset(inter, None, "Gap", opts)
    ds = build_dataset(inter, None, "Gap", PrepareOptions(kcore=0, num_negatives=0,
                                                          item_order="original"))  # fmt: skip
    assert [it.original_id for it in ds.items] == ["1", "2", "3", "4", "5"]


def test_item_table_from_another_preparation_is_refused(two_preparations, tmp_path):
    a, b = two_preparations
    d = tmp_path / "mixed"
    shutil.copytree(a, d)
    shutil.copy(b / "synthetic.item.json", d)
    with pytest.raises(DataError, match="fingerprint"):
        read_dataset(str(d))

"""The embedded synthetic data (titles, ratings) through registration: no task leaks."""

import pytest

from jaxrec.data import synthetic
from jaxrec.data.canonical import write_dataset
from jaxrec.data.prepare import prepare_dataset
from jaxrec.data.processing import PrepareOptions
from jaxrec.tasks import registry
from jaxrec.tasks.examples import TASKS
from tests.tasks.conftest import make_index
from tests.tasks.leak import assert_no_leak


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    raw = tmp_path_factory.mktemp("synth_raw")
    synthetic.generate(str(raw), num_users=80, num_items=160, num_topics=10, seed=1)
    ds = prepare_dataset("synthetic", str(raw), options=PrepareOptions(num_negatives=20))
    out = tmp_path_factory.mktemp("synth")
    write_dataset(ds, str(out))
    index = make_index(ds.num_items, seed=1, levels=3, codes=8)
    index.to_json(str(out / f"{ds.name}.index.json"), dataset=ds)
    return str(out)


def test_all_representations_register_and_do_not_leak(synth_dir, tmp_path):
    names = registry.register_reprs(synth_dir, name="synthtest", cache_dir=str(tmp_path))
    for item_repr in ("sid", "id", "id_title", "title"):
        assert f"synthtest_{item_repr}_cao" in names
    assert "synthtest_sid_fusionseqrec" in names and "synthtest_sid_rating" in names
    checked = 0
    for name in names:
        source = registry.source_of(name)
        task = name.removeprefix(f"synthtest_{source.renderer.repr}_")
        if task not in TASKS:
            continue  # a mixture
        exs = source.examples(task, "train")
        assert exs, name
        checked += assert_no_leak(exs, source.dataset, source.renderer)
    assert checked > 1000

"""Explicitly requested representations and tasks never vanish: unavailable is an error."""

import logging
import shutil

import pytest

from jaxrec.cli import main
from jaxrec.data.dataset import DataError
from jaxrec.tasks import registry


@pytest.fixture
def broken_index_dir(tmp_path, tiny_dir):
    d = tmp_path / "broken"
    shutil.copytree(tiny_dir, d, ignore=shutil.ignore_patterns("cache"))
    (d / "Tiny.index.json").write_text('{"0": ["<a_1>"]')  # truncated JSON
    return d


def test_requested_repr_with_a_malformed_index_is_an_error(broken_index_dir, tmp_path, capsys):
    argv = ["tasks", "list", "--dataset", str(broken_index_dir), "--item-repr", "sid"]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "0 tasks" not in captured.out
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "Tiny.index.json" in err and "malformed JSON" in err


def test_default_skips_with_a_warning_naming_what_and_why(broken_index_dir, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        names = registry.register_reprs(str(broken_index_dir), cache_dir=str(tmp_path))
    assert "tiny_id_retrieval" in names and not [n for n in names if "_sid_" in n]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("skipped item_repr 'sid'" in w and "malformed JSON" in w for w in warnings)
    assert any("skipped" in w and "item2index (alignment needs" in w for w in warnings)


def test_requested_task_that_cannot_be_built_is_an_error(tiny_dir, tmp_path):
    with pytest.raises(DataError, match="tiny_id_item2index was requested but alignment needs"):
        registry.register_dataset_tasks(
            tiny_dir, item_repr="id", tasks=("retrieval", "item2index"), cache_dir=str(tmp_path)
        )
    with pytest.raises(DataError, match=r"unknown task\(s\) \['retrievl'\]"):
        registry.register_dataset_tasks(
            tiny_dir, item_repr="id", tasks=("retrievl",), cache_dir=str(tmp_path)
        )

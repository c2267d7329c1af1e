"""`jaxrec tasks list|show` on a small prepared dataset."""

import argparse
import json

import pytest

from jaxrec.cli import tasks as tasks_cmd
from jaxrec.data.dataset import DataError


def _run(argv, capsys):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    tasks_cmd.add_parser(sub)
    args = parser.parse_args(argv)
    code = args.func(args)
    out = capsys.readouterr().out
    return code, out, json.loads(out.strip().splitlines()[-1])


def test_list_json(tiny_dir, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("JAXREC_CACHE_DIR", str(tmp_path))
    code, out, obj = _run(["tasks", "list", "--dataset", tiny_dir, "--item-repr", "sid",
                           "--json"], capsys)  # fmt: skip
    assert code == 0
    assert "tiny_sid_retrieval" in obj["tasks"]
    assert "tiny_sid_retrieval" in obj["mixtures"]["tiny_sid_cao"]
    assert "itemsearch" in obj["skipped"]["tiny_sid"]
    assert "mixture  tiny_sid_lcrec" in out


def test_show_prints_decoded_examples(tiny_dir, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("JAXREC_CACHE_DIR", str(tmp_path))
    argv = ["tasks", "show", "tiny_sid_retrieval", "--n", "2", "--split", "test", "--dataset",
            tiny_dir, "--item-repr", "sid", "--json"]  # fmt: skip
    code, out, obj = _run(argv, capsys)
    assert code == 0 and len(obj["examples"]) == 2
    first = obj["examples"][0]
    assert first["targets"].startswith("<a_") and first["target_tokens"] == 3 + 1  # + EOS
    assert "Here are the items a user bought" in first["inputs"]  # eval template 0
    assert first["inputs"] in out
    with pytest.raises(DataError, match="no task or mixture"):
        _run(["tasks", "show", "nope", "--dataset", tiny_dir, "--item-repr", "sid"], capsys)

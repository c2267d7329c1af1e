"""`jaxrec data prepare/synth --out`: an existing directory is refused, or replaced as a whole."""

import os

import pytest

from jaxrec.cli import main
from jaxrec.data import synthetic


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    d = tmp_path_factory.mktemp("raw")
    synthetic.generate(str(d), num_users=120, num_items=60, num_topics=4, seed=0)
    return str(d)


def _prepare(raw, out, *extra):
    argv = ["data", "prepare", "--source", "synthetic", "--input", raw, "--out", str(out)]
    return main(argv + ["--num-negatives", "5", *extra])


def _snapshot(d):
    return {f: (d / f).read_bytes() for f in sorted(os.listdir(d))}


def test_existing_out_is_refused_and_left_unchanged(raw, tmp_path, capsys):
    out = tmp_path / "ds"
    assert _prepare(raw, out) == 0
    (out / "synthetic.index.json").write_text('{"0": ["<a_1>"]}\n')  # a stale artifact
    before = _snapshot(out)
    assert _prepare(raw, out, "--seed", "1") == 2
    err = capsys.readouterr().err
    assert f"{out}: directory is not empty" in err and "--overwrite" in err
    assert _snapshot(out) == before


def test_overwrite_replaces_the_directory_as_a_whole(raw, tmp_path):
    out = tmp_path / "ds"
    assert _prepare(raw, out) == 0
    (out / "synthetic.index.json").write_text('{"0": ["<a_1>"]}\n')
    (out / "cache").mkdir()
    assert _prepare(raw, out, "--seed", "1", "--overwrite") == 0
    names = set(os.listdir(out))
    assert "synthetic.index.json" not in names and "cache" not in names
    assert "synthetic.inter.json" in names
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".ds.")]  # no temp left


def test_failed_prepare_leaves_no_partial_output(tmp_path, capsys):
    bad = tmp_path / "Bad.txt"
    bad.write_text("1 2 3 4\n2 x 3 4\n")
    out = tmp_path / "ds"
    assert main(["data", "prepare", "--source", "p5", "--input", str(bad), "--out", str(out)]) == 2
    assert not out.exists()
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".ds.")]


def test_overwrite_never_deletes_the_input(raw, tmp_path, capsys):
    import shutil

    d = tmp_path / "raw"
    shutil.copytree(raw, d)
    assert _prepare(str(d), d, "--overwrite") == 2
    assert "--overwrite would delete it" in capsys.readouterr().err
    assert sorted(os.listdir(d)) == sorted(os.listdir(raw))


def test_synth_refuses_a_non_empty_out_and_replaces_it_with_overwrite(tmp_path, capsys):
    out = tmp_path / "raw"
    argv = ["data", "synth", "--out", str(out), "--users", "60", "--items", "40", "--topics", "3"]
    assert main(argv) == 0
    (out / "notes.txt").write_text("mine\n")
    before = _snapshot(out)
    assert main(argv + ["--seed", "1"]) == 2
    assert f"{out}: directory is not empty" in capsys.readouterr().err
    assert _snapshot(out) == before
    assert main(argv + ["--seed", "1", "--overwrite"]) == 0
    assert "notes.txt" not in os.listdir(out) and synthetic.REVIEWS_FILE in os.listdir(out)
    assert _snapshot(out) != before

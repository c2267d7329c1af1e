"""`jaxrec data ...` from the command line: JSON last line, clear errors without tracebacks."""

import json
import subprocess
import sys

from jaxrec.cli import main


def _last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_synth_prepare_stats(tmp_path, capsys):
    raw, out = tmp_path / "raw", tmp_path / "ds"
    assert (
        main(
            [
                "data",
                "synth",
                "--out",
                str(raw),
                "--users",
                "300",
                "--items",
                "200",
                "--topics",
                "5",
                "--json",
            ]
        )
        == 0
    )
    assert _last_json(capsys)["users"] == 300
    assert (
        main(
            [
                "data",
                "prepare",
                "--source",
                "synthetic",
                "--input",
                str(raw),
                "--out",
                str(out),
                "--json",
            ]
        )
        == 0
    )
    prepared = _last_json(capsys)
    assert main(["data", "stats", str(out), "--json"]) == 0
    stats = _last_json(capsys)
    assert stats["users"] == prepared["users"] and stats["negatives_per_user"] == 99
    removed = stats["filters"]
    assert removed["input_interactions"] - removed["output_interactions"] == (
        removed["duplicate_interactions_removed"]
        + removed["kcore_removed_interactions"]
        + removed["short_user_interactions_removed"]
    )
    assert "oracle" in stats


def test_bad_input_gives_one_clear_line(tmp_path):
    bad = tmp_path / "Bad.txt"
    bad.write_text("1 2 3\n1 4 5\n")
    proc = subprocess.run(
        [sys.executable, "-m", "jaxrec", "data", "stats", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"{bad}:2: duplicate user '1'" in proc.stderr


def test_empty_input_is_one_line_exit_2(tmp_path, capsys):
    empty = tmp_path / "Empty.txt"
    empty.write_text("")
    assert main(["data", "stats", str(empty)]) == 2
    assert (
        capsys.readouterr().err
        == f"jaxrec: error: {empty}: no interactions (the file has no records)\n"
    )
    out = tmp_path / "ds"
    argv = ["data", "prepare", "--source", "p5", "--input", str(empty), "--out", str(out)]
    assert main(argv) == 2
    assert (
        capsys.readouterr().err
        == f"jaxrec: error: {empty}: no interactions (the file has no records)\n"
    )
    assert not out.exists()

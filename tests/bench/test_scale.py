"""`python -m jaxrec.bench scale --quick`: every stage measures points in child processes and
the last stdout line is the JSON summary."""

import json

import pytest

from jaxrec.bench import scale

STAGE_KINDS = {"data": ("synth", "prepare"), "index": ("embed", "index"), "decode": ("decode",),
               "train": ("train",), "eval": ("eval",)}  # fmt: skip


def test_quick_decode_point_and_the_summary_line(capsys, shared_data):
    """The default test run: one stage (the catalogue trie and the constrained search against
    the real Beauty catalogue of ../shared/data), the summary line and its ratio key."""
    argv = ["--quick", "--stages", "decode", "--decode-sizes", "1e3"]
    assert scale.main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["benchmark"] == "scale" and result["stages"] == ["decode"]
    (point,) = [p for p in result["points"] if p["kind"] == "decode" and not p["real"]]
    assert point["status"] == "ok" and point["size"] == 1000
    assert point["qps"] > 0 and point["trie_bytes"] > 0 and point["peak_rss_bytes"] > 0
    assert 0.2 < point["qps_ratio_vs_beauty"] < 5
    assert result["decode_qps_ratio_1e6"] is None  # no 10^6 point in this run
    assert "decode_qps" in result["fits"]


@pytest.mark.slow  # every stage, each point a fresh process: about 3 minutes
def test_quick_run_measures_every_stage(capsys, tmp_path, shared_data):
    argv = ["--quick", "--data-sizes", "1e4", "--index-sizes", "300", "--decode-sizes", "1e3",
            "--train-users", "40", "--train-levels", "", "--eval-sizes", "1e3",
            "--plots", str(tmp_path / "plots")]  # fmt: skip
    assert scale.main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("benchmark", "points", "fits", "decode_qps_ratio_1e6", "load_average_start",
                "load_average_end", "baseline_rss_bytes", "mem_limit_gib", "threads"):  # fmt: skip
        assert key in result, key
    assert result["benchmark"] == "scale" and result["decode_qps_ratio_1e6"] is None
    points = result["points"]
    for stage, kinds in STAGE_KINDS.items():
        for kind in kinds:
            measured = [p for p in points if p["kind"] == kind and not p["real"]]
            assert measured and all(p["status"] == "ok" for p in measured), (stage, measured)
            assert all(p["wall_seconds"] > 0 and p["peak_rss_bytes"] > 0 for p in measured)
    by_kind = {p["kind"]: p for p in points if not p["real"]}
    assert by_kind["prepare"]["interactions"] > 5_000 and "read" in by_kind["prepare"]["phases"]
    assert by_kind["index"]["collisions"] == 0
    assert by_kind["decode"]["qps"] > 0 and by_kind["decode"]["trie_bytes"] > 0
    assert 0.2 < by_kind["decode"]["qps_ratio_vs_beauty"] < 5
    assert by_kind["train"]["targets_per_s"] > 0 and by_kind["eval"]["users_per_s"] > 0
    assert {"data_prepare", "index", "decode_qps", "eval_users_per_s"} <= set(result["fits"])
    assert result["plots"] and all(p.endswith(".png") for p in result["plots"])


def test_a_point_over_the_memory_cap_is_stopped_and_reported():
    from jaxrec.bench._scale_run import run_point

    point = run_point("embed", {"size": 200_000, "path": "/dev/null"}, timeout=60,
                      mem_limit=1)  # fmt: skip
    assert point["status"] == "memory" and point["exit_code"] != 0


def test_index_config_is_checked_before_any_work(capsys):
    args = scale._parse(["--index-config", '{"max_steps": 4000, "levels": 3}'])
    assert args.index_config == {"max_steps": 4000, "levels": 3}
    assert scale._parse([]).index_config == {}
    for bad, message in (("{nope", "invalid JSON"), ('{"steps": 1}', "RQVAEConfig fields")):
        with pytest.raises(SystemExit):
            scale._parse(["--index-config", bad])
        assert message in capsys.readouterr().err

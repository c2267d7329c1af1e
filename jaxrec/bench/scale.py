"""Scale benchmark: how each stage's time and memory grow, and where this machine stops.

    python -m jaxrec.bench scale [--quick] [--plots DIR] [--stages data,index,decode,...]
                                 [--data-sizes 1e6,1e7,1e8] [--index-sizes 1e4,1e5,1e6] ...

Stages and their sizes (defaults fit about 30 minutes on 2 cores; larger sizes by flag):

  data    `data prepare` (read, build, oracle, write) of planted synthetic data of N
          interactions written by `jaxrec data synth`'s vectorised sampler (timed too), and
          of the shared Amazon-2014 datasets at their own size (`--source p5`);
  index   RQ-VAE + Sinkhorn + collision resolution for N items of planted 768-d embeddings
          (`RQVAEConfig()` defaults, one compute thread as `jaxrec index build` runs it) and
          for the shared datasets' own item embeddings; collisions before resolution;
  decode  prefix-table build time and bytes for N planted items, and trie-constrained beam
          search queries/s (TIGER-shaped T5, batch 16, 20 beams) against the real Beauty
          catalogue (12,101 items) in the same process, alternating;
  train   targets/s of the semantic-id recipe (prefix-shared rows, its default settings)
          against the number of users and against the semantic-id length;
  eval    users/s of full-catalogue evaluation (`SidRetrieval.evaluate`) per catalogue size.

Every point runs in a fresh process (`jaxrec.bench._scale_run`): its peak RSS is its own, and
a point that exceeds the memory cap or the timeout is stopped and reported as where the stage
stops. Figures are wall seconds of the point's process (imports and compilation included; the
phases and rates inside exclude them). The last stdout line is one JSON object with every
point, the fitted log-log slopes, the limits and `decode_qps_ratio_1e6` (queries/s at 10^6 items
over queries/s at Beauty's 12,101, same model, batch and process).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time

from jaxrec.bench import _scale_report as report
from jaxrec.bench._scale_points import REAL, SHARED
from jaxrec.bench._scale_run import mem_available_bytes, mem_total_bytes, run_point

log = logging.getLogger("jaxrec.bench.scale")

STAGES = ("data", "index", "decode", "train", "eval")
DEFAULTS = {
    "data_sizes": "1e5,1e6",
    "index_sizes": "1e4,1e5",
    "decode_sizes": "1e4,1e5,1e6",
    "train_users": "1e3,1e4,1e5",
    "train_levels": "2,4,8",
    "eval_sizes": "1e4,1e5,1e6",
}
QUICK = {
    "data_sizes": "1e4,3e4",
    "index_sizes": "300,1000",
    "decode_sizes": "1e3,4e3",
    "train_users": "40,120",
    "train_levels": "3",
    "eval_sizes": "1e3",
}


def _sizes(text: str) -> list[int]:
    return [int(float(x)) for x in text.split(",") if x.strip()]


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m jaxrec.bench scale", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--quick", action="store_true", help="tiny sizes and models (smoke test)")
    p.add_argument("--stages", default=",".join(STAGES))
    p.add_argument("--data-sizes", help=f"interactions (default {DEFAULTS['data_sizes']})")
    p.add_argument("--index-sizes", help=f"items (default {DEFAULTS['index_sizes']})")
    p.add_argument("--decode-sizes", help=f"items (default {DEFAULTS['decode_sizes']})")
    p.add_argument("--train-users", help=f"users (default {DEFAULTS['train_users']})")
    p.add_argument("--train-levels", help=f"id lengths (default {DEFAULTS['train_levels']})")
    p.add_argument("--train-levels-users", type=float, default=1e4)
    p.add_argument("--eval-sizes", help=f"items (default {DEFAULTS['eval_sizes']})")
    p.add_argument("--real", default=",".join(REAL), help="shared datasets for the data stage "
                   "(comma-separated; 'none' for none)")  # fmt: skip
    p.add_argument(
        "--real-index",
        default="Beauty",
        help="shared datasets that also get an index point ('all', 'none')",
    )
    p.add_argument("--decode-reps", type=int, default=7)
    p.add_argument("--eval-users", type=int, default=512)
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="compute threads of every point but the index (0: all CPUs)",
    )
    p.add_argument(
        "--index-threads",
        type=int,
        default=1,
        help="compute threads of index points (1, as `jaxrec index build`)",
    )
    p.add_argument(
        "--index-config",
        default=None,
        help="RQVAEConfig fields of the planted index points as JSON, e.g. '{\"max_steps\": 4000}'",
    )
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per point")
    p.add_argument(
        "--mem-limit-gib",
        type=float,
        default=None,
        help="stop a point above this RSS (default: 90%% of MemAvailable at start)",
    )
    p.add_argument("--work", default=None, help="scratch directory (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    p.add_argument("--plots", default=None, help="write log-log PNGs scale_*.png here")
    args = p.parse_args(argv)
    table = QUICK if args.quick else DEFAULTS
    for key, value in table.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.quick:
        args.real, args.real_index, args.decode_reps, args.eval_users = "none", "none", 1, 32
    args.index_config = _index_config(p, args.index_config)
    unknown = set(args.stages.split(",")) - set(STAGES)
    if unknown:
        p.error(f"unknown stages {sorted(unknown)}; known: {STAGES}")
    return args


def _index_config(parser: argparse.ArgumentParser, text: str | None) -> dict:
    """`--index-config`: a JSON object of `RQVAEConfig` fields (checked here, before any work)."""
    import dataclasses

    from jaxrec.indexing.rqvae import RQVAEConfig

    if not text:
        return {}
    try:
        fields = json.loads(text)
    except json.JSONDecodeError as e:
        parser.error(f"--index-config: invalid JSON ({e.msg})")
    known = {f.name for f in dataclasses.fields(RQVAEConfig)}
    if not isinstance(fields, dict) or set(fields) - known:
        parser.error(
            f"--index-config: expected a JSON object of RQVAEConfig fields {sorted(known)}"
        )
    return fields


def _names(text: str) -> list[str]:
    if text in ("", "none"):
        return []
    return list(REAL) if text == "all" else text.split(",")


class Bench:
    """Runs the points in order and keeps them."""

    def __init__(self, args, work: str):
        self.args, self.work = args, work
        self.points: list[dict] = []
        self.mem_limit = int((args.mem_limit_gib or 0.9 * mem_available_bytes() / 2**30) * 2**30)

    def run(self, kind: str, size: int, stage: str, params: dict, real: str | None = None):
        params = {"threads": self.args.threads, **params}
        if self.args.quick:
            params.setdefault("model", "tiny")
        label = real or f"{size:.3g}"
        log.info("%s %s ...", kind, label)
        result = run_point(stage, params, self.args.timeout, self.mem_limit)
        result.update(kind=kind, size=size, real=bool(real), name=real or "")
        self.points.append(result)
        log.info("%s %s: %s, %.1f s, peak RSS %.2f GiB", kind, label, result["status"],
                 result["wall_seconds"], result["peak_rss_bytes"] / 2**30)  # fmt: skip
        return result

    def path(self, *parts: str) -> str:
        return os.path.join(self.work, *parts)

    # -- stages ---------------------------------------------------------------------------
    def data(self):
        quick = self.args.quick
        for n in _sizes(self.args.data_sizes):
            raw, out = self.path(f"synth_{n}"), self.path(f"prepared_{n}")
            synth = self.run("synth", n, "synth", {"size": n, "dir": raw})
            if synth["status"] == "ok":
                self.run("prepare", n, "prepare", {"size": n, "dir": raw, "out": out})
            shutil.rmtree(raw, ignore_errors=True)
            shutil.rmtree(out, ignore_errors=True)
        for name in [] if quick else _names(self.args.real):
            point = self.run("prepare", 0, "prepare_real", {"name": name,
                             "out": self.path(f"real_{name}")}, real=name)  # fmt: skip
            point["size"] = point.get("interactions", 0)

    def index(self):
        override = dict(self.args.index_config)
        if self.args.quick:  # a small network: the smoke test should not wait for XLA
            override = {"epochs": 2, "kmeans_iterations": 3, "hidden_dims": [32],
                        "latent_dim": 8, "levels": 3, "codes": 16}  # fmt: skip
        for n in _sizes(self.args.index_sizes):
            emb = self.path(f"emb_{n}.npy")
            made = self.run("embed", n, "embed", {"size": n, "path": emb})
            if made["status"] == "ok":
                self.run("index", n, "index", {"size": n, "path": emb, "config": override,
                                               "threads": self.args.index_threads})  # fmt: skip
            if os.path.exists(emb):
                os.remove(emb)
        for name in _names(self.args.real_index):
            ds_dir = self.path(f"real_{name}")
            if not os.path.isdir(ds_dir):
                self.run("prepare", 0, "prepare_real", {"name": name, "out": ds_dir}, real=name)
            point = self.run("index", 0, "index_real", {"name": name, "dataset_dir": ds_dir,
                             "threads": self.args.index_threads}, real=name)  # fmt: skip
            point["size"] = point.get("items", 0)

    def decode(self):
        extra = {"reps": self.args.decode_reps}
        if self.args.quick:
            extra.update(batch=4, beams=4)
        for n in _sizes(self.args.decode_sizes):
            self.run("decode", n, "decode", {"size": n, **extra})
        ok = [p for p in self.points if p["kind"] == "decode" and p["status"] == "ok"]
        if ok:  # the reference catalogue, measured beside every size
            self.points.append({"kind": "decode", "stage": "decode", "real": True,
                                "name": "Beauty", "size": 12_101, "status": "ok",
                                "qps": statistics.median(p["beauty_qps"] for p in ok),
                                "peak_rss_bytes": 0, "wall_seconds": 0.0})  # fmt: skip

    def train(self):
        steps = 2 if self.args.quick else 10
        for u in _sizes(self.args.train_users):
            self.run("train", u, "train", {"size": u, "levels": 4, "steps": steps})
        users = 60 if self.args.quick else int(self.args.train_levels_users)
        for k in _sizes(self.args.train_levels):
            self.run("train_levels", k, "train", {"size": users, "levels": k, "steps": steps})

    def eval(self):
        users = self.args.eval_users
        for n in _sizes(self.args.eval_sizes):
            self.run("eval", n, "eval", {"size": n, "users": users})
        if not self.args.quick:
            point = self.run("eval", 12_101, "eval", {"size": 12_101, "users": users,
                             "beauty": True}, real="Beauty")  # fmt: skip
            point["size"] = point.get("items", 12_101)


def summarise(points: list[dict], cap: int) -> dict:
    """Fits and limits per stage (see `jaxrec.bench._scale_report.fit_series`)."""
    fits = {
        "data_synth": report.fit_series(points, "synth", "wall_seconds", cap),
        "data_prepare": report.fit_series(points, "prepare", "wall_seconds", cap),
        "index": report.fit_series(points, "index", "wall_seconds", cap),
        "trie_build": report.fit_series(points, "decode", "trie_build_seconds", cap),
        "trie_bytes": report.fit_series(points, "decode", "trie_bytes", cap),
        "decode_qps": report.fit_series(points, "decode", "qps", cap),
        "train_vs_users": report.fit_series(points, "train", "targets_per_s", cap),
        "train_vs_levels": report.fit_series(points, "train_levels", "targets_per_s", cap),
        "eval_users_per_s": report.fit_series(points, "eval", "users_per_s", cap),
    }
    index = report.series(points, "index")
    fits["index"]["slope_collisions_before_resolution"] = report.loglog_slope(
        [p["size"] for p in index if p["status"] == "ok"],
        [p.get("collisions_before_resolution") for p in index if p["status"] == "ok"],
    )
    return {k: v for k, v in fits.items() if v["sizes"] or "stops_at" in v}


def main(argv: list[str]) -> int:
    args = _parse(argv)
    # SIGTERM unwinds like Ctrl-C: the running point is killed, the scratch directory removed.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        return _run(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    from jaxrec.cli import quiet

    quiet.configure_logging(fmt="%(asctime)s %(message)s")
    stages = [s for s in STAGES if s in args.stages.split(",")]
    if not os.path.isdir(SHARED):
        log.warning("%s missing: real-dataset points skipped", SHARED)
        args.real = args.real_index = "none"
    work = args.work or tempfile.mkdtemp(prefix="jaxrec_scale_")
    os.makedirs(work, exist_ok=True)
    bench = Bench(args, work)
    started, load0 = time.time(), os.getloadavg()
    try:
        baseline = bench.run("baseline", 0, "baseline", {})
        for stage in stages:
            getattr(bench, stage)()
    finally:
        if not args.keep and not args.work:
            shutil.rmtree(work, ignore_errors=True)
    points = bench.points
    decode_1e6 = [p for p in points if p["kind"] == "decode" and not p["real"]
                  and p["size"] == 1_000_000 and p["status"] == "ok"]  # fmt: skip
    result = {
        "benchmark": "scale",
        "quick": args.quick,
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "minutes": round((time.time() - started) / 60, 2),
        "load_average_start": [round(x, 2) for x in load0],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "mem_total_gib": round(mem_total_bytes() / 2**30, 2),
        "mem_limit_gib": round(bench.mem_limit / 2**30, 2),
        "threads": {"default": args.threads or "all", "index": args.index_threads or "all"},
        "index_config": args.index_config,
        "baseline_rss_bytes": baseline["peak_rss_bytes"],
        "stages": stages,
        "fits": summarise(points, bench.mem_limit),
        "decode_qps_ratio_1e6": decode_1e6[0]["qps_ratio_vs_beauty"] if decode_1e6 else None,
        "points": points,
    }
    if args.plots:
        result["plots"] = report.write_plots(points, args.plots)
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""RQ-VAE indexes built in a clean worker process, so that their bytes do not depend on the
machine's CPU count, thread pool or forced host devices.

XLA's CPU thread pool is sized when the backend starts, from the CPUs the process may use and
the number of (forced) host devices, and the pool's size changes how matmuls split their sums:
an RQ-VAE trained in a process with 2 CPUs, or with `--xla_force_host_platform_device_count=8`
(the test set-up), gives other codes than one trained on 1 CPU. The index of a dataset is data
that users share, so `build_rqvae_index` trains it in a worker that starts its own CPU backend
with one compute thread, one BLAS thread and no forced devices: the same dataset, embeddings
spec, settings and seed give the same `.index.json` on every machine of one CPU type (tested
with 1 and 2 CPUs and under forced host devices). Across CPU types the bytes can differ: the
kernels (XLA's compiled code, the BLAS under numpy) are chosen for the host's instruction set,
and with them how float sums are split (Beauty, seed 0: 9,170 collisions before resolution on
one host, 9,178 on an AVX-512 host). To repeat a run's ids on another machine, reuse its
index file.

Worker protocol: `python -m jaxrec.indexing.isolated REQUEST.json`; the request names the
dataset, the embeddings spec, the RQ-VAE settings and where to write the index and the report;
errors come back in the report (`{"error": ...}`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
from typing import TYPE_CHECKING, Any

from jaxrec.data.dataset import DataError

if TYPE_CHECKING:  # the worker silences native logs before JAX is imported
    from jaxrec.indexing.item_index import ItemIndex
    from jaxrec.indexing.rqvae import RQVAEConfig

_FORCED_DEVICES = re.compile(r"--xla_force_host_platform_device_count=\S+")


def worker_env(threads: int = 1) -> dict[str, str]:
    """The worker's environment: CPU backend, `threads` compute threads, no forced devices,
    and this jaxrec first on the path."""
    env = dict(os.environ)
    flags = _FORCED_DEVICES.sub("", env.get("XLA_FLAGS", "")).strip()
    if flags:
        env["XLA_FLAGS"] = flags
    else:
        env.pop("XLA_FLAGS", None)
    env["JAX_PLATFORMS"] = "cpu"
    env["JAXREC_CPU_THREADS"] = str(threads)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def build_rqvae_index(
    dataset_dir: str,
    embeddings: str,
    config: RQVAEConfig | None = None,
    resolve: bool = True,
    threads: int = 1,
) -> tuple[ItemIndex, dict[str, Any]]:
    """(index, report) of `jaxrec.indexing.build.build_index(dataset, "rqvae", ...)` over
    `item_embeddings(dataset, embeddings, seed=config.seed)`, computed in a worker process
    (see the module docstring). Its log lines go to this process's stderr."""
    from jaxrec.indexing.item_index import ItemIndex
    from jaxrec.indexing.rqvae import RQVAEConfig

    config = config or RQVAEConfig()
    with tempfile.TemporaryDirectory(prefix="jaxrec_index_") as tmp:
        request = {
            "dataset_dir": os.path.abspath(dataset_dir),
            "embeddings": embeddings,
            "config": dataclasses.asdict(config),
            "resolve": resolve,
            "index_out": os.path.join(tmp, "index.json"),
            "report_out": os.path.join(tmp, "report.json"),
        }
        path = os.path.join(tmp, "request.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(request, f)
        proc = subprocess.run(
            [sys.executable, "-m", "jaxrec.indexing.isolated", path],
            env=worker_env(threads),
            check=False,
        )
        report = _read_json(request["report_out"])
        if report is None or "error" in report or proc.returncode != 0:
            why = (report or {}).get("error") or f"worker exited with code {proc.returncode}"
            raise DataError(f"{dataset_dir}: index build failed: {why}")
        index = ItemIndex.from_json(request["index_out"], num_items=report["num_items"])
    return index, report


def _read_json(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def _work(request: dict[str, Any]) -> dict[str, Any]:
    from jaxrec.data.canonical import read_dataset
    from jaxrec.indexing.build import build_index
    from jaxrec.indexing.embed import item_embeddings
    from jaxrec.indexing.rqvae import RQVAEConfig

    config = dict(request["config"])
    config["hidden_dims"] = tuple(config["hidden_dims"])
    config = RQVAEConfig(**config)
    dataset = read_dataset(request["dataset_dir"])
    emb = item_embeddings(dataset, request["embeddings"], seed=config.seed,
                          source=request["dataset_dir"])  # fmt: skip
    index, report = build_index(dataset, "rqvae", emb, config, resolve=request["resolve"])
    index.to_json(request["index_out"])
    return report


def main(argv: list[str]) -> int:
    from jaxrec.cli import quiet, threads

    quiet.set_verbosity(False)
    quiet.configure_logging(False)
    with open(argv[0], encoding="utf-8") as f:
        request = json.load(f)
    try:
        applied = threads.fix_cpu_threads()
        report = {**_work(request), "cpu_threads": applied}  # 0: XLA's and BLAS's own choice
        code = 0
    except (DataError, ValueError, FileNotFoundError) as e:
        report, code = {"error": (str(e).splitlines() or [type(e).__name__])[0]}, 2
    with open(request["report_out"], "w", encoding="utf-8") as f:
        json.dump(report, f, default=str)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

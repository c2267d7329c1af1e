"""One measured point of `python -m jaxrec.bench scale`, run in a fresh process:

    python -m jaxrec.bench._scale_points STAGE '{"size": ..., ...}'

so that its peak memory is its own and running out of memory ends only this point. Every
point prints one JSON line last: what it measured (seconds per phase, sizes, rates) and the
process's peak resident memory (`VmHWM`) after each phase. Stages: `baseline` (imports only),
`synth`, `prepare`, `prepare_real` (data); `embed`, `index`, `index_real` (semantic index);
`decode`, `train`, `eval` (in `jaxrec.bench._scale_model_points`).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

import numpy as np

log = logging.getLogger("jaxrec.bench.scale")

SHARED = os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data")
)
REAL = ("Beauty", "Sports_and_Outdoors", "Toys_and_Games")
MEAN_LENGTH = 12.0  # the synthetic default: 5 + Poisson(7) interactions per user


def memory() -> dict[str, int]:
    """This process's resident memory now and at its peak, bytes (Linux `/proc`)."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                out["rss_bytes" if key == "VmRSS" else "peak_rss_bytes"] = (
                    int(value.split()[0]) * 1024
                )
    return out


class Phases:
    """Seconds and peak memory at the end of each named phase."""

    def __init__(self):
        self.record: dict[str, dict] = {}

    def __call__(self, name: str):
        phases = self

        class _Phase:
            def __enter__(self):
                self.t0 = time.perf_counter()

            def __exit__(self, *exc):
                if exc[0] is None:
                    seconds = round(time.perf_counter() - self.t0, 3)
                    phases.record[name] = {"seconds": seconds, **memory()}
                    log.info("%s: %.1f s, peak RSS %.2f GiB", name, seconds,
                             phases.record[name]["peak_rss_bytes"] / 2**30)  # fmt: skip

        return _Phase()

    @property
    def seconds(self) -> float:
        return round(sum(p["seconds"] for p in self.record.values()), 3)


def synthetic_shape(interactions: int) -> tuple[int, int]:
    """(users, items) of the synthetic dataset with about `interactions` interactions: the
    default's mean history, and 100 interactions per item (at least 1,000 items)."""
    return max(10, round(interactions / MEAN_LENGTH)), max(1000, interactions // 100)


def dir_bytes(path: str) -> int:
    return sum(
        os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files
    )


# -- data ------------------------------------------------------------------------------------
def point_synth(p: dict) -> dict:
    from jaxrec.data import synthetic

    users, items = synthetic_shape(int(p["size"]))
    phases = Phases()
    with phases("generate"):
        summary = synthetic.generate(p["dir"], num_users=users, num_items=items,
                                     sampler=p.get("sampler", "vectorised"))  # fmt: skip
    return {
        "interactions": summary["interactions"],
        "users": users,
        "items": items,
        "bytes_on_disk": dir_bytes(p["dir"]),
        "phases": phases.record,
        "interactions_per_s": round(summary["interactions"] / phases.seconds, 1),
    }


def point_prepare(p: dict) -> dict:
    """`jaxrec data prepare --source synthetic` in its phases (read, build, oracle, write)."""
    from jaxrec.data import canonical, formats, synthetic
    from jaxrec.data.processing import PrepareOptions, build_dataset

    reviews, meta_path = synthetic.raw_paths(p["dir"])
    phases = Phases()
    with phases("read"):
        inter = formats.read_amazon_reviews(reviews, 2014)
        meta = formats.read_amazon_meta(meta_path, 2014)
    n = len(inter)
    with phases("build"):
        ds = build_dataset(inter, meta, "synthetic", PrepareOptions(), meta_path=meta_path)
        del inter, meta
    with phases("oracle"):
        ds.metadata["oracle"] = synthetic.oracle_for_dataset(p["dir"], ds)
    with phases("write"):
        canonical.write_dataset(ds, p["out"])
    return {
        "interactions": n,
        "output_interactions": ds.num_interactions,
        "users": ds.num_users,
        "items": ds.num_items,
        "bytes_on_disk": dir_bytes(p["out"]),
        "phases": phases.record,
        "interactions_per_s": round(n / phases.seconds, 1),
    }


def point_prepare_real(p: dict) -> dict:
    """`jaxrec data prepare --source p5` of a shared Amazon-2014 dataset."""
    from jaxrec.data import canonical, prepare

    phases = Phases()
    with phases("read_build"):
        ds = prepare.prepare_dataset("p5", os.path.join(SHARED, "amazon2014", p["name"] + ".txt"))
    with phases("write"):
        canonical.write_dataset(ds, p["out"])
    n = ds.metadata["filters"]["input_interactions"]
    return {
        "dataset": p["name"],
        "interactions": n,
        "users": ds.num_users,
        "items": ds.num_items,
        "bytes_on_disk": dir_bytes(p["out"]),
        "phases": phases.record,
        "interactions_per_s": round(n / phases.seconds, 1),
    }


# -- index -----------------------------------------------------------------------------------
def planted_embeddings(path: str, num_items: int, dim: int = 768, seed: int = 0) -> None:
    """Clustered unit-norm embeddings [num_items, dim] float32 written to `path` (.npy) in
    chunks: `jaxrec.indexing.embed.synthetic_embeddings`' structure (64 clusters x 16
    sub-clusters in a 48-d latent space, mapped linearly, a little noise) at any size."""
    rng = np.random.default_rng(seed)
    latent, clusters, sub = 48, 64, 16
    coarse = rng.normal(size=(clusters, latent))
    fine = 0.5 * rng.normal(size=(clusters, sub, latent))
    mix = (rng.normal(size=(latent, dim)) / np.sqrt(latent)).astype(np.float32)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(num_items, dim))
    for lo in range(0, num_items, 1 << 16):
        m = min(1 << 16, num_items - lo)
        c, s = rng.integers(0, clusters, m), rng.integers(0, sub, m)
        z = (coarse[c] + fine[c, s] + 0.25 * rng.normal(size=(m, latent))).astype(np.float32)
        x = z @ mix + 0.02 * rng.standard_normal((m, dim), dtype=np.float32)
        out[lo : lo + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    out.flush()


def point_embed(p: dict) -> dict:
    phases = Phases()
    with phases("generate"):
        planted_embeddings(p["path"], int(p["size"]), int(p.get("dim", 768)))
    return {"items": int(p["size"]), "phases": phases.record}


def _index_report(report: dict) -> dict:
    keep = ("collisions_before_resolution", "collisions", "collisions_without_sinkhorn",
            "levels", "epochs", "seconds_per_epoch", "init_seconds", "train_seconds",
            "assign_seconds", "resolve_seconds", "compile_seconds", "reconstruction_mse",
            "codebook_usage")  # fmt: skip
    return {k: report[k] for k in keep if k in report}


def point_index(p: dict) -> dict:
    """RQ-VAE + Sinkhorn + collision resolution (`jaxrec index build`'s work) on planted
    768-d embeddings, with the library's default `RQVAEConfig`."""
    from jaxrec.indexing.build import rqvae_index
    from jaxrec.indexing.rqvae import RQVAEConfig

    phases = Phases()
    with phases("load"):
        emb = np.load(p["path"])
    overrides = dict(p.get("config", {}))
    if "hidden_dims" in overrides:  # JSON gives a list; the config is a static jit argument
        overrides["hidden_dims"] = tuple(overrides["hidden_dims"])
    config = RQVAEConfig(**overrides)
    with phases("index"):
        index, report = rqvae_index(emb, config)
    return {"items": len(emb), "dim": int(emb.shape[1]), "phases": phases.record,
            "max_steps": config.max_steps, **_index_report(report)}  # fmt: skip


def point_index_real(p: dict) -> dict:
    """The same on a real dataset's own item embeddings (`--embeddings auto`)."""
    from jaxrec.data.canonical import read_dataset
    from jaxrec.indexing.build import rqvae_index
    from jaxrec.indexing.embed import item_embeddings
    from jaxrec.indexing.rqvae import RQVAEConfig

    phases = Phases()
    with phases("load"):
        ds = read_dataset(p["dataset_dir"])
        emb = item_embeddings(ds, "auto", source=p["dataset_dir"])
    with phases("index"):
        index, report = rqvae_index(emb, RQVAEConfig())
    return {"dataset": p["name"], "items": len(emb), "dim": int(emb.shape[1]),
            "phases": phases.record, **_index_report(report)}  # fmt: skip


def point_baseline(p: dict) -> dict:
    """The floor every point stands on: Python, numpy, JAX with its CPU backend, jaxrec."""
    import jax

    import jaxrec.inference.generation  # noqa: F401
    import jaxrec.recipes.sid_retrieval  # noqa: F401

    jax.numpy.zeros(1).block_until_ready()
    return {"devices": jax.device_count()}


POINTS = {
    "baseline": point_baseline,
    "synth": point_synth,
    "prepare": point_prepare,
    "prepare_real": point_prepare_real,
    "embed": point_embed,
    "index": point_index,
    "index_real": point_index_real,
}


def main(argv: list[str]) -> int:
    from jaxrec.cli import quiet, threads

    stage, params = argv[0], json.loads(argv[1])
    quiet.set_verbosity(False)
    quiet.configure_logging(
        fmt=f"%(asctime)s [{stage} {params.get('size', params.get('name', ''))}] %(message)s"
    )
    threads.fix_cpu_threads(params.get("threads", 0))
    if stage not in POINTS:
        from jaxrec.bench import _scale_model_points

        POINTS.update(_scale_model_points.POINTS)
    t0 = time.perf_counter()
    result = POINTS[stage](params)
    result.update(seconds=round(time.perf_counter() - t0, 3), **memory())
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

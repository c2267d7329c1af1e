"""Benchmark: jaxrec's RQ-VAE vs residual k-means from scikit-learn (GRID's "RK-Means").

    python -m jaxrec.bench rqvae [--quick] [--epochs N] [--reps R] [--no-beauty]

Both run in this process on the same embeddings, with the same levels and codes: 12,101 x 768
clustered synthetic embeddings (seeded) and the real Beauty attribute embeddings (TF-IDF + SVD
of `../shared/data/amazon2014/Beauty_item2attributes.json`). Reported per input:

- jaxrec: compile seconds, median seconds per compiled epoch (all epochs of a run; median of
  the per-run medians over `--reps` runs for the epoch time), total seconds of one run from
  raw embeddings to the resolved index, reconstruction MSE, collisions before and after
  resolution, codebook usage per level. Optionally (`--sk-train`) the epoch time with LC-Rec's
  50 Sinkhorn iterations inside every training step.
- peer: scikit-learn KMeans (k-means++, n_init=1, seeded) fitted level by level on the
  residuals of the raw embeddings; median fit seconds over `--reps` runs and the same quality
  figures.

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import time

import numpy as np

from jaxrec.indexing import collisions
from jaxrec.indexing.build import code_statistics
from jaxrec.indexing.embed import attribute_embeddings, synthetic_embeddings
from jaxrec.indexing.rqvae import RQVAEConfig, train_rqvae

log = logging.getLogger(__name__)

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data")


def residual_kmeans(x: np.ndarray, levels: int, codes: int, seed: int):
    """GRID's RK-Means: scikit-learn KMeans on each level's residual. Returns codes, recon."""
    from sklearn.cluster import KMeans

    residual = x.astype(np.float32).copy()
    out = np.zeros((len(x), levels), np.int32)
    recon = np.zeros_like(residual)
    for level in range(levels):
        km = KMeans(n_clusters=codes, n_init=1, random_state=seed + level).fit(residual)
        out[:, level] = km.labels_
        centers = km.cluster_centers_.astype(np.float32)[km.labels_]
        recon += centers
        residual -= centers
    return out, recon


def _quality(x, codes, recon, num_codes) -> dict:
    resolved, _ = collisions.resolve_codes(codes, num_codes)
    return {
        "reconstruction_mse": float(np.mean((recon - x) ** 2)),
        "collisions_before_resolution": collisions.count_colliding(codes),
        "collisions_after_resolution": collisions.count_colliding(resolved),
        **code_statistics(codes, num_codes),
    }


def train_flops_per_epoch(n: int, dim: int, config: RQVAEConfig) -> float:
    """≈ matmul FLOPs of one training epoch: 6 x MACs of encoder + decoder per item."""
    widths = [dim, *config.hidden_dims, config.latent_dim]
    macs = 2 * sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True))
    rows = -(-n // config.batch_size) * config.batch_size
    return 6.0 * macs * rows


def run_jaxrec(x: np.ndarray, config: RQVAEConfig, reps: int) -> dict:
    epoch_medians, totals, first = [], [], None
    for rep in range(reps):
        start = time.perf_counter()
        trained = train_rqvae(x, config, log_every=max(config.epochs // 5, 1))
        codes, cost = trained.assign(x, use_sinkhorn=config.sk_epsilon > 0)
        resolved, _ = collisions.resolve_codes(codes, config.codes, cost)
        totals.append(time.perf_counter() - start)
        epoch_medians.append(trained.seconds_per_epoch)
        if rep == 0:
            first = (trained, codes)
    trained, codes = first
    recon = trained.reconstruct(codes)
    per_epoch = float(np.median(epoch_medians))
    return {
        "compile_seconds": round(trained.compile_seconds, 3),
        "seconds_per_epoch": round(per_epoch, 4),
        "train_gflops_per_second": round(
            train_flops_per_epoch(len(x), x.shape[1], config) / per_epoch / 1e9, 1
        ),
        "epochs": config.epochs,
        # The first run includes compilation; later runs reuse it.
        "total_seconds_first_run": round(totals[0], 3),
        "total_seconds": round(float(np.median(totals[1:] or totals)), 3),
        **_quality(x, codes, recon, config.codes),
    }


def run_peer(x: np.ndarray, config: RQVAEConfig, reps: int) -> dict:
    times, result = [], None
    for _ in range(reps):
        start = time.perf_counter()
        result = residual_kmeans(x, config.levels, config.codes, config.seed)
        times.append(time.perf_counter() - start)
    codes, recon = result
    return {
        "total_seconds": round(float(np.median(times)), 3),
        **_quality(x, codes, recon, config.codes),
    }


def beauty_attribute_embeddings() -> np.ndarray | None:
    from jaxrec.data.formats import read_item2attributes

    path = os.path.join(SHARED, "amazon2014", "Beauty_item2attributes.json")
    if not os.path.exists(path):
        log.warning("%s not found; skipping the Beauty input", path)
        return None
    items = read_item2attributes(path)
    ordered = [items[k] for k in sorted(items, key=int)]
    return attribute_embeddings(ordered, dim=768, seed=0, source=path)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxrec.bench rqvae")
    parser.add_argument("--quick", action="store_true", help="3,000 items, 5 epochs, 1 rep")
    parser.add_argument("--epochs", type=int, default=None, help="default 50 (quick: 5)")
    parser.add_argument("--reps", type=int, default=None, help="default 3 (quick: 1)")
    parser.add_argument("--no-beauty", action="store_true")
    parser.add_argument(
        "--sk-train",
        action="store_true",
        help="also time epochs with 50 Sinkhorn iterations per training step",
    )
    args = parser.parse_args(argv)
    from jaxrec.cli import quiet

    quiet.configure_logging(fmt="%(asctime)s %(name)s: %(message)s")
    epochs = args.epochs or (5 if args.quick else 50)
    reps = args.reps or (1 if args.quick else 3)
    config = RQVAEConfig(epochs=epochs)
    inputs = {"synthetic": synthetic_embeddings(3000 if args.quick else 12_101, 768, seed=0)}
    if not (args.quick or args.no_beauty):
        beauty = beauty_attribute_embeddings()
        if beauty is not None:
            inputs["beauty_attributes"] = beauty
    out = {
        "benchmark": "rqvae",
        "settings": {
            "levels": config.levels,
            "codes": config.codes,
            "latent": config.latent_dim,
            "hidden": list(config.hidden_dims),
            "batch": config.batch_size,
            "beta": config.beta,
            "sk_epsilon": config.sk_epsilon,
            "epochs": epochs,
            "reps": reps,
            "peer": "sklearn KMeans residual (k-means++, n_init=1)",
        },
    }
    for name, x in inputs.items():
        log.info("input %s: %s", name, x.shape)
        ours = run_jaxrec(x, config, reps)
        if args.sk_train:
            sk = train_rqvae(
                x, dataclasses.replace(config, epochs=min(epochs, 10), sk_train_iterations=50)
            )
            ours["seconds_per_epoch_sk_train50"] = round(sk.seconds_per_epoch, 4)
        peer = run_peer(x, config, reps)
        out[name] = {
            "shape": list(x.shape),
            "jaxrec": ours,
            "rkmeans": peer,
            "total_time_ratio_peer_over_jaxrec": round(
                peer["total_seconds"] / ours["total_seconds"], 3
            ),
            "mse_ratio_jaxrec_over_peer": round(
                ours["reconstruction_mse"] / peer["reconstruction_mse"], 3
            ),
        }
    print(json.dumps(out))
    return 0

"""Building an `ItemIndex` for a dataset with any scheme, plus the quality report.

`build_index` is what `jaxrec index build` runs: embeddings -> RQ-VAE -> Sinkhorn last level ->
collision resolution -> ItemIndex (or one of the non-learned schemes), and a JSON-able report.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np

from jaxrec.data.dataset import Dataset
from jaxrec.indexing import collisions, schemes
from jaxrec.indexing.item_index import ItemIndex
from jaxrec.indexing.rqvae import RQVAEConfig, train_rqvae

log = logging.getLogger(__name__)

METHODS = ("rqvae", "random", "sequential", "title")


def code_statistics(codes: np.ndarray, num_codes: int) -> dict[str, list[float]]:
    """Per level: fraction of the K codes used and perplexity exp(H(code distribution))."""
    usage, perplexity = [], []
    for level in range(codes.shape[1]):
        counts = np.bincount(codes[:, level], minlength=num_codes).astype(np.float64)
        p = counts[counts > 0] / counts.sum()
        usage.append(round(float((counts > 0).sum()) / num_codes, 6))
        perplexity.append(round(float(np.exp(-(p * np.log(p)).sum())), 4))
    return {"codebook_usage": usage, "perplexity": perplexity}


# Above this many items the reconstruction is measured in chunks (the full [n, D] temporaries
# of a million 768-d items take gigabytes); below it, in one piece as before.
_CHUNK_ROWS = 1 << 17


def _level_statistics(codes: np.ndarray, config: RQVAEConfig) -> dict[str, list[float]]:
    """`code_statistics` of the learnt levels over their K codes, and of the collision level
    (if one was added) over its own range."""
    stats = code_statistics(codes[:, : config.levels], config.codes)
    if codes.shape[1] > config.levels:
        extra = codes[:, config.levels :]
        for key, values in code_statistics(extra, int(extra.max()) + 1).items():
            stats[key] += values
    return stats


def _reconstruction(trained, codes: np.ndarray, embeddings: np.ndarray) -> dict[str, float]:
    """Reconstruction MSE of `codes` [n, L] against `embeddings` [n, D], and the embeddings'
    mean per-dimension variance (the MSE of predicting the mean)."""
    n, dim = embeddings.shape
    if n <= _CHUNK_ROWS:
        recon = trained.reconstruct(codes)
        return {
            "reconstruction_mse": float(np.mean((recon - embeddings) ** 2)),
            "embedding_variance": float(np.var(embeddings, axis=0).sum() / dim),
        }
    sq_err = 0.0
    mean = embeddings.mean(axis=0, dtype=np.float64)
    sq_dev = np.zeros(dim)
    for lo in range(0, n, _CHUNK_ROWS):
        chunk = np.asarray(embeddings[lo : lo + _CHUNK_ROWS], np.float64)
        recon = trained.reconstruct(codes[lo : lo + _CHUNK_ROWS])
        sq_err += float(np.sum((recon - chunk) ** 2))
        sq_dev += np.sum((chunk - mean) ** 2, axis=0)
    return {
        "reconstruction_mse": sq_err / (n * dim),
        "embedding_variance": float(sq_dev.sum() / n / dim),
    }


def rqvae_index(
    embeddings: np.ndarray, config: RQVAEConfig, resolve: bool = True
) -> tuple[ItemIndex, dict]:
    """Train an RQ-VAE on embeddings [n, D] and turn its codes into a collision-free index.

    The last level is the Sinkhorn assignment over the whole catalogue when
    `config.sk_epsilon > 0` (LC-Rec's uniform semantic mapping), argmin otherwise.
    """
    start = time.perf_counter()
    trained = train_rqvae(embeddings, config)
    t0 = time.perf_counter()
    codes, cost, plain_codes = trained.assign_all(embeddings, config.sk_epsilon > 0)
    t1 = time.perf_counter()
    before = collisions.count_colliding(codes)
    if resolve:
        codes, res = collisions.resolve_codes(codes, config.codes, cost)
        if before:
            log.info(
                "rqvae: %d colliding item(s) resolved (%d moved%s)",
                before,
                res.moved,
                ", extra level added" if res.extra_level else "",
            )
    t2 = time.perf_counter()
    del cost
    report = {
        "collisions": collisions.count_colliding(codes),
        "collisions_before_resolution": before,
        "collisions_without_sinkhorn": collisions.count_colliding(plain_codes),
        "levels": int(codes.shape[1]),
        "codes_per_level": config.codes,
        **_level_statistics(codes, config),
        **_reconstruction(trained, codes[:, : config.levels], embeddings),
        "seconds_per_epoch": round(trained.seconds_per_epoch, 4),
        "epochs": len(trained.epoch_seconds),
        "init_seconds": round(trained.init_seconds, 3),
        "train_seconds": round(trained.train_seconds, 3),
        "assign_seconds": round(t1 - t0, 3),
        "resolve_seconds": round(t2 - t1, 3),
        "compile_seconds": round(trained.compile_seconds, 3),
        "seconds": round(time.perf_counter() - start, 3),
        "config": dataclasses.asdict(config),
    }
    return schemes.semantic_index(codes, scheme="rqvae"), report


def build_index(
    dataset: Dataset,
    method: str,
    embeddings: np.ndarray | None = None,
    config: RQVAEConfig = RQVAEConfig(),
    resolve: bool = True,
) -> tuple[ItemIndex, dict]:
    """An index of `dataset`'s items by `method` (see METHODS) and its report.

    `embeddings` [num_items, D] is needed for "rqvae" only. Non-learned schemes use
    `config.seed` (random) and report the same collision fields.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    start = time.perf_counter()
    if method == "rqvae":
        if embeddings is None:
            raise ValueError("method 'rqvae' needs embeddings")
        index, report = rqvae_index(embeddings, config, resolve)
    else:
        if method == "random":
            index = schemes.random_index(dataset.num_items, seed=config.seed)
        elif method == "sequential":
            index = schemes.sequential_index(dataset.sequences, dataset.num_items)
        else:
            index = schemes.title_index(dataset.items, source=dataset.name)
        before = index.num_colliding_items()
        if resolve:
            index = collisions.resolve_index(index, source=dataset.name)
        report = {
            "collisions": index.num_colliding_items(),
            "collisions_before_resolution": before,
            "levels": index.levels,
        }
        if not index.is_text:
            codes = schemes.codes_from_index(index)
            report["codes_per_level"] = int(codes.max()) + 1
            report.update(code_statistics(codes, report["codes_per_level"]))
        report["seconds"] = round(time.perf_counter() - start, 3)
    report = {"method": method, "num_items": index.num_items, **report}
    return index, report

"""`jaxrec baseline {pop,sasrec,rpg} DATASET_DIR`: reference models on a prepared dataset.

Popularity and SASRec-CE are the conventional baselines; RPG (`jaxrec.baselines.rpg`) is the
published generative model with long semantic ids scored in parallel. All use the dataset's
leave-one-out split and full ranking over all items; the printed metric keys are those of
`jaxrec eval` (`recall@K`, `ndcg@K` for K in 1, 5, 10, 20, `num_users`) plus `seconds`. By
default the target is ranked among all items; `--exclude-history` removes the user's earlier
items from the ranking (RecBole's convention). The JSON says which was used.

A trained baseline's figure from one seed is a point: `--seeds 0,1,2` trains it once per seed
(each run exactly what `--seed S` gives) and reports every seed and the mean ± sample std.
"""

from __future__ import annotations

import argparse
import json
import logging
import time

from jaxrec.data.canonical import read_dataset
from jaxrec.data.dataset import DataError

log = logging.getLogger(__name__)


# Per-model defaults of the shared training flags (RPG's are its published Beauty setting).
_DEFAULTS = {
    "sasrec": dict(learning_rate=2e-3, d_model=64, num_heads=1),
    "rpg": dict(learning_rate=1e-2, d_model=448, num_heads=4),
}


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("baseline", help="popularity, SASRec and RPG baselines")
    sub = parser.add_subparsers(dest="baseline", metavar="MODEL", required=True)
    for name, help_text in (
        ("pop", "most popular training items"),
        ("sasrec", "SASRec, cross-entropy over all items"),
        ("rpg", "RPG: long OPQ semantic ids predicted in parallel, every item scored"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("dataset_dir", metavar="DATASET_DIR", help="a prepared jaxrec dataset")
        p.add_argument("--name", default=None, help="dataset name if DATASET_DIR holds several")
        p.add_argument("--split", choices=("test", "validation"), default="test")
        p.add_argument(
            "--exclude-history",
            action="store_true",
            help="exclude the user's history items from the ranking (default: rank all items)",
        )
        p.add_argument("--json", action="store_true", help="print one JSON object last")
        if name == "pop":
            p.set_defaults(func=run)
            continue
        d = _DEFAULTS[name]
        p.add_argument("--epochs", type=int, default=200, help="maximum epochs")
        p.add_argument("--patience", type=int, default=5, help="evaluations without gain")
        p.add_argument("--seed", type=int, default=None, help="seed of the initialisation, "
                       "the data order and dropout (default 0)")  # fmt: skip
        p.add_argument("--seeds", default=None, metavar="S,S,...", help="train once per seed "
                       "and report each and their mean ± sample std, e.g. 0,1,2")  # fmt: skip
        p.add_argument("--learning-rate", type=float, default=d["learning_rate"])
        p.add_argument("--batch-rows", type=int, default=32, help="packed rows per step")
        p.add_argument("--d-model", type=int, default=d["d_model"])
        p.add_argument("--num-heads", type=int, default=d["num_heads"])
        p.add_argument("--dropout", type=float, default=0.5,
                       help="dropout on the inputs and attention")  # fmt: skip
        p.add_argument("--eval-every", type=int, default=1)
        p.add_argument(
            "--schedule", choices=("constant", "cosine"),
            default="cosine" if name == "rpg" else "constant",
            help="learning rate after warm-up: constant, or cosine to 0 at --epochs",
        )  # fmt: skip
        p.add_argument("--max-minutes", type=float, default=None, help="training budget")
        p.add_argument(
            "--recommendations", default=None, metavar="FILE",
            help="also write every user's top-K items of --split as JSON lines (the format "
            "of jaxrec recommend), e.g. for jaxrec analyze prefix-errors --reference",
        )  # fmt: skip
        p.add_argument("--top-k", type=int, default=10, help="items per user in FILE")
        if name == "rpg":
            p.add_argument(
                "--embeddings", default="auto",
                help="item embeddings the long ids quantize (the specs of jaxrec index)",
            )  # fmt: skip
            p.add_argument("--num-codebooks", type=int, default=32, help="codes per item id")
            p.add_argument("--codebook-size", type=int, default=256)
            p.add_argument(
                "--pca-dim", type=int, default=128,
                help="whitened PCA width before OPQ (a multiple of --num-codebooks)",
            )  # fmt: skip
            p.add_argument("--temperature", type=float, default=0.03)
            p.add_argument("--warmup-steps", type=int, default=200)
        p.set_defaults(func=run)


def _train(args, ds, result: dict):
    """(model, TrainResult) of the `sasrec` or `rpg` baseline as `args` ask."""
    from jaxrec.baselines import sasrec

    common = dict(
        num_items=ds.num_items,
        d_model=args.d_model,
        num_heads=args.num_heads,
        attention_dropout=args.dropout,
        learning_rate=args.learning_rate,
        batch_rows=args.batch_rows,
        epochs=args.epochs,
        patience=args.patience,
        eval_every=args.eval_every,
        schedule=args.schedule,
        seed=args.seed,
        max_seconds=args.max_minutes * 60 if args.max_minutes else None,
    )
    if args.baseline == "sasrec":
        return sasrec.train(ds, sasrec.SASRecConfig(dropout=args.dropout, **common))
    from jaxrec.baselines import rpg
    from jaxrec.indexing import embed, opq

    cfg = rpg.RPGConfig(
        embed_dropout=args.dropout,
        warmup_steps=args.warmup_steps,
        num_codebooks=args.num_codebooks,
        codebook_size=args.codebook_size,
        temperature=args.temperature,
        **common,
    )
    opq.check_widths(cfg.num_codebooks, cfg.codebook_size, args.pca_dim)
    t0 = time.perf_counter()
    emb = embed.item_embeddings(ds, args.embeddings, args.seed, source=args.dataset_dir)
    ids = opq.long_ids(emb, cfg.num_codebooks, cfg.codebook_size, args.pca_dim, args.seed,
                       source=f"{args.dataset_dir} --embeddings {args.embeddings}")  # fmt: skip
    result["long_ids"] = {
        "embeddings": args.embeddings, "num_codebooks": cfg.num_codebooks,
        "codebook_size": cfg.codebook_size, "pca_dim": args.pca_dim,
        "distortion": ids.distortion[-1], "shared_items": ids.shared,
        "seconds": time.perf_counter() - t0,
    }  # fmt: skip
    return rpg.train(ds, cfg, ids.codes)


def run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    seeds = _check_seeds(args)
    ds = read_dataset(args.dataset_dir, args.name)
    if seeds is not None:
        return _run_seeds(args, ds, seeds, t0)
    result, metrics = _run_one(args, ds)
    result["seconds"] = time.perf_counter() - t0
    print(f"{_title(args, ds)}:")
    for k in (1, 5, 10, 20):
        r, n = metrics[f"recall@{k}"], metrics[f"ndcg@{k}"]
        print(f"  Recall@{k:<2d} {r:.4f}   NDCG@{k:<2d} {n:.4f}")
    print(f"  {result['seconds']:.1f} s")
    if args.json:
        print(json.dumps(result))
    return 0


def _title(args, ds) -> str:
    ranking = "history items excluded" if args.exclude_history else "all items ranked"
    return f"{args.baseline} on {ds.name} ({args.split}, {ds.num_users} users, {ranking})"


def _check_seeds(args) -> list[int] | None:
    """The seeds of `--seeds` (None without it); `args.seed` resolved to its default 0."""
    seeds_text = getattr(args, "seeds", None)
    if seeds_text is None:
        if args.baseline != "pop" and args.seed is None:
            args.seed = 0
        return None
    from jaxrec.recipes.seed_ensemble import parse_seeds

    if args.seed is not None:
        raise DataError("--seed and --seeds exclude each other (--seeds trains one run per seed)")
    if args.recommendations:
        raise DataError("--recommendations writes one model's lists: use it with --seed, not "
                        "--seeds")  # fmt: skip
    return parse_seeds(seeds_text, "a spread over seeds")


def _run_one(args, ds) -> tuple[dict, dict]:
    """(result, metrics) of one baseline run as `args` ask: the JSON fields and the figures."""
    t0 = time.perf_counter()
    result: dict = {"model": args.baseline, "dataset": ds.name, "split": args.split}
    if args.baseline == "pop":
        from jaxrec.baselines import popularity

        metrics = popularity.evaluate(ds, args.split, exclude_history=args.exclude_history)
    else:
        from jaxrec.baselines import sasrec

        if args.recommendations and args.top_k < 1:
            raise DataError(f"--top-k {args.top_k}: must be at least 1")
        model, res = _train(args, ds, result)
        metrics = sasrec.evaluate(model, res.params, ds, args.split, args.exclude_history)
        result.update(seed=args.seed, best_epoch=res.best_epoch, epochs_run=res.epochs_run)
        if args.recommendations:
            _write_recommendations(args, ds, sasrec.top_items(
                model, res.params, ds, args.split, args.top_k, args.exclude_history))  # fmt: skip
            result["recommendations"] = args.recommendations
    result.update(metrics)
    result["exclude_history"] = bool(args.exclude_history)
    result["seconds"] = time.perf_counter() - t0
    return result, metrics


def _run_seeds(args, ds, seeds: list[int], t0: float) -> int:
    """One run per seed, in order; each seed's figures, then their mean ± sample std."""
    from jaxrec.recipes.seeds import spread

    runs = []
    for i, seed in enumerate(seeds, 1):
        log.info("%s on %s: seed %d (%d of %d)", args.baseline, ds.name, seed, i, len(seeds))
        result, _ = _run_one(argparse.Namespace(**{**vars(args), "seed": seed}), ds)
        runs.append(result)
    keys = [f"{m}@{k}" for m in ("recall", "ndcg") for k in (1, 5, 10, 20)]
    summary = {k: spread([r[k] for r in runs]) for k in keys}
    print(f"{_title(args, ds)}, seeds {','.join(map(str, seeds))}:")
    for r in runs:
        print(f"  seed {r['seed']:<3d} Recall@10 {r['recall@10']:.4f}   NDCG@10 "
              f"{r['ndcg@10']:.4f}   best epoch {r['best_epoch']} of {r['epochs_run']}, "
              f"{r['seconds']:.1f} s")  # fmt: skip
    print("  mean ± sample std:")
    for k in (1, 5, 10, 20):
        r, n = summary[f"recall@{k}"], summary[f"ndcg@{k}"]
        print(f"  Recall@{k:<2d} {r['mean']:.4f} ± {r['std']:.4f}   "
              f"NDCG@{k:<2d} {n['mean']:.4f} ± {n['std']:.4f}")  # fmt: skip
    seconds = time.perf_counter() - t0
    print(f"  {seconds:.1f} s")
    if args.json:
        print(json.dumps({"model": args.baseline, "dataset": ds.name, "split": args.split,
                          "exclude_history": bool(args.exclude_history), "seeds": seeds,
                          "runs": runs, "spread": summary, "seconds": seconds}))  # fmt: skip
    return 0


def _write_recommendations(args, ds, batches) -> None:
    """JSON lines `{"user", "items", "scores"[, "titles"]}` per user, as `jaxrec recommend`."""
    import os

    from jaxrec.inference.recommend import Request, output_rows

    os.makedirs(os.path.dirname(os.path.abspath(args.recommendations)), exist_ok=True)
    tmp = args.recommendations + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for users, items, scores in batches:
            requests = [Request(str(int(u)), ()) for u in users]
            for row in output_rows(requests, items, scores, ds, args.top_k):
                f.write(json.dumps(row) + "\n")
    os.replace(tmp, args.recommendations)
    log.info("recommendations: %s", args.recommendations)

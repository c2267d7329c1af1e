"""`jaxrec index build|check`: semantic (RQ-VAE) and other item ids for a prepared dataset."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil

from jaxrec.data.canonical import read_dataset
from jaxrec.data.dataset import DataError

log = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("index", help="build or check item ids (.index.json)")
    sub = parser.add_subparsers(dest="index_command", metavar="SUBCOMMAND", required=True)

    build = sub.add_parser(
        "build",
        help="build an item index for a prepared dataset",
        description="Train an RQ-VAE on item embeddings (or use random / sequential / title "
        "ids) and write an LC-Rec compatible .index.json with unique ids.",
    )
    build.add_argument("dataset_dir", metavar="DATASET_DIR", help="a prepared dataset")
    build.add_argument(
        "--method", choices=("rqvae", "random", "sequential", "title"), default="rqvae"
    )
    build.add_argument(
        "--embeddings",
        default="auto",
        help="auto | text | text-tfidf | attributes | transitions | PATH.npy (rqvae only), or "
        "several joined by '+' with optional weights, e.g. 'auto+2*transitions'; auto: "
        "attributes when items have them, else text (MiniLM with the [text] extra, else "
        "TF-IDF); transitions: collaborative embeddings of the training interactions",
    )
    build.add_argument("--levels", type=int, default=4)
    build.add_argument("--codes", type=int, default=256, help="codes per level")
    build.add_argument("--latent-dim", type=int, default=32)
    build.add_argument("--hidden", default="512,256,128", help="encoder hidden sizes")
    build.add_argument("--epochs", type=int, default=200)
    build.add_argument("--batch-size", type=int, default=1024)
    build.add_argument("--lr", type=float, default=1e-3)
    build.add_argument(
        "--sk-epsilon",
        type=float,
        default=0.003,
        help="Sinkhorn epsilon on the last level (0 disables)",
    )
    build.add_argument("--seed", type=int, default=0)
    build.add_argument(
        "--keep-collisions",
        action="store_true",
        help="do not resolve collisions (decoders then expand shared leaves)",
    )
    build.add_argument("--out", help="output file (default DATASET_DIR/{name}.index.json)")
    build.add_argument("--json", action="store_true", help="print the report as JSON last")
    build.set_defaults(func=run_build)

    check = sub.add_parser("check", help="report collisions and shape of an .index.json")
    check.add_argument("file", metavar="FILE")
    check.add_argument(
        "--dataset",
        help="prepared dataset the index must belong to (same item-id mapping, every item)",
    )
    check.add_argument(
        "--resolve", metavar="OUT", help="also write a collision-free copy of FILE to OUT"
    )
    check.add_argument("--json", action="store_true")
    check.set_defaults(func=run_check)


def _config(args):
    from jaxrec.indexing.rqvae import RQVAEConfig

    try:
        hidden = tuple(int(h) for h in args.hidden.split(",") if h)
    except ValueError:
        raise DataError(f"--hidden must be comma-separated integers, got {args.hidden!r}") from None
    if args.levels < 1 or args.codes < 2 or args.epochs < 0:
        raise DataError("--levels must be >= 1, --codes >= 2 and --epochs >= 0")
    return RQVAEConfig(
        hidden_dims=hidden,
        latent_dim=args.latent_dim,
        levels=args.levels,
        codes=args.codes,
        sk_epsilon=args.sk_epsilon,
        learning_rate=args.lr,
        batch_size=args.batch_size,
        epochs=args.epochs,
        seed=args.seed,
    )


def run_build(args: argparse.Namespace) -> int:
    from jaxrec.cli import threads as cpu_threads
    from jaxrec.indexing.build import build_index
    from jaxrec.indexing.isolated import build_rqvae_index

    dataset = read_dataset(args.dataset_dir)
    config = _config(args)
    if args.method == "rqvae":  # in a worker: the same bytes whatever the core count
        # One compute thread unless asked (`jaxrec --cpu-threads N index build` or
        # $JAXREC_CPU_THREADS): another thread count gives other ids, each the same on any
        # number of cores (2 threads train about twice as fast on 2 cores).
        n = cpu_threads.requested(args.cpu_threads)
        index, report = build_rqvae_index(args.dataset_dir, args.embeddings, config,
                                          resolve=not args.keep_collisions, threads=n)  # fmt: skip
    else:
        index, report = build_index(dataset, args.method, None, config,
                                    resolve=not args.keep_collisions)  # fmt: skip
    out = args.out or os.path.join(args.dataset_dir, f"{dataset.name}.index.json")
    index.to_json(out, dataset=dataset)
    report = {"out": out, "dataset": dataset.name, **report}
    report.pop("config", None)
    print(
        f"wrote {out}: {index.num_items} items, {report['levels']} level(s), "
        f"{report['collisions']} collision(s) ({report['collisions_before_resolution']} before "
        "resolution)"
    )
    if "reconstruction_mse" in report:
        print(
            f"codebook usage {report['codebook_usage']}, perplexity {report['perplexity']}, "
            f"reconstruction MSE {report['reconstruction_mse']:.5f}, "
            f"{report['seconds_per_epoch']:.3f} s/epoch, {report['seconds']:.1f} s total"
        )
    if args.json:
        print(json.dumps(report))
    return 0


def run_check(args: argparse.Namespace) -> int:
    from jaxrec.indexing.binding import verify_index
    from jaxrec.indexing.item_index import ItemIndex

    num_items = dataset = None
    if args.dataset:
        dataset = read_dataset(args.dataset)
        num_items = dataset.num_items
        verify_index(args.file, dataset, args.dataset)
    index = ItemIndex.from_json(args.file, num_items=num_items)
    groups = index.collisions()
    report = {
        "file": args.file,
        "num_items": index.num_items,
        "levels": index.levels,
        "is_text": index.is_text,
        "distinct_tokens": len(index.item_tokens()),
        "collisions": index.num_colliding_items(),
        "collision_groups": len(groups),
        "largest_group": max((len(v) for v in groups.values()), default=1),
        "examples": [items for items in list(groups.values())[:5]],
    }
    print(
        f"{args.file}: {report['num_items']} items, {report['levels']} level(s), "
        f"{report['collisions']} colliding item(s) in {report['collision_groups']} group(s)"
    )
    if args.resolve:
        from jaxrec.indexing import binding
        from jaxrec.indexing.schemes import load_index

        load_index(args.file, num_items=num_items, resolve=True).to_json(args.resolve)
        if os.path.exists(binding.record_path(args.file)):  # same items, same record
            shutil.copyfile(binding.record_path(args.file), binding.record_path(args.resolve))
        report["resolved_out"] = args.resolve
        print(f"wrote {args.resolve} with every item unique")
    if args.json:
        print(json.dumps(report))
    return 0

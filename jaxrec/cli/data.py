"""`jaxrec data {prepare,stats,synth}`."""

from __future__ import annotations

import json
import os
import time

from jaxrec.data import canonical, prepare, stats, synthetic
from jaxrec.data.dataset import DataError
from jaxrec.data.processing import ITEM_ORDERS, PrepareOptions


def print_json(obj: dict) -> None:
    """The `--json` convention: one JSON object as the last line of stdout."""
    print(json.dumps(obj, sort_keys=True, default=float))


def _prepare(args) -> int:
    t0 = time.time()
    canonical.check_out_dir(args.out, args.overwrite)  # before the (slow) preparation
    out = os.path.abspath(args.out)
    for given in (args.input, args.meta):
        if given and (os.path.abspath(given) + os.sep).startswith(out + os.sep):
            raise DataError(
                f"{args.out}: --out holds the input {given}; --overwrite would delete it"
            )
    options = PrepareOptions(
        kcore=args.kcore,
        dedupe=not args.keep_duplicates,
        item_order=args.item_order,
        num_negatives=args.num_negatives,
        history_cap=args.history_cap,
        seed=args.seed,
    )
    ds = prepare.prepare_dataset(
        args.source, args.input, args.meta, options, args.name, args.amazon_version
    )
    path = canonical.write_dataset_dir(ds, args.out, overwrite=args.overwrite)
    summary = stats.dataset_stats(ds)
    summary["seconds"] = round(time.time() - t0, 3)
    summary["out"] = os.path.dirname(os.path.abspath(path))
    print(
        f"prepared {ds.name}: {ds.num_users} users, {ds.num_items} items, "
        f"{ds.num_interactions} interactions -> {summary['out']} ({summary['seconds']} s)"
    )
    for key, value in summary["filters"].items():
        print(f"  {key}: {value}")
    if args.json:
        print_json(summary)
    return 0


def _stats(args) -> int:
    result = stats.stats_for_path(args.path)
    for key in ("users", "items", "interactions", "mean_length", "density"):
        if key in result:
            print(f"{key}: {result[key]}")
    for key, value in result.get("filters", {}).items():
        print(f"  {key}: {value}")
    if args.json:
        print_json(result)
    return 0


def _synth(args) -> int:
    canonical.check_out_dir(args.out, args.overwrite)
    result = {}

    def write(tmp: str) -> None:
        result["summary"] = synthetic.generate(
            tmp,
            num_users=args.users,
            num_items=args.items,
            num_topics=args.topics,
            mean_length=args.mean_length,
            seed=args.seed,
        )

    canonical.replace_dir(args.out, write)  # all files at once, or none
    summary = result["summary"]
    print(
        f"synthetic raw data in {args.out}: {summary['users']} users, {summary['items']} items, "
        f"{summary['interactions']} interactions; oracle recall@10 "
        f"{summary['oracle_expected']['recall@10']:.3f}"
    )
    if args.json:
        print_json(summary)
    return 0


def add_parser(subparsers) -> None:
    data = subparsers.add_parser("data", help="read, prepare, generate and inspect datasets")
    sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser("prepare", help="raw files -> canonical dataset (LC-Rec layout + extras)")
    p.add_argument("--source", choices=prepare.SOURCES, required=True)
    p.add_argument("--input", required=True, help="reviews/ratings/sequence/inter file or dir")
    p.add_argument("--meta", default=None, help="item metadata file (see docs/data.md)")
    p.add_argument("--out", required=True, help="output directory (new or empty)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --out as a whole (nothing of the old directory is kept)",
    )
    p.add_argument("--name", default=None, help="dataset name (default: from the file name)")
    p.add_argument("--kcore", type=int, default=5, help="iterated k-core (0 disables)")
    p.add_argument("--keep-duplicates", action="store_true", help="keep repeated user-item pairs")
    p.add_argument("--item-order", choices=ITEM_ORDERS, default="shuffle")
    p.add_argument("--num-negatives", type=int, default=99)
    p.add_argument("--history-cap", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--amazon-version",
        type=int,
        choices=(2014, 2018),
        default=None,
        help="Amazon format year (reviews: detected; ratings CSV: 2014 by default)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_prepare)

    s = sub.add_parser("stats", help="statistics of a dataset directory or a raw file")
    s.add_argument("path")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_stats)

    g = sub.add_parser("synth", help="write the synthetic default (raw Amazon-2014 files)")
    g.add_argument("--out", required=True, help="output directory (new or empty)")
    g.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --out as a whole (nothing of the old directory is kept)",
    )
    g.add_argument("--users", type=int, default=2000)
    g.add_argument("--items", type=int, default=1000)
    g.add_argument("--topics", type=int, default=20)
    g.add_argument("--mean-length", type=float, default=12.0)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--json", action="store_true")
    g.set_defaults(func=_synth)

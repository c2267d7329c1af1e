"""`jaxrec recommend`: top-K items for users or histories from any trained MODEL_DIR.

    jaxrec recommend --model-dir D --dataset DIR (--split test | --users FILE |
        --histories FILE) --top-k K --out recs.jsonl [--json]

Writes one JSON line per user, `{"user": ..., "items": [K item ids, best first], "scores":
[...], "titles": [...]}` (titles when the dataset has them), as it goes, with progress. See
`jaxrec.inference.recommend` for who is recommended for and how.
"""

from __future__ import annotations

import json
import os
import time


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "recommend", help="top-K recommendations from a trained model (JSON lines)"
    )
    p.add_argument(
        "--model-dir",
        required=True,
        help="MODEL_DIR of jaxrec reproduce / demo / train or python -m t5x.train",
    )
    p.add_argument("--dataset", required=True, help="prepared dataset directory")
    who = p.add_mutually_exclusive_group()
    who.add_argument(
        "--users",
        help="file of user keys (of the dataset's .inter.json), one "
        "per line: recommend what comes after their whole history",
    )
    who.add_argument("--histories", help='JSON lines {"user": ..., "history": [item ids]}')
    p.add_argument(
        "--split",
        choices=("validation", "test"),
        default=None,
        help="every user of this split, with that split's evaluation history "
        "(with --users: their history in that split)",
    )
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument(
        "--checkpoint-step",
        type=int,
        default=None,
        help="default: the selected step, else the latest",
    )
    p.add_argument(
        "--num-beams", type=int, default=None, help="default: the model's (at least --top-k)"
    )
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--out", required=True, help="output JSON lines")
    p.add_argument("--json", action="store_true", help="last stdout line is a JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    from jaxrec.data.dataset import DataError
    from jaxrec.inference.recommend import recommend

    if args.users is None and args.histories is None and args.split is None:
        raise DataError("say whom to recommend for: --split, --users FILE or --histories FILE")
    if args.histories is not None and args.split is not None:
        raise DataError("--histories gives the histories; --split does not apply to it")
    if args.top_k < 1:
        raise DataError(f"--top-k {args.top_k}: must be at least 1")
    for path in (args.users, args.histories):
        if path is not None and not os.path.isfile(path):
            raise DataError(f"{path}: no such file")
    source = (("users", args.users) if args.users else ("histories", args.histories)
              if args.histories else ("split", None))  # fmt: skip
    rows = recommend(args.model_dir, args.dataset, source, args.top_k, args.split,
                     args.checkpoint_step, args.num_beams, args.batch_size)  # fmt: skip
    t0, n = time.perf_counter(), 0
    tmp = args.out + ".tmp"
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
            n += 1
    os.replace(tmp, args.out)  # a failed run leaves no partial file under --out
    seconds = time.perf_counter() - t0
    print(f"{n} users, top {args.top_k} each: {args.out} ({seconds:.1f} s)")
    if args.json:
        print(json.dumps({"users": n, "top_k": args.top_k, "out": args.out,
                          "seconds": round(seconds, 2)}))  # fmt: skip
    return 0

"""`jaxrec analyze`: error analyses and seed spreads of trained models.

`prefix-errors`, where a semantic-id model loses what a reference model finds:

    jaxrec analyze prefix-errors --model-dir D --dataset DIR --reference recs.jsonl
        [--split validation] [--top-k 10] [--num-beams N] [--out rows.jsonl] [--json]

`--reference` is a recommendations file of the same split (`jaxrec recommend --split S` or
`jaxrec baseline sasrec --split S --recommendations FILE`). Of the targets the reference ranks
in its top K and the model does not, prints how many were lost at each level of the semantic
id (prefix errors) and how many were ranked past K with a correct path
(`jaxrec.inference.prefix_errors`). The model's own search is the generative one (a hybrid
MODEL_DIR's dense re-scoring is not applied).

`seeds`, the spread of a recipe over seeds:

    jaxrec analyze seeds RUN RUN [RUN ...] [--metrics recall@10,ndcg@10] [--json]

RUNs are `jaxrec reproduce` or `jaxrec demo` OUT directories that differ only in `--seed`
(checked: same data, same recipe settings). Prints mean ± sample std of each system's test
metrics, and jaxrec / SASRec for demo runs (`jaxrec.recipes.seeds`).

`ensemble`, several semantic-id models (seeds of one recipe) ranking together:

    jaxrec analyze ensemble RUN RUN [RUN ...] --dataset DIR [--num-beams N]
        [--validation-users N] [--out result.json] [--json]

RUNs are MODEL_DIRs over the dataset's items (each with its own index), or the OUT of
`jaxrec reproduce tiger --seeds`, which stands for its members. The union of their
beams is ranked by summed beam and dense-head log-probabilities or by reciprocal-rank fusion,
the variant chosen on validation; test reports it beside each member alone
(`jaxrec.recipes.ensemble`).

`history`, how many places of a written list the user's own history takes:

    jaxrec analyze history RECS --dataset DIR [--split test] [--top-k 10] [--json]

RECS is any recommendations file of the split (`jaxrec recommend`, `jaxrec baseline sasrec
--recommendations`, or the per-user rows `jaxrec eval` writes).
Prints the share of users whose first item is a history item, the history items among the
first K, and Recall@K / NDCG@K as ranked and with history items dropped
(`jaxrec.inference.history_share`).
"""

from __future__ import annotations

import json
import os

from jaxrec.data.dataset import DataError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("analyze", help="error analyses of a trained model")
    sub = parser.add_subparsers(dest="analysis", metavar="ANALYSIS", required=True)
    p = sub.add_parser(
        "prefix-errors",
        help="of the targets a reference model finds and this one misses: lost at which level",
    )
    p.add_argument("--model-dir", required=True, help="a semantic-id MODEL_DIR")
    p.add_argument("--dataset", required=True, help="prepared dataset directory")
    p.add_argument("--reference", required=True, help="recommendations (JSON lines) to compare")
    p.add_argument("--split", choices=("validation", "test"), default="validation")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--num-beams", type=int, default=None, help="default: the model's")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--checkpoint-step", type=int, default=None)
    p.add_argument("--out", default=None, help="JSON lines, one per reference-only user")
    p.add_argument("--json", action="store_true", help="last stdout line is a JSON object")
    p.set_defaults(func=run)
    s = sub.add_parser("seeds", help="mean ± std of test metrics over runs differing in seed")
    s.add_argument("runs", nargs="+", metavar="RUN", help="reproduce or demo OUT directories "
                   "(a `jaxrec reproduce --seeds` OUT: its members)")  # fmt: skip
    s.add_argument("--metrics", default="recall@5,ndcg@5,recall@10,ndcg@10,recall@20,ndcg@20",
                   help="comma-separated metrics of the table")  # fmt: skip
    s.add_argument("--json", action="store_true", help="last stdout line is a JSON object")
    s.set_defaults(func=run_seeds)
    e = sub.add_parser("ensemble", help="several semantic-id models ranking together: test of "
                       "the fusion chosen on validation, beside each model alone")  # fmt: skip
    e.add_argument("runs", nargs="+", metavar="RUN", help="semantic-id MODEL_DIRs, or a "
                   "`jaxrec reproduce --seeds` OUT (its members)")  # fmt: skip
    e.add_argument("--dataset", required=True, help="prepared dataset directory")
    e.add_argument(
        "--num-beams",
        type=int,
        default=None,
        help="beams of every member (default: each its own test beams)",
    )
    e.add_argument("--batch-size", type=int, default=None)
    e.add_argument(
        "--validation-users",
        type=int,
        default=None,
        help="choose the fusion on the first N validation users (default: all)",
    )
    e.add_argument("--out", default=None, help="write the result JSON here")
    e.add_argument("--json", action="store_true", help="last stdout line is a JSON object")
    e.set_defaults(func=run_ensemble)
    h = sub.add_parser("history", help="how many places of a recommendations file the users' "
                       "own histories take; its metrics with them dropped")  # fmt: skip
    h.add_argument("recs", metavar="RECS", help="recommendations (JSON lines) of every user")
    h.add_argument("--dataset", required=True, help="prepared dataset directory")
    h.add_argument("--split", choices=("validation", "test"), default="test")
    h.add_argument("--top-k", type=int, default=10)
    h.add_argument("--json", action="store_true", help="last stdout line is a JSON object")
    h.set_defaults(func=run_history)


def run_history(args) -> int:
    from jaxrec.data.canonical import read_dataset
    from jaxrec.inference import history_share
    from jaxrec.inference.prefix_errors import read_reference

    if args.top_k < 1:
        raise DataError(f"--top-k {args.top_k}: must be at least 1")
    if not os.path.isfile(args.recs):
        raise DataError(f"{args.recs}: no such file")
    ds = read_dataset(args.dataset)
    lists = read_reference(args.recs, ds, args.split)
    report = history_share.summarise(
        lists, history_share.histories(ds, args.split), ds.targets(args.split), args.top_k
    )
    report.update(recs=args.recs, split=args.split)
    print(history_share.format_report(report, args.split))
    if args.json:
        print(json.dumps(report))
    return 0


def run_seeds(args) -> int:
    from jaxrec.recipes import seed_ensemble, seeds

    for d in args.runs:
        if not os.path.isdir(d):
            raise DataError(f"{d}: no such directory")
    runs = seed_ensemble.expand(args.runs)
    summary = seeds.summarize([seeds.read_run(d) for d in runs])
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    print(seeds.format_table(summary, metrics))
    for r in summary["runs"]:
        extra = f", fusion weight {r['fusion_weight']:g}" if r["fusion_weight"] is not None else ""
        print(f"  seed {r['seed']}: {r['dir']} (step {r['selected_step']} of {r['steps_run']}"
              f"{extra})")  # fmt: skip
    if args.json:
        print(json.dumps(summary))
    return 0


def run_ensemble(args) -> int:
    import numpy as np

    from jaxrec import model_dir as md
    from jaxrec.data.canonical import read_dataset
    from jaxrec.recipes import ensemble, seed_ensemble

    runs = seed_ensemble.expand(args.runs)  # a `reproduce --seeds` OUT: its members
    if len(runs) < 2:
        raise DataError("an ensemble needs at least two RUNs")
    for d in runs:
        if not md.is_sid_model_dir(d):
            raise DataError(f"{d}: not a semantic-id MODEL_DIR")
    ds = read_dataset(args.dataset)
    n_val = args.validation_users
    if n_val is not None and not 0 < n_val <= ds.num_users:
        raise DataError(f"--validation-users {n_val}: must be in 1..{ds.num_users}")
    users = None if n_val is None else np.arange(n_val)
    sids = seed_ensemble.load_models(runs, ds, args.dataset)
    batch = args.batch_size or sids[0].batch_size
    result = ensemble.evaluate(sids, ds, args.num_beams, batch, users)  # None: each its own
    result.update(runs=runs, steps=[s.step for s in sids],
                  fusion_weights=[s.fusion_weight for s in sids])  # fmt: skip
    print(f"chosen on {result['validation_users']} validation users: {result['variant']} "
          f"({result['candidates']} candidates at most per user)")  # fmt: skip
    print(ensemble.format_table(result, runs))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    if args.json:
        print(json.dumps(result))
    return 0


def run(args) -> int:
    from jaxrec import model_dir as md
    from jaxrec.data.canonical import read_dataset
    from jaxrec.indexing.binding import verify_index
    from jaxrec.inference import prefix_errors

    if args.top_k < 1:
        raise DataError(f"--top-k {args.top_k}: must be at least 1")
    if not os.path.isfile(args.reference):
        raise DataError(f"{args.reference}: no such file")
    if not md.is_sid_model_dir(args.model_dir):
        raise DataError(f"{args.model_dir}: not a semantic-id MODEL_DIR (prefix errors need "
                        "semantic ids)")  # fmt: skip
    ds = read_dataset(args.dataset)
    reference = prefix_errors.read_reference(args.reference, ds, args.split)
    sid = md.load_sid_model(args.model_dir, args.checkpoint_step)
    verify_index(sid.index_path, ds, args.dataset)
    beams = max(args.num_beams or sid.num_beams, args.top_k)
    batch = args.batch_size or sid.batch_size
    report, rows = prefix_errors.analyse(sid.rec, sid.params, ds, args.split, reference,
                                         args.top_k, beams, batch)  # fmt: skip
    report.update(model_dir=args.model_dir, step=sid.step, reference=args.reference)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
    k = args.top_k
    r = report
    print(f"{args.split}: {r['users']} users; in the top {k}: reference {r['reference_hits']}, "
          f"model {r['model_hits']}, both {r['both_hit']}")  # fmt: skip
    print(f"reference only: {report['reference_only']} targets, where the model lost them:")
    for cause, n in report["reference_only_by_cause"].items():
        share = report["reference_only_share_by_cause"][cause]
        print(f"  {cause.replace('_', ' '):<18s} {n:6d}  ({share:.1%})")
    if args.json:
        print(json.dumps(report))
    return 0

"""`jaxrec eval`: evaluate a trained MODEL_DIR on a prepared dataset's validation/test split.

    jaxrec eval --model-dir /tmp/run --dataset /data/beauty --split test [--task retrieval]
        [--checkpoint-step N] [--model-config FILE] [--index FILE] [--num-beams 20]
        [--templates 0,1] [--json] [--mesh auto|DATAxMODEL]

(Underscore spellings such as `--model_dir` are accepted as aliases, as in every command.)

Prints a summary (with `--json`, the last stdout line is one JSON object: `recall@K`/`ndcg@K`
for retrieval, `hr@K`/`ndcg@K` for ranking, `rmse`/`mae`/`unparsable_ratings` for rating, plus
`invalid_rate` and `num_users`) and writes per-user rows (JSONL: user, target, top items, rank
of the target) to `--out` (default `MODEL_DIR/eval_{task}_{split}_step{N}.jsonl`). With several
templates the headline figures are the mean over templates; each template's figures are under
`templates`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "eval", help="evaluate a trained model (full-ranking retrieval, ranking, rating)"
    )
    p.add_argument(
        "--model-dir", required=True,
        help="MODEL_DIR written by jaxrec.train or by python -m t5x.train (config.gin + "
        "checkpoint_N/)",
    )  # fmt: skip
    p.add_argument(
        "--model-config", default=None,
        help="model_config.json-style file of T5Config fields; overrides the MODEL_DIR's",
    )  # fmt: skip
    p.add_argument("--checkpoint-step", type=int, default=None, help="default: latest")
    p.add_argument("--dataset", required=True, help="prepared dataset directory")
    p.add_argument("--split", choices=("validation", "test"), default="test")
    p.add_argument("--task", choices=("retrieval", "ranking", "rating"), default="retrieval")
    p.add_argument("--index", default=None, help="item index .index.json (item_repr sid)")
    p.add_argument("--item-repr", default=None, help="default: from the trained task's name")
    p.add_argument(
        "--num-beams",
        type=int,
        default=None,
        help="default: the model's (semantic-id MODEL_DIRs), else 20",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="default: the model's (semantic-id MODEL_DIRs), else 16",
    )
    p.add_argument("--templates", default="0", help="comma-separated eval template indices")
    p.add_argument("--input-length", type=int, default=None, help="default: the trained one")
    p.add_argument("--unconstrained", action="store_true", help="free beam search (+invalid)")
    p.add_argument("--max-users", type=int, default=None, help="evaluate the first N users")
    p.add_argument(
        "--mesh", default=None,
        help="shard over this host's devices: 'auto' (all on data) or DATAxMODEL, e.g. 4x2",
    )  # fmt: skip
    p.add_argument("--out", default=None, help="per-user JSONL path")
    p.add_argument("--json", action="store_true", help="last stdout line is a JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from jaxrec.inference import evaluate

    if args.mesh is not None:
        import jax

        from jaxrec.partitioning import parse_mesh_shape

        try:
            parse_mesh_shape(args.mesh, jax.local_device_count())
        except ValueError as e:
            print(f"jaxrec eval: error: --mesh: {e}", file=sys.stderr)
            return 2

    result, rows = evaluate.evaluate_model_dir(
        args.model_dir, args.dataset, split=args.split, task=args.task,
        checkpoint_step=args.checkpoint_step, index_path=args.index, item_repr=args.item_repr,
        num_beams=args.num_beams, batch_size=args.batch_size or 16,
        templates=tuple(int(t) for t in args.templates.split(",")),
        input_length=args.input_length, constrained=not args.unconstrained,
        max_users=args.max_users, mesh_shape=args.mesh, model_config_path=args.model_config,
    )  # fmt: skip
    from jaxrec import model_dir as md

    at = "ensemble" if result.get("members") else f"step{result['step']}"  # --seeds OUT
    out = args.out or md.eval_rows_path(args.model_dir, args.task, args.split, at)
    md.write_rows(out, rows)  # MODEL_DIR may be on GCS
    summary = {k: v for k, v in result.items() if k != "templates"}
    at = (f"ensemble of {len(result['members'])} runs, {result['variant']}"
          if result.get("members") else f"step {result['step']}")  # fmt: skip
    print(f"{args.task} on {args.split} ({summary['num_users']} users, {at}):")
    for k, v in summary.items():
        if isinstance(v, float):
            print(f"  {k:>20s}  {v:.4f}")
    print(f"per-user results: {out}")
    if args.json:
        print(json.dumps(_finite(result), allow_nan=False))
    return 0


def _finite(value):
    """NaN/inf (e.g. RMSE when no output parsed) -> null, so the line is strict JSON."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value

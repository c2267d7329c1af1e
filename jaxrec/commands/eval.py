"""`jaxrec eval`: evaluate a trained MODEL_DIR on a prepared dataset's validation/test split.

    jaxrec eval --model_dir /tmp/run --dataset /data/beauty --split test [--task retrieval]
        [--checkpoint_step N] [--index FILE] [--num_beams 20] [--templates 0,1] [--json]

Prints a summary (with `--json`, the last stdout line is one JSON object: `recall@K`/`ndcg@K`
for retrieval, `hr@K`/`ndcg@K` for ranking, `rmse`/`mae`/`unparsable_ratings` for rating, plus
`invalid_rate` and `num_users`) and writes per-user rows (JSONL: user, target, top items, rank
of the target) to `--out` (default `MODEL_DIR/eval_{task}_{split}_step{N}.jsonl`). With several
templates the headline figures are the mean over templates; each template's figures are under
`templates`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os

from jaxrec.data.dataset import DataError

log = logging.getLogger(__name__)

# Longest first, so "id_title" is not read as "id".
ITEM_REPRS = ("id_title", "title", "sid", "id")


def infer_item_repr(task_name: str) -> str | None:
    """The item representation in a registered task name `{dataset}_{repr}_{task}`."""
    padded = f"_{task_name}_"
    for r in ITEM_REPRS:
        if f"_{r}_" in padded:
            return r
    return None


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "eval", help="evaluate a trained model (full-ranking retrieval, ranking, rating)"
    )
    p.add_argument("--model_dir", required=True, help="MODEL_DIR written by jaxrec.train")
    p.add_argument("--checkpoint_step", type=int, default=None, help="default: latest")
    p.add_argument("--dataset", required=True, help="prepared dataset directory")
    p.add_argument("--split", choices=("validation", "test"), default="test")
    p.add_argument("--task", choices=("retrieval", "ranking", "rating"), default="retrieval")
    p.add_argument("--index", default=None, help="item index .index.json (item_repr sid)")
    p.add_argument("--item_repr", default=None, help="default: from the trained task's name")
    p.add_argument("--num_beams", type=int, default=20)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--templates", default="0", help="comma-separated eval template indices")
    p.add_argument("--input_length", type=int, default=None, help="default: the trained one")
    p.add_argument("--unconstrained", action="store_true", help="free beam search (+invalid)")
    p.add_argument("--max_users", type=int, default=None, help="evaluate the first N users")
    p.add_argument("--out", default=None, help="per-user JSONL path")
    p.add_argument("--json", action="store_true", help="last stdout line is a JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from jaxrec import eval_loop, evaluation
    from jaxrec.tasks import examples as ex_lib
    from jaxrec.tasks import registry

    loaded = eval_loop.load_model_dir(args.model_dir, args.checkpoint_step)
    info = loaded.vocab_info
    # vocabulary.json may record item_repr / index_path / spm_path; else infer or use defaults.
    item_repr = (
        args.item_repr
        or info.get("item_repr")
        or infer_item_repr(info.get("mixture_or_task_name", ""))
        or "sid"
    )
    spm = info.get("sentencepiece_model_file")
    spm = os.path.join(args.model_dir, spm) if spm else info.get("spm_path")
    names = registry.register_dataset_tasks(
        args.dataset,
        index_path=args.index or info.get("index_path"),
        item_repr=item_repr,
        spm_path=spm,
        tasks=(args.task,),
    )
    if not names:
        raise DataError(f"{args.dataset}: task {args.task!r} is not available for this dataset")
    source = registry.source_of(names[0])
    vocab = source.vocabulary
    model_vocab = loaded.model.config.vocab_size
    if info.get("vocab_size") not in (None, vocab.vocab_size) or vocab.vocab_size > model_vocab:
        raise DataError(
            f"{args.model_dir}: the model was trained with vocab_size {info.get('vocab_size')} "
            f"(embedding {model_vocab}) but {args.dataset} with item_repr {item_repr!r} gives "
            f"{vocab.vocab_size}; pass the training --index/--item_repr"
        )
    lengths = info.get("task_feature_lengths") or {}
    input_length = args.input_length or lengths.get("inputs") or 512
    templates = [int(t) for t in args.templates.split(",")]

    per_template, rows = {}, []
    for t in templates:
        opts = dataclasses.replace(source.options, eval_template=t)
        exs = ex_lib.eval_examples(args.task, source.dataset, source.renderer, args.split, opts)
        exs = exs[: args.max_users] if args.max_users else exs
        metrics, t_rows = eval_loop.evaluate(
            loaded, exs, args.task, vocab.encode, vocab.decode, source.renderer.strings,
            vocab.eos_id, input_length, args.num_beams, args.batch_size, not args.unconstrained,
        )  # fmt: skip
        per_template[str(t)] = metrics
        rows += [dict(r, template=t) for r in t_rows]
    result = evaluation.mean_over_templates(per_template) if len(templates) > 1 else metrics
    result = dict(result, num_users=per_template[str(templates[0])]["num_users"])
    result.update(task=args.task, split=args.split, step=loaded.step, item_repr=item_repr)
    if len(templates) > 1:
        result["templates"] = per_template

    out = args.out or os.path.join(
        args.model_dir, f"eval_{args.task}_{args.split}_step{loaded.step}.jsonl"
    )
    with open(out, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    summary = {k: v for k, v in result.items() if k != "templates"}
    print(f"{args.task} on {args.split} ({summary['num_users']} users, step {loaded.step}):")
    for k, v in summary.items():
        if isinstance(v, float):
            print(f"  {k:>20s}  {v:.4f}")
    print(f"per-user results: {out}")
    if args.json:
        print(json.dumps(result))
    return 0

"""`jaxrec tasks list|show`: the seqio Tasks and Mixtures registered for prepared datasets."""

from __future__ import annotations

import argparse
import json
import logging

log = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("tasks", help="list or show seqio tasks and mixtures")
    sub = parser.add_subparsers(dest="tasks_command", metavar="SUBCOMMAND", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--dataset",
            action="append",
            metavar="DIR",
            help="prepared dataset dir to register (repeatable; default: the `tasks` module, "
            "i.e. $JAXREC_DATA_DIR)",
        )
        p.add_argument(
            "--item-repr",
            action="append",
            choices=("sid", "id", "id_title", "title"),
            help="item representation(s) (default: every feasible one)",
        )
        p.add_argument("--index", help="item index for 'sid' (default DIR/{name}.index.json)")
        p.add_argument("--spm", help="SentencePiece model (default: train one on the data)")
        p.add_argument("--json", action="store_true", help="print one JSON object last")

    lst = sub.add_parser("list", help="registered task and mixture names")
    common(lst)
    lst.set_defaults(func=run_list)

    show = sub.add_parser("show", help="print decoded examples of a task or mixture")
    show.add_argument("name", metavar="NAME")
    show.add_argument("--n", type=int, default=3, help="examples to print")
    show.add_argument("--split", default="train", choices=("train", "validation", "test"))
    show.add_argument("--seed", type=int, default=0, help="shuffle seed (train split)")
    common(show)
    show.set_defaults(func=run_show)


def _register(args) -> list[str]:
    from jaxrec.tasks import registry

    if not args.dataset:
        import tasks  # noqa: F401  (registers $JAXREC_DATA_DIR)

        return registry.registered_names()
    names = []
    reprs = tuple(args.item_repr) if args.item_repr else None
    for data_dir in args.dataset:
        names += registry.register_reprs(
            data_dir, reprs=reprs, index_path=args.index, spm_path=args.spm
        )
    return names


def run_list(args) -> int:
    import seqio

    from jaxrec.tasks import registry

    names = _register(args)
    tasks, mixtures = [], {}
    for n in names:
        if n in seqio.MixtureRegistry.names():
            mix = seqio.get_mixture_or_task(n)
            mixtures[n] = sorted(t.name for t in mix.tasks)
        else:
            tasks.append(n)
    skipped = {p: r for p, r in registry.SKIPPED.items() if r}
    print(f"{len(tasks)} tasks, {len(mixtures)} mixtures")
    for t in tasks:
        print(f"  task     {t}")
    for m, members in mixtures.items():
        print(f"  mixture  {m} = {' + '.join(members)}")
    for prefix, reasons in skipped.items():
        for task, reason in reasons.items():
            print(f"  skipped  {prefix}_{task}: {reason}")
    if args.json:
        print(json.dumps({"tasks": tasks, "mixtures": mixtures, "skipped": skipped}))
    return 0


def run_show(args) -> int:
    import seqio

    from jaxrec.data.dataset import DataError

    _register(args)
    try:
        task = seqio.get_mixture_or_task(args.name)
    except ValueError:
        raise DataError(
            f"no task or mixture named {args.name!r} (see `jaxrec tasks list`)"
        ) from None
    ds = task.get_dataset(
        sequence_length=None, split=args.split, shuffle=args.split == "train", seed=args.seed
    )
    vocab = task.output_features["targets"].vocabulary
    shown = []
    for ex in ds.take(args.n).as_numpy_iterator():
        rec = {
            "inputs": vocab.decode(ex["inputs"].tolist()),
            "targets": vocab.decode(ex["targets"].tolist()),
            "input_tokens": int(len(ex["inputs"])),
            "target_tokens": int(len(ex["targets"])),
        }
        shown.append(rec)
        print(f"inputs  ({rec['input_tokens']} tokens): {rec['inputs']}")
        print(f"targets ({rec['target_tokens']} tokens): {rec['targets']}")
        print()
    print(f"{args.name} [{args.split}]: {len(shown)} examples; vocabulary {vocab}")
    if args.json:
        print(json.dumps({"name": args.name, "split": args.split, "examples": shown}))
    return 0

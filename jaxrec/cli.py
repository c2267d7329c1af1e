"""`jaxrec` command line: thin argument parsing over library functions.

Each command group lives in `jaxrec/commands/<group>.py` and exposes
`add_parser(subparsers)`, which registers its sub-commands with `func(args) -> int`.
Commands print a human summary; with `--json` the last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from jaxrec.data.dataset import DataError

COMMAND_GROUPS = ("data", "index", "tasks", "eval", "baseline", "demo", "reproduce")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxrec",
        description="LLM-based recommendation in JAX: data, semantic ids, tasks, "
        "training (python -m jaxrec.train), constrained retrieval and evaluation.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in COMMAND_GROUPS:
        try:
            module = importlib.import_module(f"jaxrec.commands.{group}")
        except ModuleNotFoundError as e:
            if e.name == f"jaxrec.commands.{group}":
                continue  # command group not present in this build
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    # t5x's `--gin.KEY=VALUE` shorthand (as for python -m jaxrec.train) -> `--gin=KEY=VALUE`.
    argv = [f"--gin={a[len('--gin.') :]}" if a.startswith("--gin.") else a for a in argv]
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except DataError as e:
        print(f"jaxrec: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

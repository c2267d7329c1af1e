"""`jaxrec` command line: thin argument parsing over library functions.

Each command group lives in `jaxrec/cli/<group>.py` and exposes
`add_parser(subparsers)`, which registers its sub-commands with `func(args) -> int`.
Commands print a human summary; with `--json` the last line of stdout is one JSON object.
Bad input is one line on stderr (`jaxrec: error: FILE:LINE: problem`) and exit code 2; `--debug`
shows the traceback. Native TensorFlow/XLA logging is quiet unless `--verbose`.
Options are spelled with dashes (`--max-users`); the underscore spelling (`--max_users`) is
accepted everywhere as an alias.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from jaxrec.cli import quiet, threads
from jaxrec.data.dataset import DataError

COMMAND_GROUPS = (
    "data",
    "index",
    "tasks",
    "eval",
    "recommend",
    "analyze",
    "baseline",
    "demo",
    "reproduce",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxrec",
        description="LLM-based recommendation in JAX: data, semantic ids, tasks, "
        "training (python -m jaxrec.train), constrained retrieval and evaluation.",
        epilog="Options are spelled with dashes (--max-users); the underscore spelling "
        "(--max_users) is accepted as an alias.",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="debug logging, native TF/XLA logs included"
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser.add_argument(
        "--cpu-threads", type=int, default=None, metavar="N",
        help="CPU compute threads of XLA and BLAS (default $JAXREC_CPU_THREADS, else the "
        "command's own default, 1 for most: the same numbers whatever the core count; "
        "0 = all CPUs, faster, results depend on the core count)",
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in COMMAND_GROUPS:
        try:
            module = importlib.import_module(f"jaxrec.cli.{group}")
        except ModuleNotFoundError as e:
            if e.name == f"jaxrec.cli.{group}":
                continue  # command group not present in this build
            raise
        module.add_parser(sub)
    return parser


def canonical_spelling(argv: list[str]) -> list[str]:
    """`--max_users` -> `--max-users`: options are spelled with dashes, underscores are an alias.

    Only option names change (the part before `=`); values and everything after `--` are kept.
    """
    out = []
    for k, arg in enumerate(argv):
        if arg == "--":
            return out + argv[k:]
        if arg.startswith("--") and "_" in arg.partition("=")[0]:
            name, eq, value = arg.partition("=")
            arg = name.replace("_", "-") + eq + value
        out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # t5x's `--gin.KEY=VALUE` shorthand (as for python -m jaxrec.train) -> `--gin=KEY=VALUE`,
    # before the spelling rule so that gin names keep their underscores.
    argv = [f"--gin={a[len('--gin.') :]}" if a.startswith("--gin.") else a for a in argv]
    argv = canonical_spelling(argv)
    quiet.set_verbosity("-v" in argv or "--verbose" in argv)  # before TF/JAX are imported
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet.configure_logging(args.verbose)
    try:
        # A command may set its own default (`cpu_threads_default`, e.g. the demo's 2).
        threads.fix_cpu_threads(
            args.cpu_threads, getattr(args, "cpu_threads_default", threads.DEFAULT)
        )
        return int(args.func(args) or 0)
    except (DataError, FileNotFoundError, NotADirectoryError, IsADirectoryError) as e:
        if args.debug:
            raise
        message = (str(e).splitlines() or [type(e).__name__])[0]
        print(f"jaxrec: error: {message}", file=sys.stderr)
        return 2
    except FloatingPointError as e:  # a model that diverged (NaN/Inf loss or scores)
        if args.debug:
            raise
        print(f"jaxrec: error: {(str(e).splitlines() or ['diverged'])[0]}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

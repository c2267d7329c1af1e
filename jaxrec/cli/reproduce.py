"""`jaxrec reproduce tiger --dataset DIR [--index FILE] --out OUT [--minutes M] [--json]`
(`--seeds 0,1`: one run per seed, then their ensemble, `jaxrec.recipes.seed_ensemble`).

A thin face over a gin recipe (default `gin/experiments/tiger_prefix_shared.gin`) that binds
`RecipeConfig` and `TrainSettings`; `--gin_file` picks another recipe and `--gin.KEY=VALUE`
overrides single bindings, as for `python -m jaxrec.train`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os

DEFAULT_RECIPE = "experiments/tiger_prefix_shared.gin"
_REGISTERED: list[bool] = []
_REPO_GIN_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "gin")


def recipe_config(gin_files: list[str], bindings: list[str]):
    """The `RecipeConfig` that the gin files and bindings describe (gin stays at this entry)."""
    import gin
    from jaxrec.cli import gin_checks, quiet
    from jaxrec.data.dataset import DataError
    from jaxrec.recipes import reproduce, sid_retrieval
    from jaxrec.train import rewrite_gin_args

    gin.clear_config()
    if not _REGISTERED:
        gin.external_configurable(reproduce.RecipeConfig, name="RecipeConfig")
        gin.external_configurable(sid_retrieval.TrainSettings, name="TrainSettings")
        _REGISTERED.append(True)
    gin.add_config_file_search_path(_REPO_GIN_DIR)
    files = []
    for f in gin_files or [DEFAULT_RECIPE]:
        path = f if os.path.exists(f) else os.path.join(_REPO_GIN_DIR, f)
        if not os.path.exists(path):
            raise DataError(f"gin file {f!r} not found (also looked in {_REPO_GIN_DIR})")
        files.append(path)
    binds = [a.split("=", 1)[1] for a in rewrite_gin_args([f"--gin.{b}" for b in bindings])]
    where = f"recipe {files}"
    try:
        with quiet.gin_include_probes_dropped():
            gin.parse_config_files_and_bindings(files, binds)
        # A wrong type names its field before __post_init__ can fail on it (or convert it).
        gin_checks.check_bound_types(sid_retrieval.TrainSettings, where, "TrainSettings")
        gin_checks.check_bound_types(reproduce.RecipeConfig, where, "RecipeConfig")
        cfg = gin.get_configurable("RecipeConfig")()
    except DataError:
        raise
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{where}: {e}") from None
    gin_checks.check_field_types(cfg, where)
    return cfg


def _finite(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def with_plan(cfg, minutes=None, steps=None, epochs=None):
    """`cfg` with the command line's plan, if it names one: a wall-clock budget (`minutes`)
    or a fixed amount of work (`steps` or `epochs`) replaces whichever plan the gin files set,
    so `--minutes 120` on a recipe that fixes its epochs runs on a budget again."""
    if minutes is not None:
        return dataclasses.replace(cfg, minutes=minutes, steps=0, epochs=0.0)
    if steps is not None:
        return dataclasses.replace(cfg, steps=steps, epochs=0.0)
    if epochs is not None:
        return dataclasses.replace(cfg, epochs=epochs, steps=0)
    return cfg


def _check_out(args) -> None:
    """OUT must be new or empty, unless --resume (continue the run there) or --overwrite
    (delete it first); both refused together, and OUT may not hold the dataset."""
    import shutil

    from jaxrec import model_dir as md
    from jaxrec.data.canonical import check_out_dir
    from jaxrec.data.dataset import DataError
    from jaxrec.recipes import seed_ensemble

    if args.resume and args.overwrite:
        raise DataError("--resume and --overwrite exclude each other")
    out, data = os.path.abspath(args.out), os.path.abspath(args.dataset)
    if out == data or data.startswith(out + os.sep):
        raise DataError(f"--out {args.out}: holds the dataset {args.dataset}; choose another "
                        "directory")  # fmt: skip
    ours = md.read_record(out) is not None or seed_ensemble.read_marker(out) is not None
    if args.resume:
        if os.path.isdir(out) and os.listdir(out) and not ours:
            raise DataError(f"--out {args.out}: not a jaxrec reproduce run (no "
                            f"{md.RECORD} or {seed_ensemble.MARKER}); nothing to "
                            "resume")  # fmt: skip
        seeds = getattr(args, "seeds", None)
        if seeds and md.read_record(out) is not None:
            raise DataError(f"--out {args.out}: holds a single run, not a --seeds ensemble")
        if not seeds and seed_ensemble.read_marker(out) is not None:
            raise DataError(f"--out {args.out}: holds a --seeds ensemble; resume it with "
                            "its --seeds")  # fmt: skip
        return
    if args.overwrite and os.path.isdir(out) and os.listdir(out):
        if not ours:
            raise DataError(f"--out {args.out}: not a jaxrec run (no {md.RECORD}); refusing "
                            "to delete it with --overwrite")  # fmt: skip
        shutil.rmtree(out)
    if os.path.isdir(out) and os.listdir(out):
        raise DataError(f"--out {args.out}: directory is not empty; pass --resume to continue "
                        "the run there or --overwrite to start anew")  # fmt: skip
    check_out_dir(out, overwrite=False)


def run(args) -> int:
    from jaxrec.data.dataset import DataError
    from jaxrec.recipes.reproduce import run_tiger

    if args.minutes is not None and not (math.isfinite(args.minutes) and args.minutes > 0):
        raise DataError(f"--minutes {args.minutes:g}: the budget must be a positive number")
    for name in ("steps", "epochs"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise DataError(f"--{name} {value:g}: must be positive")
    if args.seeds is not None and args.seed is not None:
        raise DataError("--seed and --seeds exclude each other (--seeds trains one run per seed)")
    seeds = None
    if args.seeds is not None:
        from jaxrec.recipes import seed_ensemble

        seeds = seed_ensemble.parse_seeds(args.seeds)
    elif args.validation_users is not None:
        raise DataError("--validation-users chooses an ensemble's fusion: it needs --seeds")
    cfg = recipe_config(args.gin_file, args.gin)
    cfg = with_plan(cfg, args.minutes, args.steps, args.epochs)
    if args.seed is not None:  # index, init, dropout and data order
        cfg = dataclasses.replace(cfg, seed=args.seed,
                                  train=dataclasses.replace(cfg.train, seed=args.seed))  # fmt: skip
    _check_out(args)
    if seeds is not None:
        return _run_seeds(args, cfg, seeds)
    result = run_tiger(args.dataset, args.out, cfg, index_path=args.index, resume=args.resume)
    if result.get("status") == "preempted":
        print(f"preempted at step {result['step']}: checkpoint saved in {args.out}; run the "
              "same command with --resume to continue")  # fmt: skip
        return 0
    t, v, s = result["test"], result["validation"], result["seconds"]
    print(f"{cfg.name} on {args.dataset}: test ({t['num_users']} users, all items ranked) "
          f"recall@10 {t['recall@10']:.4f} ndcg@10 {t['ndcg@10']:.4f}; validation "
          f"({v['num_users']} users) recall@10 {v['recall@10']:.4f} at step "
          f"{v['selected_step']}")  # fmt: skip
    print("seconds: " + ", ".join(f"{k} {x:.0f}" for k, x in s.items()))
    print(f"wrote {os.path.join(args.out, 'result.json')}, learning_curve.png and the test's "
          f"per-user rows {os.path.join(args.out, result['test_rows'])}; the model: "
          f"jaxrec eval --model-dir {args.out} --dataset {args.dataset}")  # fmt: skip
    if args.json:
        keys = ("recipe", "validation", "test", "test_rows", "seconds", "plan", "popularity_test")
        print(json.dumps(_finite({k: result[k] for k in keys})))
    return 0


def _run_seeds(args, cfg, seeds) -> int:
    from jaxrec.recipes import ensemble, seed_ensemble

    result = seed_ensemble.run(args.dataset, args.out, cfg, seeds, index_path=args.index,
                               resume=args.resume,
                               validation_users=args.validation_users)  # fmt: skip
    if result.get("status") == "preempted":
        print(f"preempted at step {result['step']} of {result['member']}: checkpoint saved; "
              "run the same command with --resume to continue")  # fmt: skip
        return 0
    print(f"{cfg.name} on {args.dataset}, seeds {','.join(map(str, seeds))}: fusion chosen on "
          f"{result['validation_users']} validation users: {result['variant']}")  # fmt: skip
    print(ensemble.format_table(result, [f"seed {s}" for s in seeds]))
    s = result["seconds"]
    print(f"seconds: members {', '.join(f'{x:.0f}' for x in s['members'])}, ensemble "
          f"{s['ensemble']:.0f}, total {s['total']:.0f}")  # fmt: skip
    print(f"wrote {os.path.join(args.out, seed_ensemble.RESULT)}; the members: "
          f"{os.path.join(args.out, 'seed_<s>')} (each a MODEL_DIR)")  # fmt: skip
    if args.json:
        print(json.dumps(_finite(result)))
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "reproduce", help="paper recipes end to end, on a wall-clock budget or a fixed plan"
    )
    sub = p.add_subparsers(dest="recipe", metavar="RECIPE", required=True)
    t = sub.add_parser(
        "tiger",
        help="semantic ids -> generative retrieval from scratch -> validation selection -> "
        "test (Recall/NDCG@5,10,20 over all items)",
    )
    t.add_argument("--dataset", required=True, help="prepared dataset directory")
    t.add_argument("--index", help="semantic-id index (.index.json); default: build an RQ-VAE "
                   "one (one compute thread, whatever --cpu-threads gives training)")  # fmt: skip
    t.add_argument(
        "--out",
        required=True,
        help="output MODEL_DIR (new or empty, unless --resume / --overwrite)",
    )
    plan = t.add_mutually_exclusive_group()  # each replaces the recipe's own plan
    plan.add_argument("--minutes", type=float, help="a wall-clock budget instead of the "
                      "recipe's plan (the generative recipe: 120 minutes)")  # fmt: skip
    plan.add_argument("--steps", type=int, help="a fixed number of training steps instead of "
                      "the recipe's plan (the same work on any machine)")  # fmt: skip
    plan.add_argument("--epochs", type=float, help="a fixed number of epochs instead of the "
                      "recipe's plan (the hybrid recipe: 63)")  # fmt: skip
    t.add_argument("--seed", type=int, help="seed of the index, init, dropout and data order")
    t.add_argument("--seeds", metavar="S,S,...", help="train the recipe once per seed (OUT/"
                   "seed_<s>, each with the recipe's plan), then rank with their ensemble "
                   "(OUT/ensemble.json; the fusion chosen on validation)")  # fmt: skip
    t.add_argument("--validation-users", type=int, default=None, help="with --seeds: choose "
                   "the fusion on the first N validation users (default: all)")  # fmt: skip
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last checkpoint (or start it)",
    )
    t.add_argument("--overwrite", action="store_true",
                   help="delete an earlier run in --out first")  # fmt: skip
    t.add_argument("--gin-file", action="append", default=[], dest="gin_file",
                   help=f"recipe gin file(s) (default {DEFAULT_RECIPE})")  # fmt: skip
    t.add_argument("--gin", action="append", default=[], metavar="KEY=VALUE",
                   help="a binding, e.g. --gin TrainSettings.learning_rate=1e-3")  # fmt: skip
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=run)

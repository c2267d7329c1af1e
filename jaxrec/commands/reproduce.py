"""`jaxrec reproduce tiger --dataset DIR [--index FILE] --out OUT [--minutes M] [--json]`.

A thin face over a gin recipe (default `gin/experiments/tiger_prefix_shared.gin`) that binds
`RecipeConfig` and `TrainSettings`; `--gin_file` picks another recipe and `--gin.KEY=VALUE`
overrides single bindings, as for `python -m jaxrec.train`.
"""

from __future__ import annotations

import json
import math
import os

DEFAULT_RECIPE = "experiments/tiger_prefix_shared.gin"
_REGISTERED: list[bool] = []
_REPO_GIN_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "gin")


def recipe_config(gin_files: list[str], bindings: list[str]):
    """The `RecipeConfig` that the gin files and bindings describe (gin stays at this entry)."""
    import gin
    from jaxrec import quiet, reproduce, sid_retrieval
    from jaxrec.data.dataset import DataError
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
    try:
        with quiet.gin_include_probes_dropped():
            gin.parse_config_files_and_bindings(files, binds)
        return gin.get_configurable("RecipeConfig")()
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"recipe {files}: {e}") from None


def _finite(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def run(args) -> int:
    import dataclasses

    from jaxrec.reproduce import run_tiger

    cfg = recipe_config(args.gin_file, args.gin)
    if args.minutes is not None:
        cfg = dataclasses.replace(cfg, minutes=args.minutes)
    result = run_tiger(args.dataset, args.out, cfg, index_path=args.index)
    t, v, s = result["test"], result["validation"], result["seconds"]
    print(f"{cfg.name} on {args.dataset}: test ({t['num_users']} users, all items ranked) "
          f"recall@10 {t['recall@10']:.4f} ndcg@10 {t['ndcg@10']:.4f}; validation "
          f"({v['num_users']} users) recall@10 {v['recall@10']:.4f} at step "
          f"{v['selected_step']}")  # fmt: skip
    print("seconds: " + ", ".join(f"{k} {x:.0f}" for k, x in s.items()))
    print(f"wrote {os.path.join(args.out, 'result.json')} and learning_curve.png")
    if args.json:
        keys = ("recipe", "validation", "test", "seconds", "plan", "popularity_test")
        print(json.dumps(_finite({k: result[k] for k in keys})))
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "reproduce", help="paper recipes end to end within a wall-clock budget"
    )
    sub = p.add_subparsers(dest="recipe", metavar="RECIPE", required=True)
    t = sub.add_parser(
        "tiger",
        help="semantic ids -> generative retrieval from scratch -> validation selection -> "
        "test (Recall/NDCG@5,10,20 over all items)",
    )
    t.add_argument("--dataset", required=True, help="prepared dataset directory")
    t.add_argument("--index", help="semantic-id index (.index.json); default: build an RQ-VAE one")
    t.add_argument("--out", required=True, help="output directory")
    t.add_argument("--minutes", type=float, help="wall-clock budget (default: the recipe's)")
    t.add_argument("--gin-file", action="append", default=[], dest="gin_file",
                   help=f"recipe gin file(s) (default {DEFAULT_RECIPE})")  # fmt: skip
    t.add_argument("--gin", action="append", default=[], metavar="KEY=VALUE",
                   help="a binding, e.g. --gin TrainSettings.learning_rate=1e-3")  # fmt: skip
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=run)

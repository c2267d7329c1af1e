"""The spread of a recipe over seeds: mean ± std of test metrics across runs that differ only
in their seed.

A run is either a `jaxrec reproduce` OUT (a semantic-id MODEL_DIR with `result.json`) or a
`jaxrec demo` OUT (`metrics.json` beside `model/`, which holds the same `result.json`):

    runs = [read_run(d) for d in dirs]      # each: seed, config, systems {name: metrics}
    summary = summarize(runs)               # raises DataError if they differ beyond the seed

Systems are the run's rankings on the test split: `jaxrec` (the headline: generative, or the
hybrid when the recipe has one), `jaxrec_generative` and `jaxrec_dense` (a hybrid's parts),
`popularity`, and the demo's `sasrec` and `oracle`. When a run has `sasrec` the summary also
gives jaxrec / SASRec per seed (`ratios`). The std is the sample std (n - 1), the usual one for
a handful of seeds.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from jaxrec.data.dataset import DataError
from jaxrec.data.formats import read_json_object
from jaxrec.indexing.binding import record_path
from jaxrec.recipes.report import SYSTEM_ORDER

# Recipe settings allowed to differ between runs of one spread.
_FREE_KEYS = ("seed", "references", "mesh_shape")
_METRIC_PREFIXES = ("recall@", "ndcg@")


def _metrics(d: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in d.items() if k.startswith(_METRIC_PREFIXES)}


def read_run(run_dir: str) -> dict[str, Any]:
    """The seed, comparable config and per-system test metrics of one finished run."""
    demo_metrics = os.path.join(run_dir, "metrics.json")
    model_dir = run_dir
    if os.path.isfile(demo_metrics) and os.path.isdir(os.path.join(run_dir, "model")):
        model_dir = os.path.join(run_dir, "model")
    record_file = os.path.join(model_dir, "jaxrec_model.json")
    result_path = os.path.join(model_dir, "result.json")
    if not os.path.isfile(record_file):
        raise DataError(f"{run_dir}: neither a `jaxrec reproduce` OUT nor a `jaxrec demo` OUT "
                        f"(no {record_file})")  # fmt: skip
    if not os.path.isfile(result_path):
        raise DataError(f"{run_dir}: no {result_path}: the run has not finished (resume it "
                        "with the same command)")  # fmt: skip
    record, result = read_json_object(record_file), read_json_object(result_path)
    recipe = record.get("recipe")
    if not isinstance(recipe, dict) or "test" not in result:
        raise DataError(f"{run_dir}: {record_file} has no recipe or {result_path} no test "
                        "metrics: not written by `jaxrec reproduce`")  # fmt: skip
    test = result["test"]
    systems = {"jaxrec": _metrics(test)}
    for part in ("generative", "dense"):
        if isinstance(test.get(part), dict):
            systems[f"jaxrec_{part}"] = _metrics(test[part])
    if isinstance(result.get("popularity_test"), dict):
        systems["popularity"] = _metrics(result["popularity_test"])
    demo = model_dir != run_dir
    if demo:  # the demo's own table (its SASRec and oracle were run beside the model)
        for name, m in read_json_object(demo_metrics).items():
            if isinstance(m, dict):
                systems[name] = _metrics(m)
    config = {k: v for k, v in recipe.items() if k not in _FREE_KEYS}
    if isinstance(config.get("train"), dict):
        config["train"] = {k: v for k, v in config["train"].items() if k != "seed"}
    fingerprint = None
    index = record.get("index")
    if index and not demo:  # the demo generates its data from the seed, so it changes with it
        sidecar = record_path(os.path.join(model_dir, index))
        if os.path.isfile(sidecar):
            fingerprint = read_json_object(sidecar).get("item_map_fingerprint")
    plan = result.get("plan", {})
    return {
        "dir": run_dir,
        "seed": recipe.get("seed"),
        "config": config,
        "dataset": record.get("dataset_name"),
        "item_map_fingerprint": fingerprint,
        "test_users": test.get("num_users"),
        "systems": systems,
        "fusion_weight": test.get("fusion_weight"),
        "selected_step": result.get("validation", {}).get("selected_step"),
        "steps_run": plan.get("steps_run"),
        "seconds": result.get("seconds", {}).get("total"),
        "load_average": result.get("load_average"),
    }


def _first_difference(a: Any, b: Any, path: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            where = f"{path}.{k}" if path else str(k)
            if k not in a or k not in b:
                return where
            diff = _first_difference(a[k], b[k], where)
            if diff:
                return diff
        return None
    return None if a == b else (path or "value")


def _lookup(d: Any, dotted: str) -> Any:
    for k in dotted.split("."):
        if not isinstance(d, dict) or k not in d:
            return "(absent)"
        d = d[k]
    return d


def check_comparable(runs: Sequence[Mapping[str, Any]]) -> None:
    """Raises DataError naming the first run and setting that differ from the first run's."""
    if len(runs) < 2:
        raise DataError(f"a spread needs at least 2 runs, got {len(runs)}")
    ref = runs[0]
    seen: dict[Any, str] = {}
    for run in runs:
        for key in ("dataset", "item_map_fingerprint", "test_users"):
            if run[key] != ref[key]:
                raise DataError(f"{run['dir']}: {key} {run[key]!r} differs from "
                                f"{ref['dir']}'s {ref[key]!r}: not the same data")  # fmt: skip
        diff = _first_difference(ref["config"], run["config"])
        if diff:
            mine, theirs = _lookup(run["config"], diff), _lookup(ref["config"], diff)
            raise DataError(f"{run['dir']}: recipe setting {diff} = {mine!r} differs from "
                            f"{ref['dir']}'s {theirs!r}; only the seed may differ")  # fmt: skip
        if set(run["systems"]) != set(ref["systems"]):
            raise DataError(f"{run['dir']}: systems {sorted(run['systems'])} differ from "
                            f"{ref['dir']}'s {sorted(ref['systems'])}")  # fmt: skip
        if run["seed"] in seen:
            raise DataError(f"{run['dir']}: seed {run['seed']} again (also {seen[run['seed']]}); "
                            "a spread over seeds needs distinct seeds")  # fmt: skip
        seen[run["seed"]] = run["dir"]


def spread(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample std (n - 1), min and max of at least two values."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values),
            "min": min(values), "max": max(values), "values": list(values)}  # fmt: skip


def summarize(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per system and metric, the spread over the runs (which must differ only in seed)."""
    check_comparable(runs)
    runs = sorted(runs, key=lambda r: r["seed"])
    systems: dict[str, dict[str, Any]] = {}
    names = sorted(runs[0]["systems"], key=lambda s: (
        SYSTEM_ORDER.index(s) if s in SYSTEM_ORDER else len(SYSTEM_ORDER), s))  # fmt: skip
    for name in names:
        common = set.intersection(*(set(r["systems"][name]) for r in runs))
        systems[name] = {m: spread([r["systems"][name][m] for r in runs])
                         for m in sorted(common, key=_metric_key)}  # fmt: skip
    out: dict[str, Any] = {
        "dataset": runs[0]["dataset"],
        "seeds": [r["seed"] for r in runs],
        "runs": [{k: r[k] for k in ("dir", "seed", "selected_step", "steps_run", "seconds",
                                    "load_average", "fusion_weight")} for r in runs],
        "systems": systems,
    }  # fmt: skip
    if "sasrec" in systems:
        out["ratios"] = {"jaxrec/sasrec": {
            m: spread([r["systems"]["jaxrec"][m] / r["systems"]["sasrec"][m] for r in runs])
            for m in systems["jaxrec"] if m in systems["sasrec"]}}  # fmt: skip
    return out


def _metric_key(m: str) -> tuple[str, int]:
    name, k = m.split("@")
    return name, int(k)


def format_table(summary: Mapping[str, Any], metrics: Sequence[str]) -> str:
    """A plain-text table: one row per system, `mean ± std` per metric."""
    seeds = ", ".join(str(s) for s in summary["seeds"])
    lines = [f"{summary['dataset']}: test, {len(summary['seeds'])} seeds ({seeds}), "
             "mean ± sample std"]  # fmt: skip
    lines.append(f"{'system':<20s}" + "".join(f"{m:>18s}" for m in metrics))
    rows = dict(summary["systems"])
    rows.update(summary.get("ratios", {}))
    for name, by_metric in rows.items():
        cells = [f"{by_metric[m]['mean']:.4f} ± {by_metric[m]['std']:.4f}" if m in by_metric
                 else "-" for m in metrics]  # fmt: skip
        lines.append(f"{name:<20s}" + "".join(f"{c:>18s}" for c in cells))
    return "\n".join(lines)

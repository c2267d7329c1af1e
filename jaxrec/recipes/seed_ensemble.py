"""`jaxrec reproduce tiger --seeds 0,1`: one recipe trained once per seed, then its members
ranking together (`jaxrec.recipes.ensemble`), in one resumable OUT:

    OUT/jaxrec_ensemble.json   what OUT is: the seeds, the dataset, the recipe's name, status
    OUT/seed_<s>/              each member, a `jaxrec reproduce` MODEL_DIR (its own index,
                               init and data order; `jaxrec eval` / `recommend` read it alone)
    OUT/ensemble.json          the fusion chosen on validation, test beside each member alone

Members are trained one after another with the recipe as given (its budget, steps or epochs
apply to each member); a finished member is not trained again, so the same command with
`--resume` continues a run stopped anywhere, down to the ensemble's evaluation.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

from jaxrec import model_dir as md
from jaxrec.data.canonical import read_dataset
from jaxrec.data.dataset import DataError
from jaxrec.data.formats import read_json_object
from jaxrec.recipes import ensemble

log = logging.getLogger(__name__)

MARKER = "jaxrec_ensemble.json"
RESULT = "ensemble.json"


def member_dir(out_dir: str, seed: int) -> str:
    return os.path.join(out_dir, f"seed_{seed}")


def read_marker(out_dir: str) -> dict[str, Any] | None:
    """OUT's `jaxrec_ensemble.json`, or None when OUT is not a seed ensemble."""
    path = os.path.join(out_dir, MARKER)
    return read_json_object(path) if os.path.isfile(path) else None


def members(out_dir: str) -> list[str]:
    """The member MODEL_DIRs of a seed-ensemble OUT, in seed order of the command; each must
    have finished (its selected step is the one the ensemble reads)."""
    marker = read_marker(out_dir)
    if marker is None:
        raise DataError(f"{out_dir}: not a seed ensemble (no {MARKER})")
    dirs = [member_dir(out_dir, int(s)) for s in marker.get("seeds", [])]
    unfinished = [d for d in dirs if (md.read_record(d) or {}).get("status") != "done"]
    if unfinished:
        raise DataError(f"{out_dir}: member {unfinished[0]} is missing or has not finished "
                        "(resume the run with the same command and --resume)")  # fmt: skip
    return dirs


def chosen_variant(out_dir: str) -> str:
    """The fusion OUT's validation chose (OUT/ensemble.json)."""
    path = os.path.join(out_dir, RESULT)
    if not os.path.isfile(path):
        raise DataError(f"{out_dir}: the ensemble has not been evaluated yet (no {path}: no "
                        "fusion chosen); resume the run with the same command and "
                        "--resume")  # fmt: skip
    variant = read_json_object(path).get("variant")
    if not isinstance(variant, str):
        raise DataError(f"{path}: no 'variant' (the fusion validation chose)")
    return variant


def load_members(out_dir: str, dataset: Any, dataset_dir: str) -> list[Any]:
    """The members' `SidModel`s at their selected steps, each checked against the dataset."""
    return load_models(members(out_dir), dataset, dataset_dir)


def load_models(dirs: Sequence[str], dataset: Any, dataset_dir: str) -> list[Any]:
    """The semantic-id MODEL_DIRs' `SidModel`s, each checked against the dataset."""
    from jaxrec.indexing.binding import verify_index

    sids = [md.load_sid_model(d) for d in dirs]
    for sid in sids:
        verify_index(sid.index_path, dataset, dataset_dir)  # every member's items are these
    return sids


def expand(dirs: Sequence[str]) -> list[str]:
    """RUN directories with each seed-ensemble OUT replaced by its members."""
    return [m for d in dirs for m in (members(d) if read_marker(d) is not None else [d])]


def evaluate_dir(
    out_dir: str,
    dataset_dir: str,
    split: str = "test",
    num_beams: int | None = None,
    batch_size: int | None = None,
    max_users: int | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Full-ranking retrieval of a seed-ensemble OUT on a split (`jaxrec eval`): the members'
    beams fused by the variant its validation chose; metrics and per-user rows (user, target,
    top items, rank of the target or None)."""
    import numpy as np

    from jaxrec.inference import metrics as eval_metrics

    variant = chosen_variant(out_dir)
    dataset = read_dataset(dataset_dir)
    dirs = members(out_dir)
    sids = load_models(dirs, dataset, dataset_dir)
    users = np.arange(dataset.num_users)[:max_users]
    _, fused, targets = ensemble.score_split(sids, dataset, split, users, num_beams,
                                             batch_size or sids[0].batch_size)  # fmt: skip
    top = fused.ranking(variant)
    ranks = eval_metrics.target_ranks(top, targets)
    metrics = eval_metrics.metrics_from_ranks(ranks, eval_metrics.DEFAULT_KS)
    rows = eval_metrics.retrieval_rows(users, targets, top, ranks, max(eval_metrics.DEFAULT_KS))
    metrics.update(num_users=len(users), task="retrieval", split=split, step=None,
                   item_repr="sid", variant=variant, members=dirs,
                   steps=[s.step for s in sids])  # fmt: skip
    return metrics, rows


def parse_seeds(text: str, purpose: str = "an ensemble") -> list[int]:
    """'0,1,2' -> [0, 1, 2]; at least two distinct integers (`purpose` names what needs them)."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise DataError(f"--seeds {text!r}: want comma-separated integers, e.g. 0,1") from None
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise DataError(f"--seeds {text!r}: {purpose} needs at least two distinct seeds")
    return seeds


def _write_marker(out_dir: str, marker: dict[str, Any]) -> None:
    path = os.path.join(out_dir, MARKER)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(marker, f, indent=1)
    os.replace(path + ".tmp", path)


def _check_marker(out_dir: str, stored: dict[str, Any], marker: dict[str, Any]) -> None:
    for key in ("seeds", "dataset", "recipe"):
        if stored.get(key) != marker[key]:
            raise DataError(f"{out_dir}: --resume with other {key} than the run there "
                            f"({stored.get(key)!r} -> {marker[key]!r}); use the same "
                            "command, or --overwrite to start anew")  # fmt: skip


def _finished(model_dir: str) -> dict[str, Any] | None:
    """A member's result.json when it has finished (status done), else None."""
    record = md.read_record(model_dir)
    path = os.path.join(model_dir, "result.json")
    if record is None or record.get("status") != "done" or not os.path.isfile(path):
        return None
    return read_json_object(path)


def run(
    dataset_dir: str,
    out_dir: str,
    cfg: Any,
    seeds: Sequence[int],
    index_path: str | None = None,
    resume: bool = False,
    validation_users: int | None = None,
) -> dict[str, Any]:
    """Trains `cfg` (a `RecipeConfig`) once per seed into OUT/seed_<s>, then evaluates the
    members' ensemble (`ensemble.evaluate`, the variant chosen on the first
    `validation_users` validation users, default all). Returns (and writes to OUT/ensemble.json)
    the result, or `{"status": "preempted", ...}` when a member was stopped by SIGTERM."""
    import numpy as np

    from jaxrec.recipes.reproduce import run_tiger

    t_start = time.perf_counter()
    dataset = read_dataset(dataset_dir)
    if validation_users is not None and not 0 < validation_users <= dataset.num_users:
        raise DataError(f"--validation-users {validation_users}: must be in "
                        f"1..{dataset.num_users}")  # fmt: skip
    marker = {"kind": "seed_ensemble", "producer": f"jaxrec reproduce {cfg.name} --seeds",
              "recipe": cfg.name, "seeds": [int(s) for s in seeds],
              "dataset": os.path.abspath(dataset_dir), "status": "training"}  # fmt: skip
    os.makedirs(out_dir, exist_ok=True)
    stored = read_marker(out_dir) if resume else None
    if stored is not None:
        _check_marker(out_dir, stored, marker)
    _write_marker(out_dir, marker)

    results = []
    for i, seed in enumerate(seeds):
        where = member_dir(out_dir, seed)
        done = _finished(where)
        if done is not None:
            log.info("member %d/%d (seed %d): finished earlier in %s", i + 1, len(seeds), seed,
                     where)  # fmt: skip
            results.append(done)
            continue
        log.info("member %d/%d: training seed %d into %s", i + 1, len(seeds), seed, where)
        train = dataclasses.replace(cfg.train, seed=seed)  # index, init, dropout, data order
        member_cfg = dataclasses.replace(cfg, seed=seed, train=train)
        result = run_tiger(dataset_dir, where, member_cfg, index_path=index_path,
                           dataset=dataset, resume=True)  # fmt: skip
        if result.get("status") == "preempted":
            return dict(result, member=where)
        results.append(result)

    t = time.perf_counter()
    dirs = [member_dir(out_dir, s) for s in seeds]
    sids = load_members(out_dir, dataset, dataset_dir)
    users = None if validation_users is None else np.arange(validation_users)
    result = ensemble.evaluate(sids, dataset, None, cfg.eval_batch_size, users)  # test beams
    member_seconds = [r["seconds"]["total"] for r in results]
    result.update(
        recipe=cfg.name, dataset=dataset_dir, seeds=list(seeds), runs=dirs,
        steps=[s.step for s in sids], fusion_weights=[s.fusion_weight for s in sids],
        members_validation=[r["validation"] for r in results],
        seconds={"members": member_seconds, "ensemble": round(time.perf_counter() - t, 1),
                 "total": round(sum(member_seconds) + time.perf_counter() - t, 1),
                 "this_process": round(time.perf_counter() - t_start, 1)},
        load_average=os.getloadavg()[0],
    )  # fmt: skip
    with open(os.path.join(out_dir, RESULT), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    _write_marker(out_dir, dict(marker, status="done", variant=result["variant"]))
    return result

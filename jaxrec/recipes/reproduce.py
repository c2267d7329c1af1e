"""`jaxrec reproduce tiger`: prepared dataset -> semantic ids -> training -> selection -> test,
within a wall-clock budget.

Stages and what each one costs are measured and planned:
  index     the given index (`--index`), or jaxrec's RQ-VAE over the items' attributes/text;
  setup     batches, network, compilation, and a timing of the constrained search;
  train     as many steps as fit (measured after a few steps; the cosine schedule then ends
            exactly there, re-planned from the measured rate after every evaluation by
            continuing the decay from the current rate), with a validation evaluation on a
            fixed user subset every `eval_every_minutes`; the best validation Recall@10
            (then NDCG@10) is kept;
  test      all users of the test split, all items ranked (history included), beam search
            constrained to the catalogue trie.
The test split is never looked at before the selected parameters are final.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxrec import partitioning
from jaxrec.data.canonical import read_dataset
from jaxrec.data.dataset import DataError, Dataset
from jaxrec.indexing.sid_vocab import SidVocabulary
from jaxrec.models.configs import get_config
from jaxrec.recipes import hybrid, sid_aux
from jaxrec.recipes.sid_retrieval import SidRetrieval, TrainingData, TrainSettings

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RecipeConfig:
    """A generative-retrieval recipe and its budget (bound by `gin/experiments/tiger_*.gin`).

    Attributes:
      name: recorded in the results ("tiger" = TIGER's layout, "tiger_prefix_shared" = the
        prefix-shared fast variant).
      model: named T5 shape (`jaxrec.models.configs`), with `model_overrides` on top.
      encoder_causal: causal encoder (required by prefix-shared training).
      item_id_inputs: add an item-id embedding to each history item's code embeddings (the
        output stays the semantic id, decoded over the catalogue trie).
      train: how the network is trained (mode, batch, learning rate, ...).
      minutes: wall-clock budget of the whole run, index and test evaluation included (used
        when neither `steps` nor `epochs` is set).
      steps / epochs: a fixed plan instead of a budget: this many training steps (or epochs of
        the training rows); the run is then the same whatever the core count and resumes exactly.
      eval_every_steps / eval_every_epochs: steps (or epochs) between validations in a fixed
        plan (default: a tenth of it).
      index_embeddings / index_levels / index_codes / index_epochs: the RQ-VAE index built
        when no index is given.
      validation_users: size of the fixed validation subset used for model selection.
      eval_every_minutes: wall-clock minutes of training between validation evaluations.
      num_beams / eval_batch_size: constrained search settings (20 beams returns 20 items).
      test_num_beams: beams of the final choice and the test (0: `num_beams`). With the
        hybrid, validation picks the step with `num_beams`, then the fusion weight again on the
        same validation users with `test_num_beams` (the head re-scores what these beams
        propose, so its weight depends on how many); `jaxrec eval`/`recommend` default to it.
      hybrid: re-score the beams' items with the dense item head (`jaxrec.recipes.hybrid`;
        needs `item_id_inputs` and `train.next_item_loss`): validation selects the step and
        the fusion weight; test reports the hybrid, generative and dense rankings.
      references: test Recall@10 lines drawn on the learning curve, e.g. (("SASRec", 0.0863),).
      mesh_shape: the (data, model) mesh training and retrieval run on, over the first
        data × model devices ("8x1": every batch, training and retrieval, split over 8
        devices; "1x1": one device; "auto": every device). None: training over every device,
        retrieval batches not split.
    """

    name: str = "tiger_prefix_shared"
    model: str = "tiger"
    model_overrides: tuple[tuple[str, Any], ...] = ()
    encoder_causal: bool = True
    item_id_inputs: bool = False
    train: TrainSettings = TrainSettings()
    minutes: float = 120.0
    steps: int = 0
    epochs: float = 0.0
    eval_every_steps: int = 0
    eval_every_epochs: float = 0.0
    index_embeddings: str = "auto"
    index_levels: int = 3
    index_codes: int = 256
    index_epochs: int = 200
    validation_users: int = 2000
    eval_every_minutes: float = 6.0
    num_beams: int = 20
    test_num_beams: int = 0
    eval_batch_size: int = 32
    hybrid: bool = False
    references: tuple[tuple[str, float], ...] = ()
    seed: int = 0
    mesh_shape: str | None = None

    def __post_init__(self):
        for field in ("model_overrides", "references"):  # gin gives dicts
            value = getattr(self, field)
            value = value.items() if isinstance(value, dict) else map(tuple, value)
            object.__setattr__(self, field, tuple(value))
        if self.train.mode == "prefix_shared" and not self.encoder_causal:
            raise ValueError("prefix_shared training needs encoder_causal=True")
        if self.test_num_beams < 0 or self.num_beams < 1:
            raise ValueError(f"num_beams {self.num_beams}, test_num_beams {self.test_num_beams}: "
                             "need num_beams >= 1, test_num_beams >= 0 (0: num_beams)")  # fmt: skip
        if self.hybrid and not (self.item_id_inputs and self.train.next_item_loss > 0):
            raise ValueError("hybrid retrieval scores with the dense item head: set "
                             "item_id_inputs and TrainSettings.next_item_loss > 0")  # fmt: skip


def build_or_load_index(
    dataset: Dataset, dataset_dir: str, cfg: RecipeConfig, index_path: str | None, out: str
):
    """The given index (checked against the dataset's items, collisions resolved) or a new
    RQ-VAE index written to `out` with its dataset record."""
    from jaxrec.indexing.binding import verify_index
    from jaxrec.indexing.isolated import build_rqvae_index
    from jaxrec.indexing.rqvae import RQVAEConfig
    from jaxrec.indexing.schemes import load_index

    path = os.path.join(out, f"{dataset.name}.index.json")
    if index_path:
        verify_index(index_path, dataset, dataset_dir)  # the index describes these items
        index = load_index(index_path, num_items=dataset.num_items)
        if os.path.abspath(index_path) != os.path.abspath(path):  # the MODEL_DIR keeps its own
            index.to_json(path, dataset=dataset)
        return index, {"index": path, "source": index_path, "levels": index.levels}
    rq = RQVAEConfig(
        levels=cfg.index_levels, codes=cfg.index_codes, epochs=cfg.index_epochs, seed=cfg.seed
    )
    # In a worker process with one compute thread, whatever --cpu-threads gives training: the
    # same index whatever the core count (jaxrec.indexing.isolated). `jaxrec index build` with
    # --cpu-threads builds another thread count's index, which --index can then pass in.
    index, report = build_rqvae_index(dataset_dir, cfg.index_embeddings, rq)
    index.to_json(path, dataset=dataset)  # with the record of the items it indexes
    report = {k: v for k, v in report.items() if k != "config"}
    return index, {"index": path, **report}


def plot_curve(
    path: str,
    curve: Sequence[dict],
    references: dict[str, float],
    title: str,
    test_point: tuple[float, float] | None = None,
):
    """Validation Recall@10 against wall-clock minutes, reference test lines, the test figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=110)
    minutes = [c["minutes"] for c in curve]
    ax.plot(minutes, [c["recall@10"] for c in curve], "o-", color="#d62728", linewidth=1.8,
            markersize=4, label="jaxrec, validation Recall@10")  # fmt: skip
    if test_point is not None:
        ax.plot(*test_point, "*", color="#d62728", markersize=13,
                label="jaxrec, selected model, test Recall@10")  # fmt: skip
    styles = ["--", ":", "-."]
    for i, (name, value) in enumerate(sorted(references.items(), key=lambda kv: -kv[1])):
        ax.axhline(value, linestyle=styles[i % 3], color="#555555", linewidth=1.2)
        ax.annotate(f"{name}, test: {value:.4f}", xy=(0.01, value),
                    xycoords=("axes fraction", "data"), xytext=(0, 3),
                    textcoords="offset points", fontsize=8, color="#333333")  # fmt: skip
    right = max(minutes + [test_point[0] if test_point else 0.0])
    ax.set_xlim(0, right * 1.04 + 0.1)
    ax.set_xlabel("wall-clock minutes since the start of the run")
    ax.set_ylabel("Recall@10")
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run_tiger(
    dataset_dir: str,
    out_dir: str,
    cfg: RecipeConfig = RecipeConfig(),
    index_path: str | None = None,
    dataset: Dataset | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Runs the recipe into the MODEL_DIR `out_dir`; returns (and writes to OUT/result.json)
    the results dictionary, or `{"status": "preempted", ...}` when a SIGTERM stopped it
    (its checkpoint saved: `resume=True` continues it).

    OUT is a MODEL_DIR (`jaxrec.model_dir`): `model_config.json`, `jaxrec_model.json` (the
    recipe, the index, the selected step), the index with its dataset record, and orbax
    checkpoints at every validation (the best one kept), so `jaxrec eval` and
    `jaxrec recommend` read it and a killed run resumes from its last validation. The test's
    per-user rows go to OUT/eval_retrieval_test_step<N>.jsonl (`result["test_rows"]`), the
    file `jaxrec eval` writes for the selected step."""
    from jaxrec import model_dir as md
    from jaxrec.baselines import popularity
    from jaxrec.training import loop as tl
    from jaxrec.training import selection

    t_start = time.perf_counter()
    seconds: dict[str, float] = {}
    os.makedirs(out_dir, exist_ok=True)
    dataset = dataset or read_dataset(dataset_dir)
    recipe = _jsonable(dataclasses.asdict(cfg))
    record = md.read_record(out_dir) if resume else None
    if record is not None:
        _check_same_recipe(out_dir, record, recipe)
    else:  # first, so that a run stopped while indexing is still one to resume
        md.write_model_files(out_dir, None, {"kind": "semantic_id", "recipe": recipe,
                                             "status": "indexing"})  # fmt: skip
    if record is not None and "index" not in record:
        record = None  # stopped before its index was written: start it again

    t = time.perf_counter()
    if record is not None:
        index, index_report = _stored_index(out_dir, record, dataset, dataset_dir)
    else:
        index, index_report = build_or_load_index(dataset, dataset_dir, cfg, index_path, out_dir)
    if index.num_items != dataset.num_items:
        raise DataError(f"{index_report['index']}: {index.num_items} items, "
                        f"{dataset_dir} has {dataset.num_items}")  # fmt: skip
    seconds["index"] = round(time.perf_counter() - t, 1)
    log.info("index: %s (%.0f s)", index_report["index"], seconds["index"])
    if not (cfg.steps or cfg.epochs) and time.perf_counter() - t_start >= cfg.minutes * 60:
        raise DataError(f"--minutes {cfg.minutes:g} is too short for this dataset: the index "
                        f"took {seconds['index']:.0f} s of it, before any training")  # fmt: skip

    t = time.perf_counter()
    settings = cfg.train
    test_beams = cfg.test_num_beams or cfg.num_beams
    rechoose = cfg.hybrid and test_beams != cfg.num_beams  # the weight again with test beams
    extra = sid_aux.extra_tokens(settings.aux_tasks, dataset) if settings.aux_tasks else []
    rec, model_cfg = _recommender(cfg, index, extra, dataset.num_items)
    data = TrainingData(
        dataset, rec.vocab, settings, rec.input_codes if cfg.item_id_inputs else None
    )
    if record is None:
        record = {
            "kind": "semantic_id", "producer": f"jaxrec reproduce {cfg.name}",
            "dataset": os.path.abspath(dataset_dir), "dataset_name": dataset.name,
            "index": os.path.basename(index_report["index"]), "index_report": index_report,
            "extra_tokens": list(extra), "history": settings.history,
            "item_inputs": settings.item_inputs, "num_beams": test_beams,
            "eval_batch_size": cfg.eval_batch_size, "recipe": recipe,
            "selected_step": None, "status": "training",
        }  # fmt: skip
        md.write_model_files(out_dir, model_cfg, record)
    rng = np.random.default_rng(cfg.seed)
    val_users = np.sort(rng.permutation(dataset.num_users)[: cfg.validation_users])
    pop = popularity.evaluate(dataset, "test")
    setup, step_fn = rec.trainer_for(settings)

    fixed = cfg.steps or (math.ceil(cfg.epochs * data.steps_per_epoch) if cfg.epochs else 0)
    every = cfg.eval_every_steps or (
        max(math.ceil(cfg.eval_every_epochs * data.steps_per_epoch), 1)
        if cfg.eval_every_epochs
        else max(fixed // 10, 1)
    )
    total = fixed or 10**7  # a budget plans the real total after timing the first steps

    def split_metrics(params, split, users=None, weight=None, beams=cfg.num_beams, rows=False):
        if cfg.hybrid:
            return hybrid.evaluate(rec, params, dataset, split, users, beams,
                                   cfg.eval_batch_size, weight, with_rows=rows)  # fmt: skip
        return rec.evaluate(params, dataset, split, users, beams, cfg.eval_batch_size,
                            with_rows=rows)  # fmt: skip

    validation = selection.Validation(
        lambda params: split_metrics(params, "validation", val_users),
        every if fixed else total, data.steps_per_epoch, save_every=True,
    )  # fmt: skip
    manager = md.checkpoint_manager(out_dir)
    if not resume and manager.latest_step() is not None:
        raise DataError(f"{out_dir}: holds checkpoints of an earlier run; resume it "
                        "(--resume) or start anew (--overwrite)")  # fmt: skip
    checkpoints = tl.Checkpoints(manager, every=10**9, keep=2)
    # After the last step: the weight again with the test's beams (a hybrid whose test beams
    # differ) and the test, all users. The search costs about linearly in users and beams, so
    # that work is `after_scale` validations' worth (the ETA's and the budget's estimate).
    after_scale = test_beams / cfg.num_beams * (rechoose + dataset.num_users / len(val_users))
    after = selection.AfterTraining(validation, after_scale, compiles=test_beams != cfg.num_beams)
    hooks = [tl.NonFiniteStop(), tl.MetricsLog(out_dir, every=100), validation, after]
    budget = None
    if not fixed:
        budget = selection.WallClockBudget(
            cfg.minutes * 60.0, 0.0, 0.0, cfg.eval_every_minutes * 60,
            make_schedule=lambda n: rec.schedule_for(settings, n),
        )  # fmt: skip
        hooks.append(budget)
    hooks += [tl.Preemption(), checkpoints]
    loop = tl.TrainLoop(None, step_fn, data.batches, rec.schedule_for(settings, total), total,
                        rec.mesh, rec.rules, hooks)  # fmt: skip
    resumed = checkpoints.restore_or_init(
        loop, setup.abstract_with_shardings(), lambda: rec.init_state(setup, settings.seed)
    )
    if budget is not None:  # time the constrained search (this compiles it, as test will)
        probe = [dataset.example(int(u), "validation", settings.history).history
                 for u in val_users[: 4 * cfg.eval_batch_size]]  # fmt: skip
        rec.retrieve(loop.state.params, probe[: cfg.eval_batch_size], cfg.num_beams,
                     cfg.eval_batch_size)  # fmt: skip
        t_probe = time.perf_counter()
        rec.retrieve(loop.state.params, probe, cfg.num_beams, cfg.eval_batch_size)
        query_s = (time.perf_counter() - t_probe) / max(len(probe), 1)
        budget.eval_s = query_s * len(val_users)
        budget.test_s = 1.1 * after_scale * budget.eval_s + 20.0  # 10% and 20 s to spare
    seconds["setup"] = round(time.perf_counter() - t, 1)
    loop.start_clock(time.perf_counter() - t_start)  # index and setup of this process
    if resumed:
        log.info("resumed %s at step %d of %d", out_dir, loop.step, loop.train_steps)
    t_loop = time.perf_counter()
    try:
        status = loop.run()
    except selection.BudgetTooShortError as e:
        raise DataError(f"--minutes {cfg.minutes:g} is too short for this dataset: {e}") from None
    finally:
        manager.wait_until_finished()
    if status == "preempted":
        md.update_record(out_dir, status="preempted")
        return {"status": "preempted", "step": loop.step, "out": out_dir}
    seconds["select"] = round(validation.seconds, 1)
    seconds["train"] = round(time.perf_counter() - t_loop - validation.seconds, 1)

    t = time.perf_counter()
    best = dict(validation.best)
    on_mesh = setup.shardings.params if cfg.mesh_shape else None  # where retrieval runs
    params = loop.state.params if best["step"] == loop.step else md.restore_params(
        out_dir, best["step"], on_mesh)[0]  # fmt: skip
    weight = best.get("fusion_weight")  # hybrid: the weight validation chose at that step
    rechosen = None
    if rechoose:
        rechosen = split_metrics(params, "validation", val_users, None, test_beams)
        log.info("fusion weight with %d beams: %g (with %d: %g), validation recall@10 %.4f",
                 test_beams, rechosen["fusion_weight"], cfg.num_beams, weight,
                 rechosen["recall@10"])  # fmt: skip
        weight = rechosen["fusion_weight"]
        seconds["select"] = round(seconds["select"] + time.perf_counter() - t, 1)
        t = time.perf_counter()
    test, test_rows = split_metrics(params, "test", None, weight, test_beams, rows=True)
    rows_path = md.eval_rows_path(out_dir, "retrieval", "test", f"step{best['step']}")
    md.write_rows(rows_path, test_rows)  # where and as `jaxrec eval` writes them
    seconds["test"] = round(time.perf_counter() - t, 1)
    manager.close()
    md.update_record(out_dir, selected_step=best["step"], status="done", num_beams=test_beams,
                     **({"fusion_weight": weight} if cfg.hybrid else {}))  # fmt: skip

    total_s = round(loop.elapsed(), 1)  # the whole run: earlier processes, index, ..., test
    plan = {"train_steps": loop.train_steps, "eval_every_steps": validation.every,
            "epochs": round(loop.train_steps / data.steps_per_epoch, 2),
            "fixed": bool(fixed)}  # fmt: skip
    if budget is not None:
        plan.update(budget.plan or {}, replans=budget.replans)
    result = {
        "recipe": cfg.name,
        "dataset": dataset_dir,
        "index": index_report,
        "model": dataclasses.asdict(model_cfg),
        "train": dataclasses.asdict(settings),
        "plan": dict(plan, steps_run=loop.step),
        "validation": {
            **{k: v for k, v in best.items() if k != "step"},
            "selected_step": best["step"],
            **({"test_beams": {"num_beams": test_beams, **rechosen}} if rechosen else {}),
        },  # fmt: skip
        "test": test,
        "test_rows": os.path.basename(rows_path),
        "popularity_test": pop,
        "curve": validation.curve,
        "losses": [(int(i), x) for i, x in validation.losses],
        "seconds": {**seconds, "total": total_s},
        "minutes_budget": None if fixed else cfg.minutes,
        "load_average": os.getloadavg()[0],
    }
    with open(os.path.join(out_dir, "result.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1, default=str)
    refs = {**dict(cfg.references), "popularity": pop["recall@10"]}
    plot_curve(os.path.join(out_dir, "learning_curve.png"), validation.curve, refs,
               f"{cfg.name} on {dataset.name}: validation Recall@10 "
               f"({len(val_users)} users) vs wall clock",
               (total_s / 60, test["recall@10"]))  # fmt: skip
    return result


def _recommender(cfg: RecipeConfig, index, extra_tokens, num_items: int):
    """(SidRetrieval, T5Config) of the recipe over `index` (+ auxiliary-task tokens)."""
    # Task markers, <mask>, <sep>, attribute tokens follow the item tokens.
    vocab = SidVocabulary.from_index(index).with_extra_tokens(extra_tokens)
    model_cfg = get_config(
        cfg.model, vocab_size=vocab.padded_vocab_size(), encoder_causal=cfg.encoder_causal,
        num_input_items=num_items if cfg.item_id_inputs else 0, **dict(cfg.model_overrides),
    )  # fmt: skip
    mesh = None
    if cfg.mesh_shape is not None:
        devices = partitioning.leading_devices(cfg.mesh_shape)
        mesh = partitioning.create_mesh(cfg.mesh_shape, devices)
    rec = SidRetrieval(model_cfg, vocab, cfg.train.history, cfg.train.item_inputs, mesh=mesh)
    return rec, model_cfg


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=str))


# Recipe fields a resumed run may change: the budget (more or less time for the rest), the
# mesh (a checkpoint restores onto any mesh) and the test's beams (they act after selection;
# the record takes them at the end).
_RESUMABLE_CHANGES = {"minutes", "mesh_shape", "test_num_beams"}


def _check_same_recipe(out_dir: str, record: dict, recipe: dict) -> None:
    stored = record.get("recipe", {})
    diff = sorted(k for k in set(stored) | set(recipe)
                  if k not in _RESUMABLE_CHANGES and stored.get(k) != recipe.get(k))  # fmt: skip
    if diff:
        shown = "; ".join(f"{k}: {stored.get(k)!r} -> {recipe.get(k)!r}" for k in diff[:4])
        raise DataError(f"{out_dir}: --resume with another recipe than the run there ({shown}); "
                        "use the same settings, or --overwrite to start anew")  # fmt: skip


def _stored_index(out_dir: str, record: dict, dataset: Dataset, dataset_dir: str):
    """The index a resumed run was trained on (checked against the dataset given now)."""
    from jaxrec.indexing.binding import verify_index
    from jaxrec.indexing.schemes import load_index

    path = os.path.join(out_dir, record["index"])
    verify_index(path, dataset, dataset_dir)
    return load_index(path, num_items=dataset.num_items), dict(record["index_report"], index=path)

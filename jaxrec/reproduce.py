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

import jax
import numpy as np

from jaxrec import optimizers, sid_aux
from jaxrec.data.canonical import read_dataset
from jaxrec.data.dataset import DataError, Dataset
from jaxrec.indexing.sid_vocab import SidVocabulary
from jaxrec.models.configs import get_config
from jaxrec.sid_retrieval import SidRetrieval, TrainingData, TrainSettings

log = logging.getLogger(__name__)

# Re-plan the schedule when the steps that fit the rest of the budget differ from the plan by
# more than this fraction (each re-plan recompiles the step).
REPLAN_TOLERANCE = 0.03


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
      minutes: wall-clock budget of the whole run, index and test evaluation included.
      index_embeddings / index_levels / index_codes / index_epochs: the RQ-VAE index built
        when no index is given.
      validation_users: size of the fixed validation subset used for model selection.
      eval_every_minutes: wall-clock minutes of training between validation evaluations.
      num_beams / eval_batch_size: constrained search settings (20 beams returns 20 items).
      references: test Recall@10 lines drawn on the learning curve, e.g. (("SASRec", 0.0863),).
    """

    name: str = "tiger_prefix_shared"
    model: str = "tiger"
    model_overrides: tuple[tuple[str, Any], ...] = ()
    encoder_causal: bool = True
    item_id_inputs: bool = False
    train: TrainSettings = TrainSettings()
    minutes: float = 120.0
    index_embeddings: str = "auto"
    index_levels: int = 3
    index_codes: int = 256
    index_epochs: int = 200
    validation_users: int = 2000
    eval_every_minutes: float = 6.0
    num_beams: int = 20
    eval_batch_size: int = 32
    references: tuple[tuple[str, float], ...] = ()
    seed: int = 0

    def __post_init__(self):
        for field in ("model_overrides", "references"):  # gin gives dicts
            value = getattr(self, field)
            value = value.items() if isinstance(value, dict) else map(tuple, value)
            object.__setattr__(self, field, tuple(value))
        if self.train.mode == "prefix_shared" and not self.encoder_causal:
            raise ValueError("prefix_shared training needs encoder_causal=True")


class _Clock:
    """Wall-clock seconds per stage since the start of the run."""

    def __init__(self):
        self.start = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = round(self.seconds.get(stage, 0.0) + seconds, 1)


def build_or_load_index(
    dataset: Dataset, dataset_dir: str, cfg: RecipeConfig, index_path: str | None, out: str
):
    """The given index (checked against the dataset's items, collisions resolved) or a new
    RQ-VAE index written to `out` with its dataset record."""
    from jaxrec.indexing import build, embed
    from jaxrec.indexing.binding import verify_index
    from jaxrec.indexing.rqvae import RQVAEConfig
    from jaxrec.indexing.schemes import load_index

    if index_path:
        verify_index(index_path, dataset, dataset_dir)  # the index describes these items
        index = load_index(index_path, num_items=dataset.num_items)
        return index, {"index": index_path, "levels": index.levels}
    emb = embed.item_embeddings(dataset, cfg.index_embeddings, seed=cfg.seed, source=dataset.name)
    rq = RQVAEConfig(
        levels=cfg.index_levels, codes=cfg.index_codes, epochs=cfg.index_epochs, seed=cfg.seed
    )
    index, report = build.build_index(dataset, "rqvae", emb, rq)
    path = os.path.join(out, f"{dataset.name}.index.json")
    index.to_json(path, dataset=dataset)  # with the record of the items it indexes
    report = {k: v for k, v in report.items() if k != "config"}
    return index, {"index": path, **report}


def plan_steps(
    available_s: float, step_s: float, eval_s: float, eval_every_s: float
) -> tuple[int, int]:
    """(train steps, evaluations) that fill `available_s`: training time t plus one
    evaluation every `eval_every_s` of training (and one at the end)."""
    train_s = (available_s - eval_s) / (1.0 + eval_s / eval_every_s)
    steps = max(int(train_s / step_s), 1)
    evals = max(int(steps * step_s / eval_every_s), 0) + 1
    return steps, evals


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
) -> dict[str, Any]:
    """Runs the recipe; returns (and writes to OUT/result.json) the results dictionary."""
    from jaxrec.baselines import popularity

    clock = _Clock()
    budget_s = cfg.minutes * 60.0
    os.makedirs(out_dir, exist_ok=True)
    dataset = dataset or read_dataset(dataset_dir)

    t = time.perf_counter()
    index, index_report = build_or_load_index(dataset, dataset_dir, cfg, index_path, out_dir)
    if index.num_items != dataset.num_items:
        raise DataError(f"{index_report['index']}: {index.num_items} items, "
                        f"{dataset_dir} has {dataset.num_items}")  # fmt: skip
    clock.add("index", time.perf_counter() - t)
    log.info("index: %s (%.0f s)", index_report["index"], clock.seconds["index"])

    t = time.perf_counter()
    settings = cfg.train
    vocab = SidVocabulary.from_index(index)
    if settings.aux_tasks:  # task markers, <mask>, <sep>, attribute tokens
        vocab = vocab.with_extra_tokens(sid_aux.extra_tokens(settings.aux_tasks, dataset))
    model_cfg = get_config(
        cfg.model, vocab_size=vocab.padded_vocab_size(), encoder_causal=cfg.encoder_causal,
        num_input_items=dataset.num_items if cfg.item_id_inputs else 0,
        **dict(cfg.model_overrides),
    )  # fmt: skip
    rec = SidRetrieval(model_cfg, vocab, settings.history, settings.item_inputs)
    data = TrainingData(dataset, vocab, settings, rec.input_codes if cfg.item_id_inputs else None)
    rng = np.random.default_rng(cfg.seed)
    val_users = np.sort(rng.permutation(dataset.num_users)[: cfg.validation_users])
    pop = popularity.evaluate(dataset, "test")
    # Calibration: compile and time the search, and the first training steps (kept: they are
    # the start of the run; the schedule is re-planned around them).
    calib_total = 10**7
    state, step_fn = rec.trainer_for(settings, rec.schedule_for(settings, calib_total))
    batches = data.batches(0)
    state, _ = rec.run_step(step_fn, state, next(batches))
    probe = [dataset.example(int(u), "validation", settings.history).history for u in val_users]
    rec.retrieve(state.params, probe[: cfg.eval_batch_size], cfg.num_beams, cfg.eval_batch_size)
    t_eval = time.perf_counter()
    n_probe = min(len(probe), 4 * cfg.eval_batch_size)
    rec.retrieve(state.params, probe[:n_probe], cfg.num_beams, cfg.eval_batch_size)
    query_s = (time.perf_counter() - t_eval) / n_probe
    t_steps = time.perf_counter()
    calib_steps = 5
    for _ in range(calib_steps):
        state, metrics = rec.run_step(step_fn, state, next(batches))
    jax.block_until_ready(metrics)
    step_s = (time.perf_counter() - t_steps) / calib_steps
    clock.add("setup", time.perf_counter() - t)

    eval_s = query_s * len(val_users)
    test_s = query_s * dataset.num_users * 1.1 + 20.0
    margin = min(50.0, 0.1 * budget_s)  # recompilation of the step, stragglers
    available = budget_s - clock.elapsed() - test_s - margin
    steps, evals = plan_steps(available, step_s, eval_s, cfg.eval_every_minutes * 60)
    steps += 1 + calib_steps
    eval_every = max(steps // evals, 1)
    plan = {
        "step_seconds": round(step_s, 4),
        "query_seconds": round(query_s, 5),
        "train_steps": steps,
        "epochs": round(steps / data.steps_per_epoch, 2),
        "eval_every_steps": eval_every,
        "validation_evaluations": evals,
        "test_seconds_estimate": round(test_s, 1),
    }
    log.info("plan: %s", plan)
    if available <= 0 or steps < 10:
        raise DataError(f"--minutes {cfg.minutes:g} is too short for this dataset: index and "
                        f"setup took {clock.elapsed():.0f} s, test evaluation needs about "
                        f"{test_s:.0f} s, a step {step_s:.2f} s")  # fmt: skip
    schedule = rec.schedule_for(settings, steps)
    _, step_fn = rec.trainer_for(settings, schedule, init=False)

    curve: list[dict] = []
    replans: list[dict] = []
    best: dict[str, Any] = {"recall@10": -1.0}
    step = 1 + calib_steps
    next_eval = step + eval_every
    loss_window: list = []
    step_losses: list[tuple[int, float]] = []  # (step, training loss) of every step

    def first_step(state, step_fn):
        """One step with a new step function (compiles it), outside the timed interval."""
        state, metrics = rec.run_step(step_fn, state, next(batches))
        loss_window.append(jax.block_until_ready(metrics["loss"]))
        return state

    t = time.perf_counter()
    state = first_step(state, step_fn)
    step += 1
    train_s = time.perf_counter() - t
    seg_t0, seg_step0 = time.perf_counter(), step
    while step < steps:
        step += 1
        state, metrics = rec.run_step(step_fn, state, next(batches))
        loss_window.append(metrics["loss"])
        if step < next_eval and step != steps:
            continue
        losses = [float(x) for x in jax.device_get(loss_window)]
        if not all(math.isfinite(x) for x in losses):
            raise FloatingPointError(f"non-finite training loss before step {step}")
        step_losses += [(step - len(losses) + 1 + i, x) for i, x in enumerate(losses)]
        loss_window.clear()
        seg_s = time.perf_counter() - seg_t0
        train_s += seg_s
        t = time.perf_counter()
        m = rec.evaluate(state.params, dataset, "validation", val_users, cfg.num_beams,
                         cfg.eval_batch_size)  # fmt: skip
        eval_s = time.perf_counter() - t
        clock.add("select", eval_s)
        point = {"step": step, "minutes": round(clock.elapsed() / 60, 2),
                 "epoch": round(step / data.steps_per_epoch, 2),
                 "loss": round(float(np.mean(losses)), 4), **m}  # fmt: skip
        curve.append(point)
        log.info("step %d/%d (epoch %.1f) loss %.4f | validation recall@10 %.4f ndcg@10 %.4f | "
                 "%.1f min", step, steps, point["epoch"], point["loss"], m["recall@10"],
                 m["ndcg@10"], point["minutes"])  # fmt: skip
        if (m["recall@10"], m["ndcg@10"]) > (best["recall@10"], best.get("ndcg@10", -1)):
            best = dict(m, step=step, params=jax.device_get(state.params))
        if step >= steps:
            break
        # Re-plan from the rates of the last interval: the machine may have become slower or
        # faster (other processes), and the cosine schedule should still end with the budget.
        step_s = seg_s / (step - seg_step0)
        remaining = budget_s - clock.elapsed() - test_s - min(20.0, 0.05 * budget_s)
        left, evals = plan_steps(remaining, step_s, eval_s, cfg.eval_every_minutes * 60)
        if remaining <= eval_s or left < 10:
            log.warning("stopping at step %d: the budget leaves no room for more training",
                        step)  # fmt: skip
            break
        eval_every = max(left // evals, 1)
        if abs(step + left - steps) > REPLAN_TOLERANCE * steps:
            # The cosine continues from the current rate to the new end: the rate stays
            # continuous and does not rise again when the run gets longer.
            lr = float(schedule(step))
            replans.append({"at_step": step, "train_steps": step + left,
                            "step_seconds": round(step_s, 4), "learning_rate": lr})  # fmt: skip
            log.info("re-planned: %d steps in all (%.3f s/step measured; learning rate %.2e "
                     "decays from here)", step + left, step_s, lr)  # fmt: skip
            steps = step + left
            schedule = optimizers.continue_cosine(
                schedule, step, steps, settings.learning_rate * settings.final_fraction
            )
            t = time.perf_counter()
            _, step_fn = rec.trainer_for(settings, schedule, init=False)
            state = first_step(state, step_fn)
            step += 1
            train_s += time.perf_counter() - t
        next_eval = min(step + eval_every, steps)
        seg_t0, seg_step0 = time.perf_counter(), step
    clock.add("train", train_s)

    t = time.perf_counter()
    params = best.pop("params")
    test = rec.evaluate(params, dataset, "test", None, cfg.num_beams, cfg.eval_batch_size)
    clock.add("test", time.perf_counter() - t)
    _save_params(out_dir, params, model_cfg)

    total = round(clock.elapsed(), 1)
    result = {
        "recipe": cfg.name,
        "dataset": dataset_dir,
        "index": index_report,
        "model": dataclasses.asdict(model_cfg),
        "train": dataclasses.asdict(settings),
        "plan": dict(plan, replans=replans, steps_run=step),
        "validation": {
            **{k: v for k, v in best.items() if k != "step"},
            "selected_step": best["step"],
        },  # fmt: skip
        "test": test,
        "popularity_test": pop,
        "curve": curve,
        "losses": [(int(i), round(x, 5)) for i, x in step_losses],
        "seconds": {**clock.seconds, "total": total},
        "minutes_budget": cfg.minutes,
        "load_average": os.getloadavg()[0],
    }
    with open(os.path.join(out_dir, "result.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1, default=str)
    refs = {**dict(cfg.references), "popularity": pop["recall@10"]}
    plot_curve(os.path.join(out_dir, "learning_curve.png"), curve, refs,
               f"{cfg.name} on {dataset.name}: validation Recall@10 "
               f"({len(val_users)} users) vs wall clock",
               (total / 60, test["recall@10"]))  # fmt: skip
    return result


def _save_params(out_dir: str, params: Any, model_cfg) -> None:
    from flax import serialization

    with open(os.path.join(out_dir, "params.msgpack"), "wb") as f:
        f.write(serialization.msgpack_serialize(jax.tree.map(np.asarray, params)))
    with open(os.path.join(out_dir, "model_config.json"), "w", encoding="utf-8") as f:
        json.dump(dataclasses.asdict(model_cfg), f, indent=1)

"""`jaxrec demo`: the whole flow on the embedded synthetic default, in minutes on a CPU.

    synthetic raw files ─▶ prepared dataset ─▶ RQ-VAE semantic ids ─▶ seqio mixture
    (retrieval + MIM + BPR + item↔index alignment) ─▶ tiny T5 trained by jaxrec.train ─▶
    constrained beam search over the whole catalogue ─▶ metrics next to popularity, SASRec and
    the oracle of the planted model ─▶ metrics.json, report.md, loss.png, metrics.png

Every stage logs what it does and how long it took.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo; `quick()` is the CI setting (about two minutes on 2 cores)."""

    users: int = 2000
    items: int = 1000
    topics: int = 20
    seed: int = 0
    index_levels: int = 3
    index_codes: int = 32
    index_epochs: int = 150
    # What the RQ-VAE quantises (`jaxrec.indexing.embed.item_embeddings`): item text plus the
    # collaborative transition embeddings of the training interactions, so items that follow
    # one another get related codes (LETTER's idea). On the default data, at 40 epochs,
    # validation Recall@10 +0.005 to +0.016 over text alone in every setting measured
    # (docs/benchmarks.md, demo section).
    index_embeddings: str = "text-tfidf+2*transitions"
    tasks: tuple[str, ...] = ("retrieval", "mim", "bpr", "item2index", "index2item")
    model: str = "tiny"
    # A small T5 v1.1 for 2 CPU cores: 2+2 layers, d_model 128, 4 heads x 32, d_ff 512.
    model_overrides: tuple[tuple[str, int], ...] = (
        ("emb_dim", 128), ("num_heads", 4), ("head_dim", 32), ("mlp_dim", 512),
    )  # fmt: skip
    train_steps: int = 600
    batch_size: int = 64
    learning_rate: float = 3e-3
    input_length: int = 80
    target_length: int = 16
    num_beams: int = 20
    eval_users: int | None = None
    # SASRec trains at most this many epochs with early stopping on validation (patience 10),
    # in a second process beside the generative model (both cores used, each one thread).
    sasrec_epochs: int = 60
    # "prefix_shared": semantic ids only, causal encoder, every next-item target of a user in
    # one pass (`jaxrec.recipes.reproduce`, the CPU recipe); "mixture": the seqio text mixture above
    # trained by jaxrec.train (retrieval + MIM + BPR + item<->index prompts).
    recipe: str = "prefix_shared"
    # prefix_shared: a fixed amount of work (epochs of the training rows), the same on every
    # machine, with a validation every `generative_eval_epochs` (the best one is kept).
    # 30 epochs: on seed 0 the beams alone reach the same test Recall@10 as after 40 (0.4225
    # against 0.4215), in three quarters of the time.
    generative_epochs: float = 30.0
    generative_eval_epochs: float = 5.0
    # Dropout in the encoder, where the item-id embeddings are learnt from a few dozen
    # occurrences each (SASRec's 0.2), and none in the decoder, which must memorise every
    # item's codes. On the default data at 40 epochs, validation Recall@10: 0.1 / 0.1 0.421,
    # 0.2 / 0.2 0.292, 0.2 / 0.1 0.408, 0.2 / 0.0 0.434.
    generative_dropout: float = 0.2
    generative_decoder_dropout: float = 0.0
    generative_learning_rate: float = 6e-3
    # AdamW's decoupled decay shrinks the rarely-updated item-id embeddings; off, as in
    # SASRec's Adam (validation Recall@10 +0.01 to +0.016 after 40 epochs on the default data).
    generative_weight_decay: float = 0.0
    # Auxiliary next-item loss (SASRec's objective on the encoder, tied to the item-id input
    # embedding; retrieval still decodes semantic ids): 0.304 -> 0.372 validation Recall@10
    # after 20 epochs on the default data, and it tolerates the higher learning rate.
    next_item_loss: float = 1.0
    # Item-id embeddings next to the semantic-id ones on the input side (output: semantic ids).
    item_id_inputs: bool = True
    validation_users: int = 500
    # Hybrid retrieval (`jaxrec.recipes.hybrid`): the beams propose at most `num_beams` items,
    # the dense item head that the next-item loss trains re-scores them (weight chosen on
    # validation). The report gives the hybrid, the beams alone and the head alone.
    # prefix_shared only: the mixture recipe's text model has no item head.
    hybrid: bool = True

    @classmethod
    def quick(cls, **changes) -> DemoConfig:
        return cls(**{**dict(users=500, items=250, topics=10, index_epochs=60,
                             train_steps=300, batch_size=32, sasrec_epochs=15,
                             generative_epochs=20.0, validation_users=200),
                      **changes})  # fmt: skip


class _Stage:
    """Context manager that logs a stage's start, end and duration, and records it."""

    def __init__(self, name: str, timings: dict[str, float]):
        self.name, self.timings = name, timings

    def __enter__(self):
        log.info("── %s ...", self.name)
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.timings[self.name] = round(time.perf_counter() - self.t0, 2)
        if exc[0] is None:
            log.info("── %s done in %.1f s", self.name, self.timings[self.name])


def _prepare_data(out_dir: str, cfg: DemoConfig):
    from jaxrec.data import canonical, prepare, synthetic
    from jaxrec.data.processing import PrepareOptions

    raw, data_dir = os.path.join(out_dir, "raw"), os.path.join(out_dir, "data")
    synthetic.generate(raw, num_users=cfg.users, num_items=cfg.items, num_topics=cfg.topics,
                       seed=cfg.seed)  # fmt: skip
    negatives = min(99, cfg.items // 4)
    ds = prepare.prepare_dataset(
        "synthetic", raw, options=PrepareOptions(num_negatives=negatives, seed=cfg.seed)
    )
    canonical.write_dataset(ds, data_dir)
    return ds, data_dir


def _build_index(ds, data_dir: str, cfg: DemoConfig) -> dict:
    from jaxrec.indexing.isolated import build_rqvae_index
    from jaxrec.indexing.rqvae import RQVAEConfig

    # TF-IDF text embeddings need no neural encoder (the `text` extra gives MiniLM ones).
    rq = RQVAEConfig(hidden_dims=(256, 128), latent_dim=32, levels=cfg.index_levels,
                     codes=cfg.index_codes, epochs=cfg.index_epochs, batch_size=256,
                     seed=cfg.seed)  # fmt: skip
    # In a worker process: the same index whatever the core count (jaxrec.indexing.isolated).
    index, report = build_rqvae_index(data_dir, cfg.index_embeddings, rq)
    index.to_json(os.path.join(data_dir, f"{ds.name}.index.json"), dataset=ds)
    return report


def _train(data_dir: str, model_dir: str, cfg: DemoConfig) -> tuple[str, list]:
    import seqio

    from jaxrec import train
    from jaxrec.models import configs
    from jaxrec.tasks import registry
    from jaxrec.training import optimizers

    names = registry.register_dataset_tasks(data_dir, item_repr="sid", tasks=cfg.tasks)
    # One mixture of every registered demo task (retrieval + auxiliary + alignment); task names
    # are `{dataset}_sid_{task}`, so the retrieval task's name gives the prefix.
    parts = [n for n in names if not n.endswith(("_cao", "_lcrec"))]
    retrieval = next(n for n in parts if n.endswith("_retrieval"))
    demo_mixture = retrieval.removesuffix("_retrieval") + "_demo"
    if demo_mixture in seqio.MixtureRegistry.names():
        seqio.MixtureRegistry.remove(demo_mixture)
    rates = {n: (4.0 if n.endswith("_retrieval") else 1.0) for n in parts}
    seqio.MixtureRegistry.add(demo_mixture, [(n, rates[n]) for n in parts])
    log.info("training mixture %s = %s", demo_mixture, rates)
    history = train.train(
        model_dir=model_dir,
        mixture_or_task_name=demo_mixture,
        task_feature_lengths={"inputs": cfg.input_length, "targets": cfg.target_length},
        train_steps=cfg.train_steps,
        batch_size=cfg.batch_size,
        model_config=configs.get_config(cfg.model, **dict(cfg.model_overrides)),
        schedule=lambda: optimizers.make_schedule(
            "cosine",
            cfg.learning_rate,
            warmup_steps=cfg.train_steps // 20,
            total_steps=cfg.train_steps,
        ),  # fmt: skip
        optimizer=lambda learning_rate: optimizers.make_optimizer(
            "adamw", learning_rate=learning_rate
        ),
        seed=cfg.seed,
        checkpoint_every=cfg.train_steps,
        keep_checkpoints=1,
        log_every=max(cfg.train_steps // 20, 1),
        mesh_shape="auto",  # all local devices on the data axis
    )
    return demo_mixture, history


def _train_prefix_shared(ds, data_dir: str, model_dir: str, cfg: DemoConfig) -> dict:
    from jaxrec.recipes import reproduce
    from jaxrec.recipes.sid_retrieval import TrainSettings

    recipe = reproduce.RecipeConfig(
        name="tiger_prefix_shared",
        model=cfg.model,
        model_overrides=cfg.model_overrides
        + (
            ("dropout_rate", cfg.generative_dropout),
            ("decoder_dropout_rate", cfg.generative_decoder_dropout),
            ("cross_recency_bias", True),
        ),
        item_id_inputs=cfg.item_id_inputs,
        train=TrainSettings(
            batch_size=16,
            learning_rate=cfg.generative_learning_rate,
            weight_decay=cfg.generative_weight_decay,
            next_item_loss=cfg.next_item_loss if cfg.item_id_inputs else 0.0,
            seed=cfg.seed,
        ),  # fmt: skip
        epochs=cfg.generative_epochs,
        eval_every_epochs=cfg.generative_eval_epochs,
        validation_users=min(cfg.validation_users, ds.num_users),
        num_beams=cfg.num_beams,
        hybrid=cfg.hybrid,
        seed=cfg.seed,
    )
    index_path = os.path.join(data_dir, f"{ds.name}.index.json")
    if os.path.isdir(model_dir):  # an earlier demo's model: this run trains anew
        shutil.rmtree(model_dir)
    return reproduce.run_tiger(data_dir, model_dir, recipe, index_path=index_path, dataset=ds)


def _sasrec_config(num_items: int, cfg: DemoConfig):
    from jaxrec.baselines import sasrec

    return sasrec.SASRecConfig(
        num_items=num_items,
        epochs=cfg.sasrec_epochs,
        patience=10,
        # Small data: SASRec's usual dropout 0.5 underfits in a short budget (Recall@10 0.03
        # vs 0.44 with 0.2 on the default demo data).
        dropout=0.2,
        attention_dropout=0.2,
        learning_rate=2e-3,
        seed=cfg.seed,
    )


def _sasrec_test_metrics(data_dir: str, cfg: DemoConfig, cpu_threads: int) -> dict:
    """SASRec-CE trained on the prepared dataset, test metrics (history items ranked). Runs in
    a worker process (`_start_sasrec`) with its own fixed CPU threads."""
    from jaxrec.baselines import sasrec
    from jaxrec.cli import quiet, threads
    from jaxrec.data.canonical import read_dataset

    quiet.configure_logging(False)
    threads.fix_cpu_threads(cpu_threads)
    ds = read_dataset(data_dir)
    model, result = sasrec.train(ds, _sasrec_config(ds.num_items, cfg))
    return sasrec.evaluate(model, result.params, ds, "test", exclude_history=False)


def _start_sasrec(data_dir: str, cfg: DemoConfig):
    """SASRec in a second process, beside the generative model: a future of its metrics."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from jaxrec.cli import threads

    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    future = pool.submit(_sasrec_test_metrics, data_dir, cfg, threads.requested())
    pool.shutdown(wait=False)  # the worker exits when its one job is done
    return future


def run_demo(out_dir: str, cfg: DemoConfig = DemoConfig()) -> dict:
    """Run every stage; returns `{"systems", "paths", "timings", "loss"}`."""
    from jaxrec.inference import evaluate
    from jaxrec.recipes import report

    os.makedirs(out_dir, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    with _Stage("1/6 data: synthetic default -> prepared dataset", timings):
        ds, data_dir = _prepare_data(out_dir, cfg)
    with _Stage("2/6 semantic ids: item embeddings -> RQ-VAE + Sinkhorn", timings):
        index_report = _build_index(ds, data_dir, cfg)
    log.info("SASRec-CE trains in a second process meanwhile")
    sasrec_metrics = _start_sasrec(data_dir, cfg)
    model_dir = os.path.join(out_dir, "model")
    parts: dict[str, dict] = {}
    if cfg.recipe == "prefix_shared":
        with _Stage("3-5/6 prefix-shared training on semantic ids + constrained retrieval",
                    timings):  # fmt: skip
            run = _train_prefix_shared(ds, data_dir, model_dir, cfg)
        mixture, result = "semantic-id retrieval (prefix-shared)", run["test"]
        if cfg.hybrid:  # the parts of the hybrid ranking, measured on the same test users
            parts = {"jaxrec_generative": result["generative"], "jaxrec_dense": result["dense"]}
        history = [{"step": i, "loss": x} for i, x in run["losses"]]
    else:
        with _Stage("3-4/6 tasks + training a tiny T5", timings):
            mixture, history = _train(data_dir, model_dir, cfg)
        with _Stage("5/6 constrained retrieval over the whole catalogue", timings):
            result, _ = evaluate.evaluate_model_dir(
                model_dir, data_dir, split="test", task="retrieval", num_beams=cfg.num_beams,
                max_users=cfg.eval_users,
            )  # fmt: skip
    with _Stage("6/6 baselines (popularity, SASRec) and report", timings):
        from jaxrec.baselines import popularity

        systems = {"popularity": popularity.evaluate(ds, "test"),
                   "sasrec": sasrec_metrics.result()}  # fmt: skip
        keys = [k for k in result if k.startswith(("recall@", "ndcg@"))]
        systems["jaxrec"] = {k: result[k] for k in keys + ["invalid_rate"] if k in result}
        systems["oracle"] = dict(ds.metadata["oracle"]["realised"])
        for name, m in parts.items():
            systems[name] = {k: m[k] for k in keys if k in m}
        loss = [(int(h["step"]), float(h["loss"])) for h in history if "loss" in h]
        gap = systems["oracle"]["recall@10"] - systems["jaxrec"]["recall@10"]
        lift = systems["jaxrec"]["recall@10"] / max(systems["popularity"]["recall@10"], 1e-9)
        vs_sasrec = systems["jaxrec"]["recall@10"] / max(systems["sasrec"]["recall@10"], 1e-9)
        sections = [
            ("Setting", _setting_text(ds, cfg, mixture, index_report)),
            ("Reading the numbers", (
                f"jaxrec Recall@10 is {systems['jaxrec']['recall@10']:.4f}: {vs_sasrec:.2f}x "
                f"SASRec's ({systems['sasrec']['recall@10']:.4f}), {lift:.1f}x "
                f"popularity ({systems['popularity']['recall@10']:.4f}) and "
                f"{gap:.4f} below the oracle ({systems['oracle']['recall@10']:.4f}), the "
                "best any recommender can expect on this data (ranking by the planted model's "
                "true next-item distribution; realised on the same test targets). Metrics "
                "rank the whole "
                "catalogue, history items included; jaxrec's ranked list comes from "
                f"{cfg.num_beams}-beam constrained search, so ranks past {cfg.num_beams} "
                "count as misses." + _parts_text(systems, result)
            )),
            ("Timings (seconds)", "\n".join(f"- {k}: {v}" for k, v in timings.items())),
        ]  # fmt: skip
        paths = report.write_report(out_dir, systems, loss, "jaxrec demo (synthetic)", sections)
    timings["total"] = round(time.perf_counter() - t0, 1)
    with open(os.path.join(out_dir, "timings.json"), "w") as f:
        json.dump(timings, f, indent=2)
    log.info("demo finished in %.0f s: %s", timings["total"], paths["report"])
    return {"systems": systems, "paths": paths, "timings": timings, "loss": loss}


def _parts_text(systems: dict, result: dict) -> str:
    """What each part of a hybrid ranking gives (empty for the generative ranking alone)."""
    if "jaxrec_generative" not in systems:
        return ""
    gen, dense = systems["jaxrec_generative"], systems["jaxrec_dense"]
    return (
        f" jaxrec's ranking is the hybrid one: the beams' items re-scored by the dense item "
        f"head with weight {result['fusion_weight']:g} (chosen on validation; 0 = the beams' "
        f"order). Its parts on the same users: the beams alone (jaxrec_generative) Recall@10 "
        f"{gen['recall@10']:.4f}, the head alone over the whole catalogue (jaxrec_dense, "
        f"SASRec-like, no beams) {dense['recall@10']:.4f}. An item the beams do not reach is "
        "never recommended."
    )


def _setting_text(ds, cfg: DemoConfig, mixture: str, index_report: dict) -> str:
    return (
        f"- data: synthetic default, {ds.num_users} users, {ds.num_items} items, "
        f"{ds.num_interactions} interactions, leave-one-out split (seed {cfg.seed})\n"
        f"- semantic ids: RQ-VAE {cfg.index_levels} levels x {cfg.index_codes} codes on "
        f"`{cfg.index_embeddings}` item embeddings"
        + (
            " (transitions: from the training interactions only)"
            if "transitions" in cfg.index_embeddings
            else ""
        )
        + f", {index_report.get('collisions_before_resolution')} collisions before "
        f"resolution, {index_report.get('collisions')} after\n"
        + (
            f"- training: {mixture}: causal encoder over each user's item sequence, every "
            f"next-item target in one pass, model `{cfg.model}` {dict(cfg.model_overrides)}, "
            f"dropout {cfg.generative_dropout:g} in the encoder and "
            f"{cfg.generative_decoder_dropout:g} in the decoder, "
            + (
                f"auxiliary next-item loss (weight {cfg.next_item_loss:g}), "
                if cfg.next_item_loss and cfg.item_id_inputs
                else ""
            )
            + f"AdamW (weight decay {cfg.generative_weight_decay:g}), {cfg.generative_epochs:g} "
            f"epochs with a cosine schedule, selection on {cfg.validation_users} validation "
            f"users every {cfg.generative_eval_epochs:g} epochs\n"
            if cfg.recipe == "prefix_shared"
            else f"- training: mixture `{mixture}` ({', '.join(cfg.tasks)}), model "
            f"`{cfg.model}`, {cfg.train_steps} steps of batch {cfg.batch_size}, AdamW + "
            "cosine schedule\n"
        )
        + f"- evaluation: test split, constrained beam search ({cfg.num_beams} beams)"
        + (
            ", the beams' items re-scored by the dense item head (hybrid)"
            if cfg.hybrid and cfg.recipe == "prefix_shared"
            else ""
        )
    )

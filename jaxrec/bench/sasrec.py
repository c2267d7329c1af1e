"""SASRec baseline benchmark: packed rows vs padded-per-user rows, and Beauty accuracy.

    python -m jaxrec.bench sasrec [--quick] [--data DIR] [--no-train]

1. Epoch time of the packed implementation (users packed into rows, segment-causal attention)
   vs the padded one (one user window per row of `max_len`), same model and inputs: median
   seconds per training step after warm-up (compilation reported separately) × steps per epoch.
2. The two layouts' mean cross-entropy on the same users with the same parameters (they must
   agree to float precision).
3. A full packed training run with early stopping on validation NDCG@10, then test Recall@10 /
   NDCG@10 under both ranking conventions (all items ranked; history items excluded) and the
   run time.

Data: P5 / S3-Rec Beauty (`amazon2014/Beauty.txt` + `Beauty_item2attributes.json`), leave-one-out
via `build_dataset`. `--quick` uses the first 2,000 users and a few epochs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time

import jax
import numpy as np
import optax

from jaxrec.baselines import packing, sasrec
from jaxrec.data import formats, processing
from jaxrec.data.dataset import Dataset

DEFAULT_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data")
log = logging.getLogger("jaxrec.bench.sasrec")


def load_beauty(data_dir: str, max_users: int | None = None) -> Dataset:
    """P5 Beauty as a leave-one-out Dataset (seeded shuffled item ids, no fixed negatives)."""
    base = os.path.join(data_dir, "amazon2014")
    inter = formats.read_sequence_txt(os.path.join(base, "Beauty.txt"))
    if max_users:
        keep = set(list(dict.fromkeys(inter.users))[:max_users])
        sub = formats.Interactions(source=inter.source, positions_only=inter.positions_only)
        for k, u in enumerate(inter.users):
            if u in keep:
                sub.append(u, inter.items[k], inter.ratings[k], inter.timestamps[k])
        inter = sub
    meta = formats.read_item2attributes(os.path.join(base, "Beauty_item2attributes.json"))
    opts = processing.PrepareOptions(kcore=0 if max_users else 5, num_negatives=0)
    return processing.build_dataset(inter, meta, "Beauty", opts)


def _median_step_seconds(step, params, opt_state, batches_list, reps: int):
    """Median wall time of one training step (after one warm-up step that compiles)."""
    key = jax.random.PRNGKey(0)
    t0 = time.perf_counter()
    params, opt_state, loss, _ = step(params, opt_state, batches_list[0], key)
    jax.block_until_ready(loss)
    compile_s = time.perf_counter() - t0
    times = []
    for i in range(reps):
        batch = batches_list[(i + 1) % len(batches_list)]
        t0 = time.perf_counter()
        params, opt_state, loss, _ = step(params, opt_state, batch, key)
        jax.block_until_ready(loss)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), compile_s


def compare_layouts(ds: Dataset, cfg: sasrec.SASRecConfig, reps: int, loss_users: int) -> dict:
    """Step-time and loss comparison of packed vs padded rows on the same data."""
    model = sasrec.SASRec(cfg)
    windows = packing.training_windows(ds, cfg.max_len)
    layouts = {
        "packed": packing.pack_rows(windows, cfg.row_len),
        "padded": packing.pad_rows(windows, cfg.max_len),
    }
    out: dict = {"windows": len(windows), "targets": layouts["packed"].num_tokens}
    optimizer = optax.adam(cfg.learning_rate)
    for name, rows in layouts.items():
        step = sasrec.make_train_step(model, optimizer)
        params = sasrec.init_params(model, cfg.seed)
        rng = np.random.default_rng(0)
        batch_list = [
            b
            for _, b in zip(
                range(reps + 1), sasrec.batches(rows, cfg.batch_rows, rng), strict=False
            )
        ]
        med, compile_s = _median_step_seconds(
            step, params, optimizer.init(params), batch_list, reps
        )
        steps = -(-len(rows.inputs) // cfg.batch_rows)
        out[name] = {
            "rows": len(rows.inputs),
            "fill": rows.num_tokens / rows.inputs.size,
            "steps_per_epoch": steps,
            "step_seconds_median": med,
            "epoch_seconds_est": med * steps,
            "compile_seconds": compile_s,
        }
        log.info("%s: %s", name, out[name])
    out["padded_over_packed_epoch_time"] = (
        out["padded"]["epoch_seconds_est"] / out["packed"]["epoch_seconds_est"]
    )
    # Loss equality on the same users with the same (initial) parameters, dropout off.
    sub = packing.training_windows(ds, cfg.max_len, users=range(min(loss_users, ds.num_users)))
    params = sasrec.init_params(model, cfg.seed)
    fn = sasrec.make_loss_fn(model)
    packed_loss = sasrec.dataset_loss(model, params, packing.pack_rows(sub, cfg.row_len), 64, fn)
    padded_loss = sasrec.dataset_loss(model, params, packing.pad_rows(sub, cfg.max_len), 64, fn)
    out["loss_packed"] = packed_loss
    out["loss_padded"] = padded_loss
    out["loss_rel_diff"] = abs(packed_loss - padded_loss) / abs(padded_loss)
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxrec.bench sasrec")
    parser.add_argument("--quick", action="store_true", help="2,000 users, few epochs")
    parser.add_argument("--data", default=os.path.normpath(DEFAULT_DATA))
    parser.add_argument("--no-train", action="store_true", help="timing and loss check only")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--patience", type=int, default=None)
    parser.add_argument("--reps", type=int, default=None, help="timed steps per layout")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--batch-rows", type=int, default=32, help="packed rows of 50 per step")
    parser.add_argument("--eval-every", type=int, default=None)
    parser.add_argument("--max-minutes", type=float, default=None, help="training time budget")
    args = parser.parse_args(argv)
    from jaxrec.cli import quiet

    quiet.configure_logging(fmt="%(asctime)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    ds = load_beauty(args.data, 2000 if args.quick else None)
    prep_s = time.perf_counter() - t0
    cfg = sasrec.SASRecConfig(
        num_items=ds.num_items,
        seed=args.seed,
        epochs=args.epochs or (5 if args.quick else 200),
        patience=args.patience or (3 if args.quick else 5),
        learning_rate=args.learning_rate,
        batch_rows=args.batch_rows,
        eval_every=args.eval_every or (1 if args.quick else 2),
        max_seconds=args.max_minutes * 60 if args.max_minutes else None,
    )
    result: dict = {
        "benchmark": "sasrec",
        "quick": args.quick,
        "dataset": {"users": ds.num_users, "items": ds.num_items, "prepare_seconds": prep_s},
        "config": {k: v for k, v in vars(cfg).items() if k != "num_items"},
    }
    result["layouts"] = compare_layouts(
        ds, cfg, args.reps or (3 if args.quick else 5), loss_users=500 if args.quick else 2000
    )
    result["speedup_packed_vs_padded"] = result["layouts"]["padded_over_packed_epoch_time"]
    if not args.no_train:
        model, res = sasrec.train(ds, cfg, packed=True)
        t1 = time.perf_counter()
        test = sasrec.evaluate(model, res.params, ds, "test", exclude_history=None)
        result["train"] = {
            "seconds": res.seconds,
            "test_eval_seconds": time.perf_counter() - t1,
            "epochs_run": res.epochs_run,
            "best_epoch": res.best_epoch,
            "best_valid_ndcg@10": res.best_valid_ndcg10,
            "epoch_seconds_median": statistics.median(res.epoch_seconds),
        }
        result["test"] = test
        for conv, metrics in test.items():
            log.info("test (%s): %s", conv, {k: round(v, 4) for k, v in metrics.items()})
    result["total_seconds"] = time.perf_counter() - t0
    print(json.dumps(result))
    return 0

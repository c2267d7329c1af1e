"""Benchmark: examples/s through the seqio pipeline for the Beauty mixture.

    python -m jaxrec.bench tasks [--quick] [--dataset DIR] [--mixture cao|lcrec] [--pack]

Data: P5 Beauty (`../shared/data/amazon2014/Beauty.txt`, prepared with the default options)
with LC-Rec's released semantic ids re-keyed to our item ids, unless `--dataset` names a
prepared dataset with an index. There is no named peer; the reference is the raw Python
preprocessing alone (building the text examples), timed in the same run:

  python_preprocess_eps   text examples built per second (all tasks of the mixture)
  python_tokenize_eps     the same examples tokenized in Python (`vocab.encode`), for scale
  seqio_pipeline_eps      steady state of `seqio.get_dataset(mixture, EncDecFeatureConverter)`:
                          tf.data tokenization + EOS + trimming + conversion (+ packing)
  first_epoch_eps         both costs together (examples are built once, then cached)
  ratio                   seqio_pipeline_eps / python_preprocess_eps
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time

import numpy as np

log = logging.getLogger(__name__)

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data")


def _subset(ds, num_users: int):
    from jaxrec.data.dataset import Dataset

    keep = range(min(num_users, ds.num_users))
    return Dataset(
        name=ds.name,
        users=[ds.users[u] for u in keep],
        sequences=[ds.sequences[u] for u in keep],
        items=ds.items,
        ratings=None if ds.ratings is None else [ds.ratings[u] for u in keep],
        negatives=None if ds.negatives is None else ds.negatives[: len(keep)],
        metadata=ds.metadata,
    )


def prepare_beauty(out_dir: str, num_users: int | None) -> str:
    """Prepared P5 Beauty + re-keyed LC-Rec index in `out_dir` (cached)."""
    from jaxrec.data import formats, processing
    from jaxrec.data.canonical import write_dataset
    from jaxrec.indexing.item_index import ItemIndex

    if os.path.exists(os.path.join(out_dir, "Beauty.index.json")):
        return out_dir
    shared = os.path.abspath(SHARED)
    inter = formats.read_sequence_txt(os.path.join(shared, "amazon2014", "Beauty.txt"))
    ds = processing.build_dataset(inter, None, "Beauty")
    if num_users:
        ds = _subset(ds, num_users)
    released = ItemIndex.from_json(os.path.join(shared, "lcrec", "Beauty.index.json"))
    index = ItemIndex(tuple(released.tokens[int(it.original_id) - 1] for it in ds.items))
    write_dataset(ds, out_dir)
    index.to_json(os.path.join(out_dir, "Beauty.index.json"), dataset=ds)
    return out_dir


def _median_time(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxrec.bench tasks")
    parser.add_argument("--quick", action="store_true", help="2,000 users, fewer examples")
    parser.add_argument("--dataset", help="prepared dataset dir with {name}.index.json")
    parser.add_argument("--mixture", default="cao", choices=("cao", "lcrec"))
    parser.add_argument("--item-repr", default="sid")
    parser.add_argument("--examples", type=int, help="examples timed through seqio")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pack", action="store_true", help="pack examples (EncDec converter)")
    parser.add_argument("--spm", help="SentencePiece model (default: train one on the data)")
    args = parser.parse_args(argv)
    from jaxrec.cli import quiet

    quiet.configure_logging(fmt="%(asctime)s %(name)s: %(message)s")

    import seqio

    from jaxrec.tasks import examples as ex_lib
    from jaxrec.tasks import registry

    num_users = 2000 if args.quick else None
    n_pipeline = args.examples or (3000 if args.quick else 20000)
    cache = os.path.join(os.path.expanduser("~"), ".cache", "jaxrec", "bench")
    data_dir = args.dataset or prepare_beauty(
        os.path.join(cache, "beauty_quick" if args.quick else "beauty"), num_users
    )
    names = registry.register_dataset_tasks(
        data_dir, name="bench", item_repr=args.item_repr, spm_path=args.spm,
        cache_dir=os.path.join(cache, "spm"),
    )  # fmt: skip
    mixture = f"bench_{args.item_repr}_{args.mixture}"
    if mixture not in names:
        raise SystemExit(f"{mixture} was not registered (tasks: {names})")
    source = registry.source_of(mixture)
    tasks = [t.name.split("_", 2)[-1] for t in seqio.get_mixture_or_task(mixture).tasks]

    def build_all():
        return [
            e
            for t in tasks
            for e in ex_lib.build_examples(
                t, source.dataset, source.renderer, "train", source.options, source.user_info
            )
        ]

    t_py, built = _median_time(build_all, args.repeats)
    python_eps = len(built) / t_py
    vocab = source.vocabulary
    rng = np.random.default_rng(0)
    sample = [built[i] for i in rng.choice(len(built), min(n_pipeline, len(built)), False)]
    vocab.encode("warm up")
    t_tok, _ = _median_time(
        lambda: [(vocab.encode(e.inputs), vocab.encode(e.targets)) for e in sample], args.repeats
    )
    tokenize_eps = len(sample) / t_tok

    lengths = {"inputs": 512, "targets": 64}
    converter = seqio.EncDecFeatureConverter(pack=args.pack)
    batch = 64

    def count(b) -> int:
        if args.pack:
            return int(b["decoder_segment_ids"].max(axis=1).sum())
        return len(b["decoder_target_tokens"])

    t0 = time.perf_counter()
    for t in tasks:  # examples are built once per source, then cached
        source.examples(t, "train")
    ds = seqio.get_dataset(mixture, lengths, dataset_split="train", shuffle=True, seed=0,
                           num_epochs=None, feature_converter=converter)  # fmt: skip
    it = ds.batch(batch).as_numpy_iterator()
    for _ in range(20):  # trace graphs, fill the per-task shuffle buffers
        next(it)
    warmup = time.perf_counter() - t0
    times, counts = [], []
    for _ in range(args.repeats):  # consecutive windows of the same stream: steady state
        t0 = time.perf_counter()
        counts.append(sum(count(next(it)) for _ in range(max(1, n_pipeline // batch))))
        times.append(time.perf_counter() - t0)
    pipeline_eps = statistics.median(c / t for c, t in zip(counts, times, strict=True))
    result = {
        "benchmark": "tasks",
        "mixture": mixture,
        "tasks": tasks,
        "users": source.dataset.num_users,
        "train_examples": len(built),
        "pipeline_examples": int(np.median(counts)),
        "pack": args.pack,
        "vocab_size": vocab.vocab_size,
        "python_preprocess_eps": round(python_eps, 1),
        "python_tokenize_eps": round(tokenize_eps, 1),
        "seqio_pipeline_eps": round(pipeline_eps, 1),
        "first_epoch_eps": round(1.0 / (1.0 / python_eps + 1.0 / pipeline_eps), 1),
        "ratio": round(pipeline_eps / python_eps, 3),
        "warmup_s": round(warmup, 2),
        "repeats": args.repeats,
    }
    print(json.dumps(result))
    return 0

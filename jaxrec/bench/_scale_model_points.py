"""Points of `python -m jaxrec.bench scale` that run a network: the trie and constrained search
(`decode`), training of the semantic-id recipe (`train`) and full-catalogue evaluation
(`eval`). See `jaxrec.bench._scale_points` for how a point runs.

Catalogues of any size are planted as distinct random semantic ids (`levels` x 256 codes,
uniform: every level's fan-out is as large as the codebook allows, the search's worst case).
"""

from __future__ import annotations

import logging
import os
import statistics
import time

import numpy as np

from jaxrec.bench._scale_points import SHARED, Phases, memory

log = logging.getLogger("jaxrec.bench.scale")

BEAUTY_INDEX = os.path.join(SHARED, "lcrec", "Beauty.index.json")
EOS, RESERVED, CODES = 1, 3, 256


def planted_codes(num_items: int, levels: int = 4, codes: int = CODES, seed: int = 0):
    """[num_items, levels] distinct codes in [0, codes), uniformly random (seeded)."""
    rng = np.random.default_rng(seed)
    space = codes**levels
    if space >= 2**62:  # long ids: no int64 key; draw each level, redraw duplicate rows
        out = rng.integers(0, codes, (num_items, levels))
        while True:
            _, first = np.unique(out, axis=0, return_index=True)
            dup = np.setdiff1d(np.arange(num_items), first)
            if not len(dup):
                return out.astype(np.int32)
            out[dup] = rng.integers(0, codes, (len(dup), levels))
    if num_items > space:
        raise ValueError(f"{num_items} items do not fit {levels} levels x {codes} codes")
    if space <= 4 * num_items:
        keys = rng.permutation(space)[:num_items]
    else:
        keys = np.unique(rng.integers(0, space, num_items + num_items // 8 + 64))
        while len(keys) < num_items:
            keys = np.unique(np.concatenate([keys, rng.integers(0, space, num_items)]))
        keys = rng.permutation(keys)[:num_items]
    powers = codes ** np.arange(levels - 1, -1, -1, dtype=np.int64)
    return ((keys[:, None] // powers) % codes).astype(np.int32)


def token_ids(codes: np.ndarray) -> np.ndarray:
    """Codes [n, L] -> the token ids of a vocabulary of every level's codes (pad/EOS/unk
    first, then level a's codes, level b's, ...)."""
    return (RESERVED + np.arange(codes.shape[1]) * CODES + codes).astype(np.int32)


def beauty_token_ids() -> np.ndarray:
    """The real Beauty index (12,101 items, 13 collisions) as token ids [n, 4]."""
    from jaxrec.indexing.schemes import codes_from_index, load_index

    index = load_index(BEAUTY_INDEX, resolve=False)
    return token_ids(codes_from_index(index))


def table_bytes(table) -> int:
    arrays = (table.offsets, table.tokens, table.targets, table.leaf_items, table.depth)
    groups = table.leaf_groups
    return int(sum(a.nbytes for a in arrays) + groups.nodes.nbytes + groups.starts.nbytes
               + groups.members.nbytes)  # fmt: skip


def _tiger_model(vocab_size: int, seed: int = 0, name: str = "tiger"):
    """TIGER's T5 shape (bench `decode`'s model; `tiny` for smoke tests), seeded random
    weights."""
    import jax
    import jax.numpy as jnp
    from flax.linen import meta

    from jaxrec.models.configs import get_config
    from jaxrec.models.network import Transformer

    model = Transformer(get_config(name, vocab_size=vocab_size).without_dropout())
    x = jnp.ones((1, 8), jnp.int32)
    params = model.init(jax.random.PRNGKey(seed), x, x, x, enable_dropout=False)["params"]
    return model, meta.unbox(params)


def point_decode(p: dict) -> dict:
    """Prefix-table build time and bytes for `size` planted items, and constrained-search
    queries/s against the real Beauty catalogue (same model, batch and shapes), alternating
    the two searches in every repetition."""
    import jax

    from jaxrec.indexing.trie import build_prefix_table
    from jaxrec.inference.decoding import Constraint, sequences_to_items
    from jaxrec.inference.generation import make_generate_fn

    n, levels = int(p["size"]), int(p.get("levels", 4))
    batch, beams, history = int(p.get("batch", 16)), int(p.get("beams", 20)), 20
    reps = int(p.get("reps", 5))
    phases = Phases()
    with phases("codes"):
        seqs = token_ids(planted_codes(n, levels))
    with phases("trie_build"):
        table = build_prefix_table(seqs, EOS)
    ref_seqs = beauty_token_ids()
    ref_table = build_prefix_table(ref_seqs, EOS)
    model, params = _tiger_model(RESERVED + levels * CODES, name=p.get("model", "tiger"))
    rng = np.random.default_rng(1)
    cases = {}
    for name, s, t in (("beauty", ref_seqs, ref_table), ("catalogue", seqs, table)):
        hist = rng.integers(0, len(s), (batch, history))
        enc = jax.numpy.asarray(s[hist].reshape(batch, -1))  # [batch, history * levels]
        gen = make_generate_fn(model, EOS, beams, beams, max_decode_len=t.max_length)
        cases[name] = (gen, enc, Constraint.from_table(t), t)
    with phases("compile"):
        for gen, enc, con, _ in cases.values():
            jax.block_until_ready(gen(params, enc, con))
    times = {name: [] for name in cases}
    lookup = []
    with phases("search"):
        for _ in range(reps):
            for name, (gen, enc, con, t) in cases.items():
                t0 = time.perf_counter()
                out = jax.block_until_ready(gen(params, enc, con))
                times[name].append(time.perf_counter() - t0)
                if name == "catalogue":
                    t0 = time.perf_counter()
                    sequences_to_items(np.asarray(out[0]), np.asarray(out[1]), t)
                    lookup.append(time.perf_counter() - t0)
    qps = {name: batch / statistics.median(v) for name, v in times.items()}
    return {
        "items": n,
        "levels": levels,
        "trie_nodes": table.num_nodes,
        "trie_bytes": table_bytes(table),
        "trie_max_children": table.max_children,
        "trie_build_seconds": phases.record["trie_build"]["seconds"],
        "batch": batch,
        "beams": beams,
        "qps": round(qps["catalogue"], 3),
        "beauty_qps": round(qps["beauty"], 3),
        "qps_ratio_vs_beauty": round(qps["catalogue"] / qps["beauty"], 4),
        "items_lookup_ms_per_batch": round(1e3 * statistics.median(lookup), 3),
        "phases": phases.record,
    }


def planted_dataset(num_users: int, num_items: int, seed: int = 0):
    """A Dataset of `num_users` users with 5 + Poisson(7) random items each (no text)."""
    from jaxrec.data.dataset import Dataset, Item

    rng = np.random.default_rng(seed)
    lengths = 5 + rng.poisson(7, num_users)
    flat = rng.integers(0, num_items, int(lengths.sum()), dtype=np.int32)
    sequences = np.split(flat, np.cumsum(lengths)[:-1])
    items = [Item(original_id=str(i)) for i in range(num_items)]
    return Dataset("planted", [str(u) for u in range(num_users)], sequences, items)


def _recommender(codes: np.ndarray, model: str = "tiger"):
    from jaxrec.indexing.schemes import semantic_index
    from jaxrec.indexing.sid_vocab import SidVocabulary
    from jaxrec.models.configs import get_config
    from jaxrec.recipes.sid_retrieval import SidRetrieval, TrainSettings

    vocab = SidVocabulary.from_index(semantic_index(codes))
    settings = TrainSettings()
    config = get_config(model, vocab_size=vocab.padded_vocab_size(), encoder_causal=True)
    return SidRetrieval(config, vocab, settings.history, settings.item_inputs), vocab, settings


def point_train(p: dict) -> dict:
    """targets/s of the semantic-id recipe's training (prefix-shared rows, its default
    settings) for `size` users and `levels`-token ids; compilation excluded."""
    from jaxrec import partitioning
    from jaxrec.recipes.sid_retrieval import TrainingData

    users, levels = int(p["size"]), int(p.get("levels", 4))
    num_items, steps = int(p.get("items", 12_101)), int(p.get("steps", 10))
    phases = Phases()
    with phases("dataset"):
        ds = planted_dataset(users, num_items)
        rec, vocab, settings = _recommender(
            planted_codes(num_items, levels), p.get("model", "tiger")
        )
    with phases("rows"):
        data = TrainingData(ds, vocab, settings)
    setup, step = rec.trainer_for(settings)
    state = rec.init_state(setup, 0)
    batches = data.batches(0)
    lr = np.asarray(1e-3, np.float32)
    with partitioning.mesh_context(rec.mesh, rec.rules):
        with phases("compile"):
            for _ in range(2):
                state, metrics = step(state, partitioning.shard_batch(next(batches), rec.mesh), lr)
                jax_block(metrics)
        targets, seconds = 0, []
        with phases("steps"):
            for _ in range(steps):
                host = next(batches)
                t0 = time.perf_counter()
                state, metrics = step(state, partitioning.shard_batch(host, rec.mesh), lr)
                jax_block(metrics)
                seconds.append(time.perf_counter() - t0)
                targets += int((host["decoder_target_tokens"] == vocab.eos_id).sum())
    per_step = statistics.median(seconds)
    return {
        "users": users,
        "levels": levels,
        "interactions": ds.num_interactions,
        "targets": data.num_targets,
        "rows": data.num_rows,
        "batch_rows": settings.batch_size,
        "targets_per_step": round(targets / steps, 2),
        "s_per_step": round(per_step, 4),
        "targets_per_s": round(targets / steps / per_step, 1),
        "phases": phases.record,
    }


def jax_block(tree) -> None:
    import jax

    jax.block_until_ready(tree)


def point_eval(p: dict) -> dict:
    """users/s of full-catalogue evaluation (`SidRetrieval.evaluate`: 20-beam search over the
    whole catalogue's trie, Recall/NDCG) with a catalogue of `size` planted items (or the real
    Beauty index with `beauty`), untrained weights."""
    n = int(p["size"])
    users = int(p.get("users", 512))
    phases = Phases()
    with phases("catalogue"):
        if p.get("beauty"):
            from jaxrec.indexing.schemes import codes_from_index, load_index

            codes = codes_from_index(load_index(BEAUTY_INDEX))
        else:
            codes = planted_codes(n, int(p.get("levels", 4)))
        rec, vocab, settings = _recommender(codes, p.get("model", "tiger"))
        ds = planted_dataset(users, len(codes))
    setup, _ = rec.trainer_for(settings)
    params = rec.init_state(setup, 0).params
    with phases("compile"):
        rec.evaluate(params, ds, "test", users=np.arange(32), batch_size=32)
    with phases("evaluate"):
        metrics = rec.evaluate(params, ds, "test", batch_size=32)
    seconds = phases.record["evaluate"]["seconds"]
    return {
        "items": len(codes),
        "users": users,
        "users_per_s": round(users / seconds, 2),
        "invalid_rate": metrics["invalid_rate"],
        "trie_bytes": table_bytes(rec.table),
        "phases": phases.record,
        **memory(),
    }


POINTS = {"decode": point_decode, "train": point_train, "eval": point_eval}

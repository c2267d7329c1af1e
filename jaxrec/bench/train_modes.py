"""Training throughput of the generative-retrieval layouts, in next-item targets per second.

Part of `python -m jaxrec.bench train`. One target = one (history, next item) pair, the unit
TIGER trains on. Layouts (same network weights, AdamW, batches from the same user windows
whose lengths follow Beauty's: 131,413 targets over 22,363 users, at most 20 per window):

  tiger          per prefix, 20 history items x 4 tokens = 80 encoder tokens (TIGER's input)
  per_prefix     per prefix, one encoder position per history item (20 positions)
  prefix_shared  users packed into rows of 20 positions, causal encoder, every target of a
                 row in one pass (`jaxrec.recipes.prefix_shared`)
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from jaxrec.baselines import packing
from jaxrec.recipes import prefix_shared

HISTORY = 20
MEAN_TARGETS_PER_USER = 131_413 / 22_363


def beauty_like_windows(num_users: int, num_items: int, seed: int = 0) -> list[np.ndarray]:
    """Item windows with Beauty's mean number of targets per user (geometric lengths)."""
    rng = np.random.default_rng(seed)
    targets = np.minimum(rng.geometric(1.0 / MEAN_TARGETS_PER_USER, num_users), HISTORY)
    return [rng.integers(0, num_items, t + 1) for t in targets]


def mode_arrays(mode: str, windows, codes) -> dict[str, np.ndarray]:
    """All training rows of the windows in one layout."""
    if mode == "prefix_shared":
        arrays = prefix_shared.shared_batch(packing.pack_rows(windows, HISTORY), codes, 1)
    else:
        hist, tgt = prefix_shared.prefix_examples(windows)
        arrays = prefix_shared.per_prefix_batch(hist, tgt, codes, 1, HISTORY)
        if mode == "tiger":
            arrays = prefix_shared.to_token_level(arrays)
    return arrays


def mode_batches(mode: str, windows, codes, batch_rows: int, n: int) -> list[dict]:
    """`n` batches of `batch_rows` rows of one layout (cycling through its rows)."""
    arrays = mode_arrays(mode, windows, codes)
    rows = len(arrays["decoder_target_tokens"])
    out = []
    for i in range(n):
        idx = np.arange(i * batch_rows, (i + 1) * batch_rows) % rows
        out.append({k: v[idx] for k, v in arrays.items()})
    return out


def _step_fn(model, tx):
    import jax
    import jax.numpy as jnp
    import optax

    keys = ("encoder_segment_ids", "decoder_segment_ids", "decoder_cross_positions")

    def loss_fn(p, b, key):
        logits = model.apply(
            {"params": p}, b["encoder_input_tokens"], b["decoder_input_tokens"],
            b["decoder_target_tokens"], enable_dropout=True, rngs={"dropout": key},
            **{k: b[k] for k in keys if k in b},
        )  # fmt: skip
        w = (b["decoder_target_tokens"] > 0).astype(jnp.float32)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, b["decoder_target_tokens"])
        return (ce * w).sum() / w.sum()

    def step(p, s, b, key):
        loss, g = jax.value_and_grad(loss_fn)(p, b, key)
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s, loss

    return jax.jit(step, donate_argnums=(0, 1))


def time_modes(cfg, params, reps: int = 3, steps: int = 3, shared_rows: int = 32) -> dict:
    """targets/s of each layout (median over `reps` of `steps` steps), compile excluded.

    Per-prefix layouts use batches of 64 examples (the standard train setting);
    prefix-shared uses `shared_rows` packed rows (about 10 targets per row).
    """
    import jax
    import jax.numpy as jnp
    import optax

    from jaxrec.models.network import Transformer

    levels = 4
    codes = np.random.default_rng(1).integers(3, cfg.vocab_size, (12_101, levels))
    windows = beauty_like_windows(2_000, len(codes))
    out = {}
    for mode in ("tiger", "per_prefix", "prefix_shared"):
        model = Transformer(cfg.replace(encoder_causal=mode != "tiger"))
        tx = optax.adamw(1e-3, weight_decay=0.01)
        rows = shared_rows if mode == "prefix_shared" else 64
        batches = mode_batches(mode, windows, codes.astype(np.int32), rows, 4)
        p = jax.tree.map(jnp.asarray, params)
        s = tx.init(p)
        step = _step_fn(model, tx)
        key = jax.random.key(0)
        p, s, loss = step(p, s, batches[0], key)
        float(loss)
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            for i in range(steps):
                p, s, loss = step(p, s, batches[i % 4], jax.random.fold_in(key, i))
            float(loss)
            times.append((time.perf_counter() - t) / steps)
        per_step = statistics.median(times)
        targets = statistics.mean(
            int((b["decoder_target_tokens"] == 1).sum()) for b in batches
        )  # one EOS per target
        out[mode] = {
            "rows_per_step": rows,
            "targets_per_step": round(targets, 1),
            "s_per_step": round(per_step, 4),
            "targets_per_s": round(targets / per_step, 1),
        }
    base = out["tiger"]["targets_per_s"]
    for mode in out:
        out[mode]["speedup_vs_tiger_layout"] = round(out[mode]["targets_per_s"] / base, 2)
    return out

"""SASRec (Kang & McAuley 2018) in Flax, trained with cross-entropy over all items.

The strong variant: softmax cross-entropy over the whole catalogue at every position (every
position of a training window is a next-item target in one forward pass), with users packed
several to a row under segment-causal attention (see `packing.py`), which gives the same loss as
padding each user to `max_len` at a fraction of the cost. Early stopping on validation NDCG@10;
full ranking over all items on test.

Architecture: item embeddings (scaled by sqrt(d), tied with the output layer) + learned
positions → `num_blocks` pre-LayerNorm Transformer blocks (causal self-attention, GELU MLP) →
final LayerNorm → logits = h · E_itemsᵀ.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrec.baselines import packing, ranking
from jaxrec.data.dataset import Dataset

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SASRecConfig:
    """Model and training hyper-parameters (defaults: the usual SASRec-CE setting)."""

    num_items: int
    d_model: int = 64
    num_blocks: int = 2
    num_heads: int = 1
    mlp_dim: int = 256
    max_len: int = 50
    dropout: float = 0.5
    attention_dropout: float = 0.5
    learning_rate: float = 1e-3
    batch_rows: int = 64
    row_len: int = 50
    epochs: int = 200
    patience: int = 10
    eval_every: int = 1
    eval_batch: int = 1024
    seed: int = 0
    max_seconds: float | None = None  # wall-clock training budget (stops after an epoch)
    warmup_steps: int = 0  # linear learning-rate warm-up, then `schedule`
    schedule: str = "constant"  # or "cosine": to 0 at the end of `epochs`
    clip_norm: float | None = None  # global gradient-norm clipping


class _Block(nn.Module):
    cfg: SASRecConfig

    @nn.compact
    def __call__(self, x, mask, deterministic: bool):  # x: [batch, len, d]
        cfg = self.cfg
        h = nn.LayerNorm()(x)
        h = nn.MultiHeadDotProductAttention(
            num_heads=cfg.num_heads,
            qkv_features=cfg.d_model,
            dropout_rate=cfg.attention_dropout,
            deterministic=deterministic,
        )(h, h, mask=mask)
        x = x + nn.Dropout(cfg.dropout)(h, deterministic=deterministic)
        h = nn.LayerNorm()(x)
        h = nn.Dense(cfg.mlp_dim)(h)
        h = nn.gelu(h)
        h = nn.Dropout(cfg.dropout)(h, deterministic=deterministic)
        h = nn.Dense(cfg.d_model)(h)
        return x + nn.Dropout(cfg.dropout)(h, deterministic=deterministic)


def segment_causal_mask(segments):
    """[batch, 1 (heads), len, len] attention mask of packed rows (segments [batch, len], 0 =
    padding): a position sees itself and earlier positions of its own segment. Padding
    queries attend to themselves only, which keeps their softmax finite."""
    length = segments.shape[1]
    valid = segments > 0
    causal = jnp.arange(length)[:, None] >= jnp.arange(length)[None, :]  # [len, len]
    same = segments[:, :, None] == segments[:, None, :]  # [batch, len, len]
    mask = (causal[None] & same & valid[:, None, :]) | jnp.eye(length, dtype=bool)[None]
    return mask[:, None]


class SASRec(nn.Module):
    """Hidden states [batch, len, d] for token inputs (item id + 1; 0 = padding)."""

    cfg: SASRecConfig

    def setup(self):
        cfg = self.cfg
        init = nn.initializers.normal(stddev=0.02)
        self.item_embed = nn.Embed(cfg.num_items + 1, cfg.d_model, embedding_init=init)
        self.pos_embed = nn.Embed(cfg.max_len, cfg.d_model, embedding_init=init)
        self.blocks = [_Block(cfg) for _ in range(cfg.num_blocks)]
        self.final_norm = nn.LayerNorm()
        self.drop = nn.Dropout(cfg.dropout)

    def __call__(self, inputs, segments, positions, deterministic: bool = True):
        # inputs, segments, positions: [batch, len]
        valid = segments > 0
        x = self.item_embed(inputs) * jnp.sqrt(float(self.cfg.d_model))
        x = x + self.pos_embed(positions)
        x = self.drop(x, deterministic=deterministic) * valid[..., None]
        mask = segment_causal_mask(segments)
        for block in self.blocks:
            x = block(x, mask, deterministic) * valid[..., None]
        return self.final_norm(x)

    def item_logits(self, hidden):
        """[..., num_items] scores of every item (tied output embedding; padding row dropped)."""
        return hidden @ self.item_embed.embedding[1:].T

    def target_loss(self, hidden, targets):
        """[...] cross-entropy of the target tokens (item id + 1; 0 gives a finite dummy)."""
        logits = self.item_logits(hidden)  # [..., num_items]
        return optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(targets - 1, 0))


def loss_sum(model: nn.Module, params, rows: dict, rng=None) -> tuple[jax.Array, jax.Array]:
    """(sum of the model's `target_loss` over valid targets, number of valid targets) for a
    batch of rows. Dropout is on when `rng` is given.

    `model` is a `SASRec` or any module with its interface (`__call__` to hidden states,
    `target_loss`, `item_logits`), e.g. `jaxrec.baselines.rpg.RPG`.
    """
    deterministic = rng is None
    rngs = None if deterministic else {"dropout": rng}

    def fwd(m, inputs, segments, positions, targets):
        hidden = m(inputs, segments, positions, deterministic=deterministic)
        return m.target_loss(hidden, targets)  # [batch, len]

    ce = nn.apply(fwd, model)(
        {"params": params}, rows["inputs"], rows["segments"], rows["positions"], rows["targets"],
        rngs=rngs,
    )  # fmt: skip
    weight = (rows["targets"] > 0).astype(jnp.float32)
    return (ce * weight).sum(), weight.sum()


def init_params(model: SASRec, seed: int):
    length = model.cfg.row_len
    dummy = jnp.zeros((1, length), jnp.int32)
    return model.init(jax.random.PRNGKey(seed), dummy, dummy + 1, dummy)["params"]


def make_train_step(model: SASRec, optimizer: optax.GradientTransformation) -> Callable:
    def step(params, opt_state, rows, rng):
        def mean_loss(p):
            total, count = loss_sum(model, p, rows, rng)
            return total / jnp.maximum(count, 1.0), (total, count)

        grads, (total, count) = jax.grad(mean_loss, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, total, count

    return jax.jit(step, donate_argnums=(0, 1))


def batches(rows: packing.Rows, batch_rows: int, rng: np.random.Generator | None):
    """Yield dicts of [batch_rows, row_len] arrays; the last batch is padded with empty rows."""
    order = np.arange(len(rows.inputs)) if rng is None else rng.permutation(len(rows.inputs))
    for start in range(0, len(order), batch_rows):
        idx = order[start : start + batch_rows]
        part = rows.take(idx)
        arrays = dataclasses.asdict(part)
        pad = batch_rows - len(idx)
        if pad:
            arrays = {k: np.pad(v, ((0, pad), (0, 0))) for k, v in arrays.items()}
        yield arrays


def make_loss_fn(model: SASRec) -> Callable:
    """Jitted deterministic (params, rows) -> (loss sum, target count), for `dataset_loss`."""
    return jax.jit(lambda p, r: loss_sum(model, p, r))


def dataset_loss(
    model: SASRec, params, rows: packing.Rows, batch_rows: int, loss_fn: Callable | None = None
) -> float:
    """Mean cross-entropy over every target in `rows` (deterministic).

    Pass `loss_fn` from `make_loss_fn` to reuse its compilation across calls.
    """
    fn = loss_fn or make_loss_fn(model)
    total = count = 0.0
    for batch in batches(rows, batch_rows, None):
        t, c = fn(params, batch)
        total += float(t)
        count += float(c)
    return total / max(count, 1.0)


def _histories(ds: Dataset, split: str) -> list[np.ndarray]:
    end = {"validation": 2, "test": 1}[split]
    return [s[:-end] for s in ds.sequences]


def make_scores_fn(model: SASRec) -> Callable:
    """Jitted (params, [batch, max_len] tokens, [batch] last index) -> [batch, num_items]."""

    def scores(p, tokens, last):
        pos = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
        hidden = model.apply({"params": p}, tokens, (tokens > 0).astype(jnp.int32), pos)
        h_last = jnp.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0]  # [batch, d]
        return model.apply({"params": p}, h_last, method=lambda m, h: m.item_logits(h))

    return jax.jit(scores)


def _scored_batches(model: SASRec, params, hists: list[np.ndarray], scores_fn: Callable):
    """Streams (users [b], scores [b, num_items]) of every user, `eval_batch` at a time (the
    last batch padded, so one shape compiles)."""
    cfg = model.cfg
    for start in range(0, len(hists), cfg.eval_batch):
        users = np.arange(start, min(start + cfg.eval_batch, len(hists)))
        tokens, last = packing.history_batch([hists[u] for u in users], cfg.max_len)
        pad = cfg.eval_batch - len(users)
        tokens = np.pad(tokens, ((0, pad), (0, 0)))
        last = np.pad(last, (0, pad))
        yield users, np.asarray(scores_fn(params, tokens, last))[: len(users)]


def evaluate(
    model: SASRec,
    params,
    ds: Dataset,
    split: str,
    exclude_history: bool | None = None,
    scores_fn: Callable | None = None,
) -> dict[str, dict[str, float]] | dict[str, float]:
    """Full-ranking metrics on `split` for all users.

    With `exclude_history` None, returns both conventions:
    `{"all_items": metrics, "history_excluded": metrics}`; else the one asked for.
    Pass `scores_fn` from `make_scores_fn` to reuse its compilation across calls.
    """
    hists = _histories(ds, split)
    targets = ds.targets(split)
    scores_fn = scores_fn or make_scores_fn(model)

    ranks_all, ranks_excl = [], []
    for users, scores in _scored_batches(model, params, hists, scores_fn):
        t = targets[users]
        if exclude_history in (None, False):
            ranks_all.append(ranking.target_ranks(scores, t))
        if exclude_history in (None, True):
            mask = ranking.history_mask([hists[u] for u in users], t, ds.num_items)
            ranks_excl.append(ranking.target_ranks(scores, t, mask))
    out = {}
    if ranks_all:
        out["all_items"] = ranking.metrics_from_ranks(np.concatenate(ranks_all))
    if ranks_excl:
        out["history_excluded"] = ranking.metrics_from_ranks(np.concatenate(ranks_excl))
    if exclude_history is None:
        return out
    return next(iter(out.values()))


def top_items(
    model: SASRec,
    params,
    ds: Dataset,
    split: str,
    top_k: int,
    exclude_history: bool = False,
    scores_fn: Callable | None = None,
):
    """Streams (users [b], items [b, top_k], scores [b, top_k]) of every user of `split`: the
    `top_k` best-scored items (logits) after the history `evaluate` ranks from, best first;
    with `exclude_history` the history items are left out, as `evaluate` does."""
    hists = _histories(ds, split)
    scores_fn = scores_fn or make_scores_fn(model)
    top_k = min(top_k, ds.num_items)
    for users, scores in _scored_batches(model, params, hists, scores_fn):
        scores = scores.astype(np.float32)
        if exclude_history:
            for row, u in enumerate(users):
                scores[row, np.asarray(hists[u], np.int64)] = -np.inf
        # Best first, ties by lower item id (as `ranking.target_ranks` breaks them).
        items = np.argsort(-scores, axis=1, kind="stable")[:, :top_k]
        yield users, items, np.take_along_axis(scores, items, axis=1)


@dataclasses.dataclass
class TrainResult:
    params: dict
    best_epoch: int
    best_valid_ndcg10: float
    epochs_run: int
    seconds: float
    epoch_seconds: list[float]
    history: list[dict]


def optimizer_for(cfg: SASRecConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    """Adam after `warmup_steps` of linear warm-up to `learning_rate`, then constant or a
    cosine decay to 0 at the end of `epochs`; gradients clipped to `clip_norm` if set."""
    if cfg.schedule not in ("constant", "cosine"):
        raise ValueError(f"schedule {cfg.schedule!r}: expected 'constant' or 'cosine'")
    rate = cfg.learning_rate
    if cfg.schedule == "cosine":
        total = max(cfg.epochs * steps_per_epoch, cfg.warmup_steps + 1)
        rate = optax.warmup_cosine_decay_schedule(0.0, cfg.learning_rate, cfg.warmup_steps, total)
    elif cfg.warmup_steps:  # holds learning_rate once warmed up
        rate = optax.linear_schedule(0.0, cfg.learning_rate, cfg.warmup_steps)
    adam = optax.adam(rate)
    if cfg.clip_norm:
        return optax.chain(optax.clip_by_global_norm(cfg.clip_norm), adam)
    return adam


def train(
    ds: Dataset, cfg: SASRecConfig, packed: bool = True, model: nn.Module | None = None
) -> tuple[nn.Module, TrainResult]:
    """Train with Adam, evaluating validation NDCG@10 every `eval_every` epochs; returns the
    parameters of the best validation epoch (early stopping after `patience` evaluations
    without improvement). `model` defaults to `SASRec(cfg)`; another model of its interface
    (see `loss_sum`) trains the same way."""
    t0 = time.perf_counter()
    model = SASRec(cfg) if model is None else model
    windows = packing.training_windows(ds, cfg.max_len)
    if packed:
        rows = packing.pack_rows(windows, cfg.row_len)
    else:
        rows = packing.pad_rows(windows, cfg.max_len)
    fill = rows.num_tokens / rows.inputs.size
    log.info(
        "%s: %d users, %d items, %d windows, %d targets in %d rows of %d (%.0f%% filled)",
        type(model).__name__, ds.num_users, ds.num_items, len(windows), rows.num_tokens,
        len(rows.inputs), rows.inputs.shape[1], 100 * fill,
    )  # fmt: skip
    params = init_params(model, cfg.seed)
    optimizer = optimizer_for(cfg, -(-len(rows.inputs) // cfg.batch_rows))
    opt_state = optimizer.init(params)
    step = make_train_step(model, optimizer)
    scores_fn = make_scores_fn(model)
    np_rng = np.random.default_rng(cfg.seed)
    key = jax.random.PRNGKey(cfg.seed + 1)
    best = (-1.0, 0, params)
    bad_evals = 0
    epoch_seconds, history = [], []
    epoch = 0
    for epoch in range(1, cfg.epochs + 1):
        te = time.perf_counter()
        total = count = 0.0
        for batch in batches(rows, cfg.batch_rows, np_rng):
            key, sub = jax.random.split(key)
            params, opt_state, t, c = step(params, opt_state, batch, sub)
            total += float(t)
            count += float(c)
        epoch_seconds.append(time.perf_counter() - te)
        record = {"epoch": epoch, "train_loss": total / max(count, 1.0)}
        if not np.isfinite(record["train_loss"]):
            raise FloatingPointError(
                f"{type(model).__name__}: training loss {record['train_loss']} in epoch {epoch}: "
                f"the model diverged; lower the learning rate ({cfg.learning_rate:g})"
            )
        last_epoch = epoch == cfg.epochs or (
            cfg.max_seconds and time.perf_counter() - t0 > cfg.max_seconds
        )
        if epoch % cfg.eval_every == 0 or last_epoch:
            valid = evaluate(model, params, ds, "validation", False, scores_fn)
            record["valid_ndcg@10"] = valid["ndcg@10"]
            record["valid_recall@10"] = valid["recall@10"]
            if valid["ndcg@10"] > best[0]:
                best = (valid["ndcg@10"], epoch, jax.tree.map(jnp.copy, params))
                bad_evals = 0
            else:
                bad_evals += 1
        history.append(record)
        log.info(
            "epoch %d: loss %.4f, %.1f s (%.0f targets/s)%s",
            epoch, record["train_loss"], epoch_seconds[-1], count / epoch_seconds[-1],
            "".join(f", {k} {v:.4f}" for k, v in record.items() if k.startswith("valid")),
        )  # fmt: skip
        if bad_evals >= cfg.patience:
            log.info("early stop: no validation NDCG@10 gain in %d evaluations", cfg.patience)
            break
        if cfg.max_seconds and time.perf_counter() - t0 > cfg.max_seconds:
            log.warning("stopping: training budget of %.0f s used", cfg.max_seconds)
            break
    result = TrainResult(
        params=best[2],
        best_epoch=best[1],
        best_valid_ndcg10=best[0],
        epochs_run=epoch,
        seconds=time.perf_counter() - t0,
        epoch_seconds=epoch_seconds,
        history=history,
    )
    return model, result

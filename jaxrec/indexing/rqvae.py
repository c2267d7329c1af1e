"""RQ-VAE (Zeghidour et al.; TIGER; LC-Rec) in Flax linen: item embedding -> L discrete codes.

    x [n, D] --MLP--> z [n, d] --residual quantisation, L levels x K codes--> z_q --MLP--> x_hat

Level l quantises the residual left by levels < l to its nearest codeword; the item's semantic
id is the L chosen code indices. Training minimises

    mse(x_hat, x) + mean_l [ |sg(r_l) - e_l|^2 + beta |r_l - sg(e_l)|^2 ]

with a straight-through estimator through the quantiser, AdamW, and codebooks initialised by
k-means on the encoded data (level by level, on residuals). The last level may use Sinkhorn
(`sinkhorn.py`) instead of argmin so codes are shared out uniformly (LC-Rec).

A whole epoch (shuffle + every batch) is one jitted call (`lax.scan` over batches), so the same
seed gives bit-identical parameters and codes.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrec.indexing.kmeans import kmeans, squared_distances
from jaxrec.indexing.sinkhorn import sinkhorn_log_plan, sinkhorn_log_plan_chunked

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RQVAEConfig:
    """Hyper-parameters; defaults are LC-Rec's (4 levels x 256 codes, latent 32, beta 0.25)."""

    hidden_dims: tuple[int, ...] = (512, 256, 128)
    latent_dim: int = 32
    levels: int = 4
    codes: int = 256
    beta: float = 0.25
    sk_epsilon: float = 0.003  # Sinkhorn on the last level at assignment; 0 disables
    sk_iterations: int = 50
    # Sinkhorn iterations inside each training step (LC-Rec: 50). 0 = plain argmin while
    # training; it roughly doubles the cost of an epoch on CPU.
    sk_train_iterations: int = 0
    reset_dead_codes: bool = True  # re-seed codes unused for an epoch from random residuals
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 1024
    epochs: int = 200
    # Big catalogues: at most this many training steps (whole epochs, at least one), so the
    # cost stops growing with the catalogue once an epoch is long. 0 = `epochs` as given. At
    # the defaults this changes nothing up to 40,960 items (200 epochs x 40 batches).
    max_steps: int = 8_000
    kmeans_iterations: int = 50
    # k-means initialisation on a seeded random subset of at most this many items (all items
    # up to this size, as before); 0 = always all items.
    kmeans_sample: int = 65_536
    seed: int = 0


class MLP(nn.Module):
    """Dense layers with ReLU between them (none after the last)."""

    features: Sequence[int]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, f in enumerate(self.features):
            x = nn.Dense(f, name=f"dense_{i}")(x)
            if i < len(self.features) - 1:
                x = nn.relu(x)
        return x


@dataclasses.dataclass(frozen=True)
class Quantized:
    """Output of `RQVAE.quantize` for a batch of n latents."""

    z_q: jax.Array  # [n, d] straight-through quantised latent
    codes: jax.Array  # [n, L] int32
    loss: jax.Array  # scalar, mean over levels of codebook + beta * commitment
    last_cost: jax.Array  # [n, K] cost of each code at the last level (lower is better)
    residuals: jax.Array  # [L, n, d] input of each level


class RQVAE(nn.Module):
    config: RQVAEConfig
    input_dim: int

    def setup(self):
        c = self.config
        self.encoder = MLP(tuple(c.hidden_dims) + (c.latent_dim,))
        self.decoder = MLP(tuple(reversed(c.hidden_dims)) + (self.input_dim,))
        self.codebooks = self.param(
            "codebooks",
            nn.initializers.variance_scaling(1.0, "fan_in", "uniform"),
            (c.levels, c.codes, c.latent_dim),
        )

    def encode(self, x: jax.Array) -> jax.Array:
        return self.encoder(x)

    def decode(self, z: jax.Array) -> jax.Array:
        return self.decoder(z)

    def quantize(self, z: jax.Array, sk_iterations: int) -> Quantized:
        """Residual quantisation of z [n, d]; Sinkhorn on the last level if sk_iterations > 0."""
        c = self.config
        residual = z
        z_q = jnp.zeros_like(z)
        codes, losses, residuals = [], [], []
        last_cost = None
        for level in range(c.levels):
            book = self.codebooks[level]  # [K, d]
            residuals.append(residual)
            dist = squared_distances(residual, book)  # [n, K]
            if sk_iterations and level == c.levels - 1 and c.sk_epsilon > 0:
                # Codes are integers: no gradient flows through the assignment.
                cost = -sinkhorn_log_plan(jax.lax.stop_gradient(dist), c.sk_epsilon, sk_iterations)
            else:
                cost = dist
            code = jnp.argmin(cost, axis=1).astype(jnp.int32)  # [n]
            e = book[code]  # [n, d]
            codebook_loss = jnp.mean((e - jax.lax.stop_gradient(residual)) ** 2)
            commitment = jnp.mean((jax.lax.stop_gradient(e) - residual) ** 2)
            losses.append(codebook_loss + c.beta * commitment)
            e_st = residual + jax.lax.stop_gradient(e - residual)  # straight-through
            z_q = z_q + e_st
            residual = residual - e_st
            codes.append(code)
            last_cost = cost
        return Quantized(
            z_q,
            jnp.stack(codes, axis=1),
            jnp.mean(jnp.stack(losses)),
            last_cost,
            jnp.stack(residuals),
        )

    def __call__(self, x: jax.Array, sk_iterations: int = 0):
        q = self.quantize(self.encode(x), sk_iterations)
        return self.decode(q.z_q), q


def _loss(params, model: RQVAE, x: jax.Array):
    x_hat, q = model.apply({"params": params}, x, model.config.sk_train_iterations)
    recon = jnp.mean((x_hat - x) ** 2)
    return recon + q.loss, (recon, q.loss, q.codes)


def _reset_dead_codes(params, model: RQVAE, x: jax.Array, counts: jax.Array, key: jax.Array):
    """Codewords no item chose during the epoch (counts [L, K] == 0) move onto the level's
    residual of a random item, so they can be chosen again (codebook reset as in SoundStream)."""
    c = model.config
    sample = jax.random.choice(key, x.shape[0], (c.codes,), replace=x.shape[0] < c.codes)
    _, q = model.apply({"params": params}, x[sample])
    books = params["codebooks"]  # [L, K, d]
    books = jnp.where((counts == 0)[:, :, None], q.residuals, books)
    return {**params, "codebooks": books}


@functools.partial(
    jax.jit, static_argnames=("model", "optimizer", "batch_size"), donate_argnums=(0, 1)
)
def train_epoch(params, opt_state, x, key, *, model, optimizer, batch_size):
    """One shuffled pass over x [n, D]; returns (params, opt_state, mean [loss, recon, quant]).

    The last batch is filled up with items from the start of the permutation so every batch has
    the same static shape.
    """
    n = x.shape[0]
    num_batches = -(-n // batch_size)
    perm = jax.random.permutation(key, n)
    idx = perm[jnp.arange(num_batches * batch_size) % n].reshape(num_batches, batch_size)

    levels, k = model.config.levels, model.config.codes

    def step(carry, batch_idx):  # batch_idx: [batch]
        params, opt_state, counts = carry
        (loss, (recon, quant, codes)), grads = jax.value_and_grad(_loss, has_aux=True)(
            params, model, x[batch_idx]
        )
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        counts = counts.at[jnp.arange(levels)[None, :], codes].add(1)  # codes: [batch, L]
        return (params, opt_state, counts), jnp.stack([loss, recon, quant])

    counts = jnp.zeros((levels, k), jnp.int32)  # [L, K] uses of each code this epoch
    (params, opt_state, counts), metrics = jax.lax.scan(step, (params, opt_state, counts), idx)
    if model.config.reset_dead_codes:
        params = _reset_dead_codes(params, model, x, counts, jax.random.fold_in(key, 1))
    dead = jnp.sum(counts == 0, axis=1)  # [L]
    return params, opt_state, metrics.mean(axis=0), dead


@functools.partial(jax.jit, static_argnames=("model", "iterations"))
def kmeans_init(params, x, key, *, model: RQVAE, iterations: int):
    """Replace every codebook by k-means centroids of the encoded residuals of x [n, D]."""
    z = model.apply({"params": params}, x, method=RQVAE.encode)  # [n, d]
    books = []
    for level_key in jax.random.split(key, model.config.levels):
        book = kmeans(z, level_key, model.config.codes, iterations)  # [K, d]
        code = jnp.argmin(squared_distances(z, book), axis=1)
        z = z - book[code]
        books.append(book)
    return {**params, "codebooks": jnp.stack(books)}


@functools.partial(jax.jit, static_argnames=("model", "sk_iterations"))
def _assign(params, x, *, model: RQVAE, sk_iterations: int):
    _, q = model.apply({"params": params}, x, sk_iterations)
    return q.codes, q.last_cost


def _encode_quantize(module: RQVAE, x: jax.Array) -> Quantized:
    return module.quantize(module.encode(x), 0)


@functools.partial(jax.jit, static_argnames=("model",))
def _plain_codes(params, x, *, model: RQVAE):
    """Argmin codes [c, L] and last-level distances [c, K] of standardised rows x [c, D]
    (no decoder pass: assignment needs none)."""
    q = model.apply({"params": params}, x, method=_encode_quantize)
    return q.codes, q.last_cost


# Catalogues above this many items are assigned in chunks of this many rows (see
# `TrainedRQVAE.assign_all`); smaller ones in one piece, as they always were.
ASSIGN_CHUNK_ROWS = 1 << 17


@functools.partial(jax.jit, static_argnames=("model",))
def _reconstruct(params, codes, *, model: RQVAE):
    books = params["codebooks"]  # [L, K, d]
    z_q = sum(books[level][codes[:, level]] for level in range(codes.shape[1]))
    return model.apply({"params": params}, z_q, method=RQVAE.decode)


@dataclasses.dataclass
class TrainedRQVAE:
    """A trained model, its parameters (on device) and timings."""

    model: RQVAE
    params: dict
    history: list[dict]  # logged metrics
    epoch_seconds: list[float]  # wall time of every epoch (compiled)
    train_seconds: float  # all epochs
    compile_seconds: float  # compiling the epoch function (0 when it was cached)
    mean: np.ndarray  # [D] input centring
    scale: float  # input scaling (the model sees (x - mean) / scale)
    init_seconds: float = 0.0  # parameter and k-means initialisation (compilation included)

    @property
    def seconds_per_epoch(self) -> float:
        """Median epoch time (the machine may be shared: the median resists outliers)."""
        return float(np.median(self.epoch_seconds)) if self.epoch_seconds else 0.0

    def assign(self, x: np.ndarray, use_sinkhorn: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Codes [n, L] int32 and last-level cost [n, K] float32 of every row of x.

        With `use_sinkhorn` the last level is the balanced Sinkhorn assignment over all n rows
        (not per batch), as the final uniform mapping.
        """
        sk = self.model.config.sk_iterations if use_sinkhorn else 0
        x = np.asarray(x, np.float32) - self.mean
        x /= self.scale  # in place: the same values as `(x - mean) / scale`
        x = jnp.asarray(x)
        codes, cost = _assign(self.params, x, model=self.model, sk_iterations=sk)
        return np.asarray(codes), np.asarray(cost)

    def assign_all(
        self, x: np.ndarray, use_sinkhorn: bool = True, chunk_rows: int = ASSIGN_CHUNK_ROWS
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(codes [n, L], last-level cost [n, K], argmin codes [n, L]) of every row of x.

        `codes` and `cost` are `assign(x, use_sinkhorn)`'s; the argmin codes are what the
        assignment would be without Sinkhorn (for the report). Up to `chunk_rows` items this
        is two `assign` calls; above, one pass over x in chunks of `chunk_rows` rows, then the
        Sinkhorn iterations over the stored [n, K] distances in chunks
        (`sinkhorn_log_plan_chunked`): memory is x, the [n, K] costs and O(chunk x D).
        """
        n = len(x)
        if n <= chunk_rows:
            codes, cost = self.assign(x, use_sinkhorn)
            plain = self.assign(x, use_sinkhorn=False)[0] if use_sinkhorn else codes
            return codes, cost, plain
        config = self.model.config
        plain = np.empty((n, config.levels), np.int32)
        cost = np.empty((n, config.codes), np.float32)  # distances, then -log plan
        start = time.perf_counter()
        for lo in range(0, n, chunk_rows):
            chunk = np.asarray(x[lo : lo + chunk_rows], np.float32) - self.mean
            chunk /= self.scale  # the same values as `assign`'s
            codes, dist = _plain_codes(self.params, jnp.asarray(chunk), model=self.model)
            plain[lo : lo + len(chunk)] = np.asarray(codes)
            cost[lo : lo + len(chunk)] = np.asarray(dist)
            done = lo + len(chunk)
            log.info("rqvae: assigned %d/%d items (%.0f items/s)", done, n,
                     done / (time.perf_counter() - start))  # fmt: skip
        if not (use_sinkhorn and config.sk_iterations and config.sk_epsilon > 0):
            return plain, cost, plain
        sinkhorn_log_plan_chunked(
            cost, config.sk_epsilon, config.sk_iterations, chunk_rows, out=cost
        )
        codes = plain.copy()
        codes[:, -1] = np.argmax(cost, axis=1)  # the plan's best code (first on ties)
        np.negative(cost, out=cost)
        return codes, cost, plain

    def reconstruct(self, codes: np.ndarray) -> np.ndarray:
        """Decoded embeddings [n, D] of the given codes [n, L]."""
        x = np.asarray(_reconstruct(self.params, jnp.asarray(codes), model=self.model))
        return x * self.scale + self.mean


@functools.lru_cache(maxsize=16)
def _optimizer(learning_rate: float, weight_decay: float) -> optax.GradientTransformation:
    # One object per setting: it is a static jit argument, so a new one would recompile.
    return optax.adamw(learning_rate, weight_decay=weight_decay)


@functools.partial(jax.jit, static_argnames=("model",))
def _init_params(key, x, *, model: RQVAE):
    return model.init(key, x)["params"]


_COMPILED_EPOCHS: dict = {}


def _compiled_epoch(model, optimizer, batch_size, params, opt_state, x, key):
    """The AOT-compiled epoch for these static settings and shapes, and its compile seconds."""
    cache_key = (model, optimizer, batch_size, x.shape, x.dtype)
    if cache_key in _COMPILED_EPOCHS:
        return _COMPILED_EPOCHS[cache_key], 0.0
    start = time.perf_counter()
    fn = train_epoch.lower(
        params, opt_state, x, key, model=model, optimizer=optimizer, batch_size=batch_size
    ).compile()
    _COMPILED_EPOCHS[cache_key] = fn
    return fn, time.perf_counter() - start


def planned_epochs(num_items: int, config: RQVAEConfig) -> int:
    """Epochs to train: `config.epochs`, or fewer whole epochs (at least one) when that would
    exceed `config.max_steps` steps."""
    steps_per_epoch = -(-num_items // min(config.batch_size, num_items))
    if config.max_steps and config.epochs * steps_per_epoch > config.max_steps:
        return max(1, config.max_steps // steps_per_epoch)
    return config.epochs


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(x - mean) / scale in float32 with one temporary copy, and (mean [D], scale)."""
    x = np.asarray(x, dtype=np.float32)
    mean = x.mean(axis=0)
    out = x - mean
    scale = float(np.sqrt(np.mean(np.square(out)))) or 1.0
    out /= scale  # in place: the same float32 values as `out / scale`
    return out, mean, scale


def train_rqvae(x: np.ndarray, config: RQVAEConfig, log_every: int = 10) -> TrainedRQVAE:
    """Train an RQ-VAE on embeddings x [n, D] (float32). Deterministic for `config.seed`."""
    # Centre and rescale to unit mean square: sentence embeddings (unit norm, 384-768 dims)
    # have entries around 0.03, which makes the reconstruction term negligible next to the
    # quantisation loss. Codes are invariant to this affine map; `reconstruct` undoes it.
    x, mean, scale = _standardise(x)
    x = jnp.asarray(x)
    n, dim = x.shape
    batch_size = min(config.batch_size, n)
    epochs = planned_epochs(n, config)
    if epochs < config.epochs:
        log.info("rqvae: %d items: %d epoch(s) of %d steps (max_steps %d) instead of %d",
                 n, epochs, -(-n // batch_size), config.max_steps, config.epochs)  # fmt: skip
    # Seed and epoch count do not change the compiled program; leaving them out of the static
    # model lets runs that differ only in those share compiled functions.
    model = RQVAE(dataclasses.replace(config, seed=0, epochs=0), dim)
    key = jax.random.PRNGKey(config.seed)
    init_key, km_key, key = jax.random.split(key, 3)
    params = _init_params(init_key, x[:1], model=model)
    init_x = x
    if config.kmeans_sample and n > config.kmeans_sample:
        rng = np.random.default_rng(config.seed)
        init_x = x[np.sort(rng.choice(n, config.kmeans_sample, replace=False))]
    t_init = time.perf_counter()
    params = kmeans_init(params, init_x, km_key, model=model, iterations=config.kmeans_iterations)
    jax.block_until_ready(params)
    init_seconds = time.perf_counter() - t_init
    log.info("rqvae: k-means initialisation on %d items (%.1f s)", len(init_x),
             init_seconds)  # fmt: skip
    optimizer = _optimizer(config.learning_rate, config.weight_decay)
    opt_state = optimizer.init(params)
    epoch_fn, compile_seconds = _compiled_epoch(
        model, optimizer, batch_size, params, opt_state, x, key
    )
    history = []
    epoch_seconds = []
    start = time.perf_counter()
    long_epochs = -(-n // batch_size) >= 200  # log every epoch of a big catalogue
    for epoch in range(epochs):
        t0 = time.perf_counter()
        params, opt_state, metrics, dead = epoch_fn(
            params, opt_state, x, jax.random.fold_in(key, epoch)
        )
        metrics = jax.block_until_ready(metrics)
        epoch_seconds.append(time.perf_counter() - t0)
        if long_epochs or (epoch + 1) % log_every == 0 or epoch + 1 == epochs:
            loss, recon, quant = (float(v) for v in metrics)
            dead = [int(d) for d in dead]
            history.append(
                {"epoch": epoch + 1, "loss": loss, "recon": recon, "quant": quant, "dead": dead}
            )
            elapsed = time.perf_counter() - start
            log.info(
                "rqvae epoch %d/%d loss %.5f recon %.5f quant %.5f dead codes %s "
                "(%.3f s/epoch, %.0f items/s)",
                epoch + 1,
                epochs,
                loss,
                recon,
                quant,
                dead,
                elapsed / (epoch + 1),
                n * (epoch + 1) / elapsed,
            )
    jax.block_until_ready(params)
    return TrainedRQVAE(
        model,
        params,
        history,
        epoch_seconds,
        time.perf_counter() - start,
        compile_seconds,
        mean,
        scale,
        init_seconds,
    )

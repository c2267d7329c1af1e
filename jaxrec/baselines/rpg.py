"""RPG (Hou et al., KDD 2025): long semantic ids predicted in parallel, every item scored.

Each item is a long unordered id of `num_codebooks` codes (OPQ over item embeddings,
`jaxrec.indexing.opq`). A causal Transformer reads the history, each item entered as the mean
of its codes' embeddings (one table of `codebook_size` rows per codebook) plus a learned
position. From the last hidden state h [d] one residual head per codebook m,
g_m(h) = h + SiLU(W_m h + b_m) (W_m starts at zero), gives that codebook's logits: the cosine
similarity of g_m(h) with each code embedding of codebook m, divided by `temperature`
(output tied to input). Training is multi-token prediction: the mean over codebooks of the
cross-entropy of the target item's code, at every position (packed rows, as SASRec trains).

Retrieval scores every item of the catalogue in one forward pass per user: item i's score is
the sum over codebooks of the logit of its code, which ranks items exactly as the sum of the
codes' log-probabilities does (a codebook's log-normaliser is the same for every item). RPG's
graph-guided decoding approximates this ranking to avoid touching every item; with catalogues
of tens of thousands of items the exact ranking is cheap. Items sharing their whole id tie and
are ranked by item id (`ranking.target_ranks`).

Training, early stopping, evaluation and recommendation are SASRec's (`sasrec.train`,
`sasrec.evaluate`, `sasrec.top_items`): the model has SASRec's interface.
"""

from __future__ import annotations

import dataclasses
import logging

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrec.baselines import sasrec
from jaxrec.data.dataset import DataError, Dataset

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RPGConfig(sasrec.SASRecConfig):
    """SASRec's fields with RPG's published defaults (GPT-2 backbone of 2 layers, width 448,
    4 heads, inner 1024; dropout 0.5 on embeddings and attention, none on the residual path;
    32 codebooks of 256 codes, temperature 0.03 and learning rate 0.01 on Beauty)."""

    d_model: int = 448
    num_heads: int = 4
    mlp_dim: int = 1024
    dropout: float = 0.0  # residual path
    attention_dropout: float = 0.5
    learning_rate: float = 1e-2
    warmup_steps: int = 200
    schedule: str = "cosine"
    clip_norm: float | None = 1.0
    embed_dropout: float = 0.5
    num_codebooks: int = 32
    codebook_size: int = 256
    temperature: float = 0.03


class RPG(nn.Module):
    """Hidden states [batch, len, d] for token inputs (item id + 1; 0 = padding)."""

    cfg: RPGConfig
    codes: np.ndarray  # [num_items, num_codebooks] int32: each item's long id

    def setup(self):
        cfg = self.cfg
        m, k, d = cfg.num_codebooks, cfg.codebook_size, cfg.d_model
        init = nn.initializers.normal(stddev=0.02)
        self.code_embed = self.param("code_embed", init, (m, k, d))
        self.pos_embed = nn.Embed(cfg.max_len, d, embedding_init=init)
        self.blocks = [sasrec._Block(cfg) for _ in range(cfg.num_blocks)]
        self.final_norm = nn.LayerNorm()
        self.head_kernel = self.param("head_kernel", nn.initializers.zeros, (m, d, d))
        self.head_bias = self.param("head_bias", nn.initializers.zeros, (m, d))
        self.drop = nn.Dropout(cfg.embed_dropout)
        codes = np.asarray(self.codes, np.int32)
        # Token space: row 0 is padding (code 0 everywhere; masked out wherever it is read).
        self.token_codes = jnp.asarray(np.concatenate([np.zeros((1, m), np.int32), codes]))

    def embed_tokens(self, tokens):
        """[..., d] mean of the code embeddings of each token's item."""
        codes = self.token_codes[tokens]  # [..., M]
        total = jnp.zeros((*tokens.shape, self.cfg.d_model), self.code_embed.dtype)
        for m in range(self.cfg.num_codebooks):  # one [..., d] gather at a time, not [..., M, d]
            total = total + self.code_embed[m][codes[..., m]]
        return total / self.cfg.num_codebooks

    def __call__(self, inputs, segments, positions, deterministic: bool = True):
        # inputs, segments, positions: [batch, len]
        valid = segments > 0
        x = self.embed_tokens(inputs) + self.pos_embed(positions)
        x = self.drop(x, deterministic=deterministic) * valid[..., None]
        mask = sasrec.segment_causal_mask(segments)
        for block in self.blocks:
            x = block(x, mask, deterministic) * valid[..., None]
        return self.final_norm(x)

    def code_logits(self, hidden):
        """[..., M, K]: every codebook's logits (cosine of head output and code / temperature)."""
        pre = jnp.einsum("...d,mde->...me", hidden, self.head_kernel) + self.head_bias
        heads = hidden[..., None, :] + nn.silu(pre)  # [..., M, d]
        table = _unit(self.code_embed)  # [M, K, d]
        return jnp.einsum("...md,mkd->...mk", _unit(heads), table) / self.cfg.temperature

    def target_loss(self, hidden, targets):
        """[...] mean over codebooks of the cross-entropy of the target item's codes."""
        logits = self.code_logits(hidden)  # [..., M, K]
        codes = self.token_codes[targets]  # [..., M]
        return optax.softmax_cross_entropy_with_integer_labels(logits, codes).mean(axis=-1)

    def item_logits(self, hidden):
        """[..., num_items]: each item's score, the sum of its codes' logits."""
        logits = self.code_logits(hidden)  # [..., M, K]
        codes = self.token_codes[1:]  # [N, M]
        scores = jnp.zeros((*hidden.shape[:-1], codes.shape[0]), logits.dtype)
        for m in range(self.cfg.num_codebooks):
            scores = scores + jnp.take(logits[..., m, :], codes[:, m], axis=-1)
        return scores


def _unit(x):
    """x / |x| along the last axis, with a finite gradient at 0 (padding positions are 0)."""
    return x * jax.lax.rsqrt(jnp.sum(x * x, axis=-1, keepdims=True) + 1e-12)


def check_codes(codes: np.ndarray, cfg: RPGConfig, num_items: int, source: str) -> np.ndarray:
    """`codes` as int32 [num_items, num_codebooks] in [0, codebook_size), or a DataError."""
    codes = np.asarray(codes)
    want = (num_items, cfg.num_codebooks)
    if codes.shape != want:
        raise DataError(f"{source}: long ids of shape {codes.shape}, expected {want}")
    bad = np.argwhere((codes < 0) | (codes >= cfg.codebook_size))
    if len(bad):
        item, m = bad[0]
        raise DataError(
            f"{source}: item {item} has code {codes[item, m]} in codebook {m}, outside "
            f"[0, {cfg.codebook_size})"
        )
    return codes.astype(np.int32)


def train(ds: Dataset, cfg: RPGConfig, codes: np.ndarray, packed: bool = True):
    """(model, `sasrec.TrainResult`) of RPG on `ds` with the items' long ids `codes`."""
    model = RPG(cfg, check_codes(codes, cfg, ds.num_items, f"{ds.name} long ids"))
    log.info(
        "RPG: %d codebooks x %d codes, width %d, %d blocks, temperature %g",
        cfg.num_codebooks, cfg.codebook_size, cfg.d_model, cfg.num_blocks, cfg.temperature,
    )  # fmt: skip
    return sasrec.train(ds, cfg, packed, model=model)

"""Training throughput: jaxrec's FLAN-T5 network (jitted AdamW step) vs Hugging Face T5 in torch.

    python -m jaxrec.bench train [--quick]

Standard setting (docs BENCHMARKS.md "train"): TIGER-shaped T5 v1.1 (4+4 layers, d_model 128,
6 heads x 64, d_ff 1024, gated GELU, untied output), vocabulary 4 x 256 item tokens + 3, AdamW
lr 1e-3, batch 64, inputs 80 tokens, targets 5, dropout 0.1. The peer is the same model (our
random initialisation exported to a Hugging Face directory and loaded by
`T5ForConditionalGeneration.from_pretrained`) trained by torch with 2 threads on the same
batches. Steps alternate between the two in repetitions; medians are reported. Achieved FLOP/s
use the analytic matmul FLOPs of the step (3x the forward) against the measured float32 peak of
a 2048^3 matmul (the faster of XLA and torch) in the same run. `modes` adds jaxrec's
generative-retrieval training layouts in targets/s (`jaxrec/bench/train_modes.py`), each
next to the peer's examples/s (one target per example).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import tempfile
import time

import numpy as np

log = logging.getLogger("jaxrec.bench.train")


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m jaxrec.bench train", description=__doc__)
    p.add_argument("--quick", action="store_true", help="batch 16, 2 reps of 2 steps")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--input-length", type=int, default=80)
    p.add_argument("--target-length", type=int, default=5)
    p.add_argument("--vocab", type=int, default=4 * 256 + 3)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--model", default="tiger", help="jaxrec.models.configs name")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--steps", type=int, default=3, help="steps per repetition")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--no-peer", action="store_true", help="time jaxrec only")
    p.add_argument(
        "--no-modes", action="store_true",
        help="skip the per-layout targets/s (tiger, per_prefix, prefix_shared)",
    )  # fmt: skip
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.reps, args.steps = 16, 2, 2
    return args


def forward_matmul_flops(
    cfg, batch: int, inputs: int, targets: int, decoder_rows: int | None = None
) -> float:
    """Matmul FLOPs (2 per MAC) of one forward pass over `batch` examples.

    Counts the encoder, the cross-attention keys/values of every encoder token, and
    `decoder_rows` decoder token rows (default `batch * targets`; a beam search runs more),
    each attending over `targets` positions and the `inputs` encoder tokens.
    """
    d, hk, ff, v = cfg.emb_dim, cfg.num_heads * cfg.head_dim, cfg.mlp_dim, cfg.vocab_size
    mlp = 2 * d * ff * (len(cfg.mlp_activations) + 1)
    enc_token = 2 * 4 * d * hk + mlp + 2 * 2 * inputs * hk
    # Self q/k/v/out + cross q/out projections, MLP, attention over targets and inputs.
    dec_token = 2 * 6 * d * hk + mlp + 2 * 2 * (targets + inputs) * hk
    cross_kv = 2 * 2 * d * hk  # per encoder token per decoder layer
    rows = batch * targets if decoder_rows is None else decoder_rows
    return float(
        batch * inputs * (cfg.num_encoder_layers * enc_token + cfg.num_decoder_layers * cross_kv)
        + rows * (cfg.num_decoder_layers * dec_token + 2 * d * v)
    )


def matmul_flops_per_step(cfg, batch: int, inputs: int, targets: int) -> float:
    """Matmul FLOPs of one training step (forward x 3), the usual model-FLOPs convention."""
    return 3.0 * forward_matmul_flops(cfg, batch, inputs, targets)


def measure_matmul_peak(reps: int = 5) -> dict[str, float]:
    """float32 FLOP/s of a 2048^3 matmul in XLA and in torch (median of `reps`)."""
    import jax
    import jax.numpy as jnp
    import torch

    n = 2048
    flops = 2.0 * n**3
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    xla = []
    for _ in range(reps):
        t = time.perf_counter()
        f(a).block_until_ready()
        xla.append(flops / (time.perf_counter() - t))
    ta = torch.randn(n, n)
    torch.mm(ta, ta)
    tt = []
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(ta, ta)
        tt.append(flops / (time.perf_counter() - t))
    return {"xla": statistics.median(xla), "torch": statistics.median(tt)}


def _batches(args, n: int) -> list[dict[str, np.ndarray]]:
    """`n` random batches; inputs use every position (80 = 20 items x 4 tokens), targets end
    with EOS (1); ids avoid 0 (padding) and 1."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        inputs = rng.integers(3, args.vocab, (args.batch, args.input_length), dtype=np.int32)
        targets = rng.integers(3, args.vocab, (args.batch, args.target_length), dtype=np.int32)
        targets[:, -1] = 1
        out.append({"inputs": inputs, "targets": targets})
    return out


class JaxrecTrainer:
    """A plain jitted AdamW step over `jaxrec.models.network.Transformer`."""

    def __init__(self, cfg, params, lr: float, weight_decay: float):
        import jax
        import jax.numpy as jnp
        import optax

        from jaxrec.models.network import Transformer

        self.model = Transformer(cfg)
        self.tx = optax.adamw(lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=weight_decay)
        self.params = jax.tree_util.tree_map(jnp.asarray, params)
        self.opt_state = self.tx.init(self.params)
        self.key = jax.random.key(0)
        self.step_count = 0
        dropout = cfg.dropout_rate > 0

        def loss_fn(p, batch, key, enable_dropout):
            targets = batch["targets"]
            dec_in = jnp.pad(targets[:, :-1], ((0, 0), (1, 0)))  # shift right, start token 0
            logits = self.model.apply(
                {"params": p}, batch["inputs"], dec_in, targets,
                enable_dropout=enable_dropout, rngs={"dropout": key},
            )  # fmt: skip
            weights = (targets > 0).astype(jnp.float32)
            ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
            return (ce * weights).sum() / weights.sum()

        def step(p, opt_state, batch, key):
            loss, grads = jax.value_and_grad(loss_fn)(p, batch, key, dropout)
            updates, opt_state = self.tx.update(grads, opt_state, p)
            return optax.apply_updates(p, updates), opt_state, loss

        self._step = jax.jit(step, donate_argnums=(0, 1))
        self.eval_loss = jax.jit(lambda p, b: loss_fn(p, b, self.key, False))

    def step(self, batch) -> float:
        import jax

        key = jax.random.fold_in(self.key, self.step_count)
        self.params, self.opt_state, loss = self._step(self.params, self.opt_state, batch, key)
        self.step_count += 1
        return loss

    @staticmethod
    def block(loss) -> float:
        return float(loss)


class TorchTrainer:
    """`T5ForConditionalGeneration` + `torch.optim.AdamW`, labels-driven loss (HF shift-right)."""

    def __init__(self, hf_dir: str, lr: float, weight_decay: float, threads: int):
        import torch
        from transformers import T5ForConditionalGeneration

        torch.set_num_threads(threads)
        self.torch = torch
        self.model = T5ForConditionalGeneration.from_pretrained(hf_dir)
        self.model.train()
        self.opt = torch.optim.AdamW(
            self.model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay
        )

    def _inputs(self, batch):
        t = self.torch
        inputs = t.from_numpy(batch["inputs"]).long()
        return dict(input_ids=inputs, attention_mask=(inputs > 0).long(),
                    labels=t.from_numpy(batch["targets"]).long())  # fmt: skip

    def step(self, batch) -> float:
        self.opt.zero_grad(set_to_none=True)
        loss = self.model(**self._inputs(batch)).loss
        loss.backward()
        self.opt.step()
        return loss

    def eval_loss(self, batch) -> float:
        self.model.eval()
        with self.torch.no_grad():
            loss = float(self.model(**self._inputs(batch)).loss)
        self.model.train()
        return loss

    @staticmethod
    def block(loss) -> float:
        return float(loss)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _time_steps(trainer, batches, steps: int) -> tuple[float, float]:
    """(wall, process CPU) seconds per step over `steps` steps (the result is waited for).

    CPU seconds are reported too because the machine is shared: when other processes hold the
    cores, wall time mostly measures the wait (and penalises torch's OpenMP barriers most).
    """
    start, cpu = time.perf_counter(), _cpu_seconds()
    loss = None
    for i in range(steps):
        loss = trainer.step(batches[i % len(batches)])
    trainer.block(loss)
    return (time.perf_counter() - start) / steps, (_cpu_seconds() - cpu) / steps


def main(argv: list[str]) -> int:
    args = _parse(argv)
    from jaxrec.cli import quiet

    quiet.configure_logging(fmt="%(asctime)s %(message)s")
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from jaxrec.models import checkpoints
    from jaxrec.models.configs import get_config
    from jaxrec.models.network import Transformer

    cfg = get_config(args.model, vocab_size=args.vocab, dropout_rate=args.dropout)
    batches = _batches(args, 4)
    dummy = jnp.ones((1, 4), jnp.int32)
    variables = Transformer(cfg).init(jax.random.key(0), dummy, dummy, dummy, enable_dropout=False)
    params = jax.tree_util.tree_map(np.asarray, nn.meta.unbox(variables["params"]))
    lr, wd = 1e-3, 0.01

    log.info("measuring the 2048^3 float32 matmul peak")
    peak = measure_matmul_peak()
    jaxrec = JaxrecTrainer(cfg, params, lr, wd)
    init_loss_jaxrec = float(jaxrec.eval_loss(jaxrec.params, batches[0]))
    start = time.perf_counter()
    jaxrec.block(jaxrec.step(batches[0]))
    compile_s = time.perf_counter() - start
    log.info("jaxrec compiled + first step in %.1fs", compile_s)

    peer = None
    if not args.no_peer:
        with tempfile.TemporaryDirectory() as hf_dir:
            checkpoints.save_hf_checkpoint(hf_dir, cfg, params)
            peer = TorchTrainer(hf_dir, lr, wd, args.threads)
        init_loss_peer = peer.eval_loss(batches[0])
        peer.block(peer.step(batches[0]))  # warm-up

    jax_times, peer_times, jax_cpu, peer_cpu = [], [], [], []
    for rep in range(args.reps):
        wall, cpu = _time_steps(jaxrec, batches, args.steps)
        jax_times.append(wall)
        jax_cpu.append(cpu)
        if peer is not None:
            wall, cpu = _time_steps(peer, batches, args.steps)
            peer_times.append(wall)
            peer_cpu.append(cpu)
        log.info(
            "rep %d/%d: jaxrec %.3f s/step, peer %s s/step", rep + 1, args.reps, jax_times[-1],
            f"{peer_times[-1]:.3f}" if peer_times else "-",
        )  # fmt: skip

    tokens = args.batch * (args.input_length + args.target_length)
    flops = matmul_flops_per_step(cfg, args.batch, args.input_length, args.target_length)
    peak_flops = max(peak.values())

    def summary(times, cpu_times):
        t = statistics.median(times)
        return {
            "s_per_step": round(t, 4),
            "cpu_s_per_step": round(statistics.median(cpu_times), 4),
            "examples_per_s": round(args.batch / t, 2),
            "tokens_per_s": round(tokens / t, 1),
            "gflops_per_s": round(flops / t / 1e9, 2),
            "fraction_of_peak": round(flops / t / peak_flops, 4),
        }

    result = {
        "benchmark": "train",
        "model": args.model,
        "batch": args.batch,
        "input_length": args.input_length,
        "target_length": args.target_length,
        "vocab": args.vocab,
        "dropout": args.dropout,
        "reps": args.reps,
        "steps_per_rep": args.steps,
        "step_matmul_flops": flops,
        "matmul_peak_gflops_per_s": {k: round(v / 1e9, 2) for k, v in peak.items()},
        "jaxrec": summary(jax_times, jax_cpu),
        "jaxrec_compile_s": round(compile_s, 2),
        "initial_loss_jaxrec": round(init_loss_jaxrec, 5),
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    if peer is not None:
        result["peer"] = summary(peer_times, peer_cpu)
        result["peer_name"] = (
            f"transformers T5ForConditionalGeneration, torch {args.threads} threads"
        )
        result["initial_loss_peer"] = round(init_loss_peer, 5)
        ratio = lambda a, b: round(statistics.median(a) / statistics.median(b), 3)
        result["speedup_vs_hf"] = ratio(peer_times, jax_times)
        result["cpu_time_speedup_vs_hf"] = ratio(peer_cpu, jax_cpu)
    if not args.no_modes:
        from jaxrec.bench.train_modes import time_modes

        log.info("timing the generative-retrieval training layouts")
        result["modes"] = time_modes(cfg, params, reps=max(args.reps // 2, 1))
        if peer is not None:  # the peer trains one target per example
            peer_rate = result["peer"]["examples_per_s"]
            for m in result["modes"].values():
                m["speedup_vs_hf"] = round(m["targets_per_s"] / peer_rate, 2)
    print(json.dumps(result))
    return 0

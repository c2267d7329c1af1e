"""decode benchmark: constrained generative retrieval, jaxrec vs `transformers` generate.

    python -m jaxrec.bench decode [--quick] [--batch 16] [--beams 20] [--reps 5]

Setting (docs BENCHMARKS.md "decode"): the real Beauty semantic index (12,101 items, 4 x 256
codes, 13 collisions), a TIGER-shaped T5 v1.1 (4+4 layers, d_model 128, 6 x 64 heads, d_ff 1024,
gated GELU, untied output) with seeded random weights, vocabulary = pad/EOS/unk + the 1,024
item tokens, 16 queries of 20 random history items (80 tokens), 20 beams, 20 returns.

The weights are created in `transformers`, saved, and imported with jaxrec's HF loader, so the
two decoders run the same model. The peer restricts generation with `prefix_allowed_tokens_fn`
over a dict trie. Both use length_penalty 0 (plain summed log-probs), so scores compare too.
Prints one JSON line.

It also reports where the ratio can go on this machine: `matmul_gflop_per_batch` counts the
search's float32 matmul work (encoder, cross-attention keys/values, one decoder row per query
at the first step and one per beam afterwards, attention, vocabulary projection), and
`speedup_bound_at_peak` is the ratio jaxrec would reach if all of it ran at the machine's best
measured float32 matmul rate (a 2048^3 matmul in XLA or torch, whichever is faster), with every
other operation free.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time

import numpy as np

from jaxrec.bench._timing import median_seconds
from jaxrec.bench.train import forward_matmul_flops, measure_matmul_peak

log = logging.getLogger("jaxrec.bench.decode")

INDEX = os.path.join(
    os.path.dirname(__file__), "..", "..", "..", "shared", "data", "lcrec", "Beauty.index.json"
)
PAD, EOS, UNK = 0, 1, 2


def tiger_hf_model(vocab_size: int, seed: int = 0, **shape):
    """A random `T5ForConditionalGeneration` of TIGER's shape (or `shape` overrides)."""
    import torch
    import transformers

    torch.manual_seed(seed)
    cfg = dict(
        vocab_size=vocab_size,
        d_model=128,
        d_kv=64,
        d_ff=1024,
        num_layers=4,
        num_decoder_layers=4,
        num_heads=6,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        dropout_rate=0.0,
        pad_token_id=PAD,
        eos_token_id=EOS,
        decoder_start_token_id=PAD,
    )
    cfg.update(shape)
    return transformers.T5ForConditionalGeneration(transformers.T5Config(**cfg)).eval()


def import_into_jaxrec(hf_model, directory: str):
    """Save the HF model and load it back through `jaxrec.models.checkpoints`."""
    from jaxrec.models.checkpoints import load_hf_checkpoint

    hf_model.save_pretrained(directory)
    return load_hf_checkpoint(directory)


def dict_trie(sequences) -> dict:
    """Nested dict trie over token sequences (each ending with EOS), the peer's constraint."""
    root: dict = {}
    for seq in sequences:
        node = root
        for t in list(seq) + [EOS]:
            node = node.setdefault(int(t), {})
    return root


def hf_allowed_fn(trie: dict):
    """`prefix_allowed_tokens_fn` walking the dict trie (decoder ids start with the pad)."""

    def allowed(batch_id, input_ids):
        node = trie
        for t in input_ids.tolist()[1:]:
            node = node.get(t)
            if node is None:  # finished beam (padding after EOS)
                return [PAD]
        return list(node) if node else [PAD]

    return allowed


def hf_generate(hf_model, inputs: np.ndarray, beams: int, returns: int, trie: dict, steps: int):
    """Peer: returns (sequences [batch, returns, len] without the start token, scores)."""
    import torch

    ids = torch.as_tensor(inputs, dtype=torch.long)
    with torch.no_grad():
        out = hf_model.generate(
            input_ids=ids,
            attention_mask=(ids != PAD).long(),
            num_beams=beams,
            num_return_sequences=returns,
            max_new_tokens=steps,
            prefix_allowed_tokens_fn=hf_allowed_fn(trie),
            length_penalty=0.0,
            early_stopping=True,
            do_sample=False,
            output_scores=True,
            return_dict_in_generate=True,
        )
    seqs = out.sequences[:, 1:].numpy().reshape(len(inputs), returns, -1)
    return seqs, out.sequences_scores.numpy().reshape(len(inputs), returns)


def matmul_flops_per_batch(cfg, batch: int, inputs: int, beams: int, steps: int) -> float:
    """float32 matmul FLOPs of one constrained beam search over `batch` queries (2 per MAC):
    one decoder row per query at the first step, one per beam at the other `steps - 1`."""
    rows = batch + (steps - 1) * batch * beams
    return forward_matmul_flops(cfg, batch, inputs, steps, decoder_rows=rows)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m jaxrec.bench decode", description=__doc__)
    p.add_argument("--quick", action="store_true", help="batch 4, 2 repetitions")
    p.add_argument("--index", default=INDEX, help="LC-Rec .index.json (default: Beauty)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--history", type=int, default=20)
    p.add_argument("--beams", type=int, default=20)
    p.add_argument("--returns", type=int, default=20)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--peer_reps", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.reps, args.peer_reps = 4, 2, 1
    from jaxrec.cli import quiet

    quiet.configure_logging(fmt="%(asctime)s %(message)s")

    import jax
    import jax.numpy as jnp
    import torch

    from jaxrec.indexing.item_index import ItemIndex
    from jaxrec.indexing.trie import build_prefix_table
    from jaxrec.inference.decoding import Constraint, sequences_to_items
    from jaxrec.inference.generation import make_generate_fn
    from jaxrec.models.network import Transformer

    torch.set_num_threads(2)
    index = ItemIndex.from_json(args.index)
    token_id = {t: i + 3 for i, t in enumerate(index.item_tokens())}
    sequences = [[token_id[t] for t in seq] for seq in index.tokens]
    table = build_prefix_table(sequences, EOS)
    vocab = 3 + len(token_id)
    rng = np.random.default_rng(args.seed)
    history = rng.integers(0, index.num_items, size=(args.batch, args.history))
    inputs = np.array([[t for i in row for t in sequences[i]] for row in history], np.int32)
    log.info("%d items, %d distinct sequences, vocab %d, inputs %s", index.num_items,
             len(table.leaf_groups), vocab, inputs.shape)  # fmt: skip

    hf_model = tiger_hf_model(vocab, seed=args.seed)
    with tempfile.TemporaryDirectory() as d:
        config, params = import_into_jaxrec(hf_model, d)
    model = Transformer(config.without_dropout())
    params = jax.tree_util.tree_map(jnp.asarray, params)
    steps = table.max_length
    generate = make_generate_fn(model, EOS, args.beams, args.returns, max_decode_len=steps)
    constraint = Constraint.from_table(table)
    enc = jnp.asarray(inputs)

    def run(c):
        return jax.block_until_ready(generate(params, enc, c))

    result = {"batch": args.batch, "beams": args.beams, "returns": args.returns}
    for name, c in (("constrained", constraint), ("unconstrained", None)):
        t0 = time.perf_counter()
        run(c)
        result[f"jaxrec_{name}_compile_s"] = round(time.perf_counter() - t0, 2)
        sec = median_seconds(lambda c=c: run(c), args.reps)
        result[f"jaxrec_{name}_qps"] = round(args.batch / sec, 2)
        log.info("jaxrec %s: %.3f s/batch", name, sec)
    seqs, scores = run(constraint)
    useqs, uscores = run(None)

    trie = dict_trie(sequences)
    peer = {}

    def run_peer():
        peer["out"] = hf_generate(hf_model, inputs, args.beams, args.returns, trie, steps)

    run_peer()  # warm-up
    sec = median_seconds(run_peer, args.peer_reps)
    log.info("transformers: %.3f s/batch", sec)
    result["peer_qps"] = round(args.batch / sec, 2)
    hseqs, hscores = peer["out"]

    ours, invalid = sequences_to_items(np.asarray(seqs), np.asarray(scores), table)
    theirs, _ = sequences_to_items(hseqs, hscores, table)
    _, u_invalid = sequences_to_items(np.asarray(useqs), np.asarray(uscores), table)
    flops = matmul_flops_per_batch(config, args.batch, inputs.shape[1], args.beams, steps)
    peak = measure_matmul_peak()
    best = max(peak.values())
    constrained_sec = args.batch / result["jaxrec_constrained_qps"]
    result.update(
        matmul_gflop_per_batch=round(flops / 1e9, 2),
        matmul_peak_gflops_per_s={k: round(v / 1e9, 1) for k, v in peak.items()},
        jaxrec_constrained_gflops_per_s=round(flops / constrained_sec / 1e9, 1),
        speedup_bound_at_peak=round(args.batch / (flops / best) / result["peer_qps"], 2),
    )
    result.update(
        speedup_vs_hf=round(result["jaxrec_constrained_qps"] / result["peer_qps"], 2),
        constraint_overhead=round(
            result["jaxrec_unconstrained_qps"] / result["jaxrec_constrained_qps"], 3
        ),
        top20_agreement=float(
            np.mean([np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True)])
        ),
        top20_overlap=float(
            np.mean([len(set(a) & set(b)) / len(set(b)) for a, b in zip(ours, theirs, strict=True)])
        ),
        max_score_diff=float(np.max(np.abs(np.asarray(scores) - hscores))),
        constrained_invalid_rate=float(invalid.mean()),
        unconstrained_invalid_rate=float(u_invalid.mean()),
        devices=jax.device_count(),
    )
    print(json.dumps(result))
    return 0

"""jaxrec's constrained beam search vs `transformers` generate on the same random T5 weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.bench.decode import (
    EOS,
    dict_trie,
    hf_generate,
    import_into_jaxrec,
    tiger_hf_model,
)
from jaxrec.indexing.trie import build_prefix_table
from jaxrec.inference.decoding import Constraint, sequences_to_items
from jaxrec.inference.generation import make_generate_fn
from jaxrec.models.network import Transformer

torch = pytest.importorskip("torch")

# FLAN-T5-shaped (gated GELU, untied output, relative position buckets) but tiny.
SHAPE = dict(d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4)
VOCAB = 3 + 3 * 8  # pad/EOS/unk + 3 levels x 8 codes
BEAMS = 8


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    hf = tiger_hf_model(VOCAB, seed=3, **SHAPE)
    # Sharpen the random output layer so beams disagree and mistakes would show (scores end
    # up at a few hundred, where float32 resolves ~3e-5: the 1e-4 check is a few ulps).
    with torch.no_grad():
        hf.lm_head.weight.mul_(3.0)
    config, params = import_into_jaxrec(hf, str(tmp_path_factory.mktemp("hf")))
    model = Transformer(config.replace(dropout_rate=0.0))
    generate = make_generate_fn(model, EOS, BEAMS, BEAMS, max_decode_len=4)
    return hf, generate, jax.tree_util.tree_map(jnp.asarray, params)


def catalogue(n=60, seed=0):
    rng = np.random.default_rng(seed)
    items = [tuple(int(3 + 8 * lvl + rng.integers(8)) for lvl in range(3)) for _ in range(n)]
    return items + [items[5]]  # one collision


def test_same_top_k_items_and_scores_as_transformers(models):
    hf, generate, params = models
    items = catalogue()
    table = build_prefix_table(items, EOS)
    rng = np.random.default_rng(1)
    inputs = rng.integers(3, VOCAB, size=(3, 12)).astype(np.int32)
    inputs[1, 9:] = 0  # padding must be masked identically
    seqs, scores = generate(params, jnp.asarray(inputs), Constraint.from_table(table))
    hseqs, hscores = hf_generate(hf, inputs, BEAMS, BEAMS, dict_trie(items), table.max_length)
    ours, invalid = sequences_to_items(np.asarray(seqs), np.asarray(scores), table)
    theirs, _ = sequences_to_items(hseqs, hscores, table)
    assert not invalid.any()
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_allclose(np.asarray(scores), hscores, atol=1e-4)
    assert np.all(np.diff(np.asarray(scores), axis=1) <= 0)


def test_unconstrained_random_model_emits_invalid_items_constrained_never(models):
    _, generate, params = models
    table = build_prefix_table(catalogue(), EOS)
    inputs = jnp.asarray(np.random.default_rng(2).integers(3, VOCAB, size=(3, 12)), jnp.int32)
    _, u_invalid = sequences_to_items(*map(np.asarray, generate(params, inputs, None)), table)
    _, c_invalid = sequences_to_items(
        *map(np.asarray, generate(params, inputs, Constraint.from_table(table))), table
    )
    assert u_invalid.mean() > 0
    assert c_invalid.mean() == 0

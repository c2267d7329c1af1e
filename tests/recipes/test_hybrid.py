"""Hybrid retrieval: the dense head's scores are the encoder's last position against the
item-id embeddings, and the fusion re-orders the beams' items only (`jaxrec.recipes.hybrid`)."""

import jax
import numpy as np
import pytest

from jaxrec.indexing.schemes import semantic_index
from jaxrec.indexing.sid_vocab import SidVocabulary
from jaxrec.models.adapters import next_item_logits
from jaxrec.models.configs import get_config
from jaxrec.recipes import hybrid
from jaxrec.recipes.sid_retrieval import SidRetrieval


def test_ranks_of_each_ranking_and_the_chosen_weight():
    scored = hybrid.Scored(
        items=np.array([[4, 7, 2, -1], [1, 3, 5, 6]]),
        beam=np.array([[-1.0, -1.5, -3.0, -np.inf], [-0.5, -0.6, -2.0, -2.1]], np.float32),
        dense=np.array([[-6.0, -1.0, -0.1, -np.inf], [-4.0, -1.0, -3.0, -0.2]], np.float32),
        targets=np.array([2, 6]),
        dense_rank=np.array([1, 9]),
    )
    np.testing.assert_array_equal(scored.ranks(0.0), [3, 4])  # beam order
    np.testing.assert_array_equal(scored.ranks(None), [1, 9])  # the head over all items
    # w = 1: user 0: 4 -> -7, 7 -> -2.5, 2 -> -3.1; user 1: 1 -> -4.5, 3 -> -1.6, 5 -> -5, 6 -> -2.3
    np.testing.assert_array_equal(scored.ranks(1.0), [2, 2])
    items, fused = scored.reranked(1.0)
    np.testing.assert_array_equal(items[0], [7, 2, 4, -1])
    assert fused[0, 0] == pytest.approx(-2.5) and fused[0, 3] == -np.inf
    missing = hybrid.Scored(scored.items, scored.beam, scored.dense, np.array([9, 6]),
                            scored.dense_rank)  # fmt: skip
    assert missing.ranks(5.0)[0] == 0  # not among the beams: the head cannot bring it in
    by_w = hybrid.metrics_by_weight(scored, (0.0, 1.0), ks=(1, 2))
    assert by_w["generative"]["recall@2"] == 0.0 and by_w["w=1"]["recall@2"] == 1.0
    assert by_w["dense"]["recall@1"] == 0.5
    assert hybrid.best_weight(by_w, "recall@2") == 1.0


@pytest.mark.parametrize("scaled", [False, True])
def test_dense_head_scores_the_last_history_position_against_item_embeddings(scaled):
    codes = np.array([[i % 4, i // 4] for i in range(12)])
    vocab = SidVocabulary.from_index(semantic_index(codes))
    config = get_config("tiny", vocab_size=vocab.padded_vocab_size(), encoder_causal=True,
                        num_input_items=12, dropout_rate=0.0, scale_item_logits=scaled)  # fmt: skip
    rec = SidRetrieval(config, vocab, history=5, item_inputs=True)
    inputs = rec.encoder_inputs([[3, 1, 7], [0, 2, 4, 6, 8]])
    params = rec.model.init(jax.random.key(0), inputs, inputs[..., :3, 0], inputs[..., :3, 0],
                            enable_dropout=False)["params"]  # fmt: skip
    logp = hybrid.dense_log_probs(rec, params, inputs)
    assert logp.shape == (2, 12)
    np.testing.assert_allclose(np.exp(logp).sum(axis=1), 1.0, rtol=1e-5)
    encoded = rec.model.apply({"params": params}, inputs, enable_dropout=False,
                              method=rec.model.encode)  # fmt: skip
    for row, last in ((0, 2), (1, 4)):
        at_last = encoded[row : row + 1, last]
        logits = np.asarray(next_item_logits(params, at_last, scaled=scaled))[0, 1:]
        want = logits - np.log(np.exp(logits - logits.max()).sum()) - logits.max()
        np.testing.assert_allclose(logp[row], want, rtol=1e-5, atol=1e-5)

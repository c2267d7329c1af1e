"""The t5x boundary without launching t5x: decode order, params_axes accepted by t5x's train
state, metric definitions, and reading a t5x MODEL_DIR's config.gin."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.indexing.trie import build_prefix_table
from jaxrec.inference import decoding
from jaxrec.inference import metrics as eval_metrics
from jaxrec.inference.retrieval import Catalogue
from jaxrec.models import configs
from jaxrec.t5x_interop import bridge as t5x_bridge
from jaxrec.t5x_interop.model_dir import model_config, read_gin_config
from jaxrec.t5x_interop.network import T5XTransformer
from jaxrec.tasks import metrics
from tests.inference.test_beam_search import EOS, fake_model


def test_t5x_beam_search_puts_the_best_beam_last():
    """t5x keeps `decodes[:, -1]`: the best sequence; the full order is jaxrec's, reversed."""
    items = [[2, 3], [2, 4], [5, 3], [6, 7], [6, 8], [9]]
    tokens_to_logits, init_cache, score = fake_model()
    table = build_prefix_table(items, EOS)
    kw = dict(num_decodes=4, max_decode_len=table.max_length, constraint=table)
    inputs = jnp.zeros((2, table.max_length), jnp.int32)
    ours = decoding.beam_search(inputs, init_cache(2), tokens_to_logits, EOS, **kw)
    theirs = t5x_bridge.beam_search(inputs, init_cache(2), tokens_to_logits, EOS, **kw)
    np.testing.assert_array_equal(theirs[0], np.asarray(ours[0])[:, ::-1])
    assert np.all(np.diff(np.asarray(theirs[1]), axis=1) >= 0)  # increasing scores
    for b in range(2):
        best = max(items, key=lambda s: score(b, s))
        assert list(np.asarray(theirs[0][b, -1, : len(best)])) == best


def test_params_axes_are_what_t5x_train_state_needs():
    adafactor = pytest.importorskip("t5x.adafactor")
    train_state = pytest.importorskip("t5x.train_state")
    cfg = configs.get_config("tiny").replace(num_encoder_layers=1, num_decoder_layers=1)
    x = jnp.ones((2, 8), jnp.float32)  # t5x.eval initialises from float placeholders
    variables = T5XTransformer(cfg).init(jax.random.key(0), x, x, x, enable_dropout=False)
    optimizer = adafactor.Adafactor(logical_factor_rules=adafactor.standard_logical_factor_rules())
    state = train_state.FlaxOptimTrainState.create(optimizer, variables)  # validates the axes
    axes = state.params_axes
    assert axes["token_embedder"]["embedding_axes"].names == ("vocab", "embed")
    assert axes["decoder"]["layers_0"]["mlp"]["wi_0"]["kernel_axes"].names == ("embed", "mlp")
    assert not isinstance(state.params["token_embedder"]["embedding"], dict)


class _Source:
    """The parts of a registered source that the metrics read."""

    class renderer:  # noqa: N801
        strings = ["<a_0><b_0>", "<a_0><b_1>", "<a_1><b_0>", "<a_1><b_1>"]

    class vocabulary:  # noqa: N801
        eos_id = 1

        @staticmethod
        def encode(text):
            return [ord(c) for c in text]

    def item_token_ids(self):
        return [self.vocabulary.encode(s) for s in self.renderer.strings]

    def catalogue(self):
        return Catalogue(build_prefix_table(self.item_token_ids(), self.vocabulary.eos_id))


def test_retrieval_metric_ranks_t5x_beams_like_jaxrec_eval():
    post = metrics.task_metrics("retrieval", _Source())["postprocess_fn"]
    s = _Source.renderer.strings
    # t5x's beams, worst first; "" is an empty slot, "oops" no item.
    beams = [["", "oops", s[3], s[1]], [s[0], s[2], s[1], s[2]]]
    ranked = [post(b, is_target=False) for b in beams]
    assert ranked == [[1, 3], [2, 1, 0]]
    targets = [post(s[3], is_target=True), post(s[0], is_target=True)]
    got = metrics.retrieval_metric(targets, ranked)
    want = eval_metrics.retrieval_metrics(np.array([[1, 3, -1], [2, 1, 0]]), np.array([3, 0]))
    assert got == want and got["recall@1"] == 0.0 and got["recall@5"] == 1.0


def test_rating_metric_uses_the_best_decode():
    got = metrics.rating_metric(["4", "2.0"], [["1", "4"], "3 stars"])
    assert got["rmse"] == pytest.approx(np.sqrt(0.5)) and got["mae"] == pytest.approx(0.5)


def test_gin_config_of_a_t5x_model_dir():
    text = """from __gin__ import dynamic_registration
EMB_DIM = 32
ACTIVATION_DTYPE = 'bfloat16'
MIXTURE_OR_TASK_NAME = 'beauty_sid_cao'
TASK_FEATURE_LENGTHS = {'inputs': 512, 'targets': 64}
VOCAB_SIZE = @bridge.padded_vocab_size()
# Parameters for configs.T5Config:
configs.T5Config.dtype = %ACTIVATION_DTYPE
configs.T5Config.emb_dim = %EMB_DIM
configs.T5Config.mlp_activations = \\
    ('gelu', 'linear')
configs.T5Config.vocab_size = %VOCAB_SIZE
"""
    macros, fields = read_gin_config(text)
    assert macros["MIXTURE_OR_TASK_NAME"] == "beauty_sid_cao"
    assert macros["TASK_FEATURE_LENGTHS"] == {"inputs": 512, "targets": 64}
    assert "VOCAB_SIZE" not in macros and "vocab_size" not in fields
    assert fields == {"dtype": "bfloat16", "emb_dim": 32, "mlp_activations": ("gelu", "linear")}
    cfg = configs.get_config("tiny")
    x = jnp.ones((1, 4), jnp.int32)
    params = T5XTransformer(cfg).init(jax.random.key(0), x, x, x, enable_dropout=False)["params"]
    got = model_config(params, dict(fields, emb_dim=999))  # shapes come from the checkpoint
    assert got == cfg.replace(dtype="bfloat16", dropout_rate=0.0)


def test_ranking_metric_ranks_among_the_prompts_candidates():
    source = _Source()
    decoder = metrics.ItemDecoder(source)
    decoder.__dict__["_candidates"] = {"prompt a": (0, 2, 3), "prompt b": (1, 2)}
    post = metrics.task_metrics("ranking", source)["postprocess_fn"].func
    s = _Source.renderer.strings
    kw = dict(decoder=decoder, task="ranking")
    targets = [
        post(s[3], {"inputs_pretokenized": b"prompt a"}, True, **kw),
        post(s[1], {"inputs_pretokenized": b"prompt b"}, True, **kw),
    ]
    assert targets == [(3, (0, 2, 3)), (1, (1, 2))]
    # Best last; item 1 is no candidate of prompt a and is skipped there.
    ranked = [post([s[3], s[1], s[0]], None, False, **kw), post([s[1], s[2]], None, False, **kw)]
    got = metrics.ranking_metric(targets, ranked)
    assert got["hr@1"] == 0.0 and got["hr@5"] == 1.0  # rank 2 for both
    assert got["ndcg@5"] == pytest.approx(1 / np.log2(3))

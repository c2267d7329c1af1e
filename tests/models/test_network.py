"""The Flax T5 network: shapes, axis annotations, masking, packing and cached decoding."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.models import layers
from jaxrec.models.configs import get_config
from jaxrec.models.network import T5Config, Transformer

CFG = get_config("tiny", vocab_size=64, dropout_rate=0.0)


def _jit_apply(model):
    """`model.apply`, jitted: one compilation per shape instead of op-by-op dispatch."""
    return jax.jit(model.apply, static_argnames=("enable_dropout", "decode", "method", "mutable"))


def _batch(seed=0, batch=3, inputs=12, targets=6):
    rng = np.random.default_rng(seed)
    enc = rng.integers(2, CFG.vocab_size, (batch, inputs)).astype(np.int32)
    enc[0, inputs - 3 :] = 0
    tgt = rng.integers(2, CFG.vocab_size, (batch, targets)).astype(np.int32)
    tgt[1, targets - 2 :] = 0
    dec_in = np.concatenate([np.zeros((batch, 1), np.int32), tgt[:, :-1]], axis=1)
    dec_in[tgt == 0] = 0
    return enc, dec_in, tgt


@pytest.fixture(scope="module")
def model_and_params():
    model = Transformer(CFG)
    enc, dec_in, tgt = _batch()
    init = jax.jit(model.init, static_argnames="enable_dropout")
    variables = init(jax.random.key(0), enc, dec_in, tgt, enable_dropout=False)
    return model, variables


def test_param_tree_follows_t5x_layout_with_logical_axes(model_and_params):
    _, variables = model_and_params
    boxed = variables["params"]
    params = nn.meta.unbox(boxed)
    assert params["token_embedder"]["embedding"].shape == (64, 64)
    layer = params["decoder"]["layers_1"]
    assert set(layer) == {
        "pre_self_attention_layer_norm", "self_attention", "pre_cross_attention_layer_norm",
        "encoder_decoder_attention", "pre_mlp_layer_norm", "mlp",
    }  # fmt: skip
    assert layer["self_attention"]["query"]["kernel"].shape == (64, 4 * 16)
    assert layer["self_attention"]["out"]["kernel"].shape == (4 * 16, 64)
    assert set(layer["mlp"]) == {"wi_0", "wi_1", "wo"}
    assert params["encoder"]["relpos_bias"]["rel_embedding"].shape == (4, 32)
    assert params["decoder"]["logits_dense"]["kernel"].shape == (64, 64)
    assert "relpos_bias" not in params["encoder"]["layers_0"]["attention"]
    specs = nn.get_partition_spec(boxed)
    assert tuple(specs["token_embedder"]["embedding"]) == ("vocab", "embed")
    assert tuple(specs["encoder"]["layers_0"]["attention"]["key"]["kernel"]) == (
        "embed",
        "joined_kv",
    )
    assert tuple(specs["encoder"]["layers_0"]["mlp"]["wo"]["kernel"]) == ("mlp", "embed")
    assert tuple(specs["decoder"]["relpos_bias"]["rel_embedding"]) == ("heads", "relpos_buckets")
    leaves = jax.tree_util.tree_leaves(boxed, is_leaf=lambda x: isinstance(x, nn.Partitioned))
    assert all(isinstance(x, nn.Partitioned) for x in leaves)
    assert all(x.value.dtype == jnp.float32 for x in leaves)


def test_logits_shape_and_padding_invariance(model_and_params):
    model, variables = model_and_params
    apply = _jit_apply(model)
    enc, dec_in, tgt = _batch()
    logits = apply(variables, enc, dec_in, tgt, enable_dropout=False)
    assert logits.shape == (3, 6, 64) and logits.dtype == jnp.float32
    # Extra padding on the encoder side must not change any real position's logits.
    wide = np.pad(enc, ((0, 0), (0, 5)))
    logits_wide = apply(variables, wide, dec_in, tgt, enable_dropout=False)
    valid = tgt > 0
    np.testing.assert_allclose(np.asarray(logits)[valid], np.asarray(logits_wide)[valid], atol=1e-5)
    # Changing a padded input token's id (it stays masked as 0 ...) vs a real one does matter.
    changed = enc.copy()
    changed[2, 0] = (changed[2, 0] + 1) % 60 + 2
    logits_changed = apply(variables, changed, dec_in, tgt, enable_dropout=False)
    assert np.abs(np.asarray(logits_changed)[2] - np.asarray(logits)[2]).max() > 1e-4


def test_dropout_is_random_and_deterministic_when_disabled(model_and_params):
    _, variables = model_and_params  # dropout does not change the parameters
    model = Transformer(CFG.replace(dropout_rate=0.3))
    enc, dec_in, tgt = _batch()
    apply = _jit_apply(model)
    run = lambda key, on=True: apply(
        variables, enc, dec_in, tgt, enable_dropout=on, rngs={"dropout": key}
    )
    a, b = run(jax.random.key(1)), run(jax.random.key(2))
    assert np.abs(np.asarray(a) - np.asarray(b)).max() > 1e-3
    np.testing.assert_array_equal(np.asarray(a), np.asarray(run(jax.random.key(1))))
    c, d = run(jax.random.key(1), False), run(jax.random.key(2), False)
    np.testing.assert_array_equal(np.asarray(c), np.asarray(d))


def test_packed_segments_match_separate_examples(model_and_params):
    model, variables = model_and_params
    rng = np.random.default_rng(3)
    a_in, b_in = rng.integers(2, 64, 5), rng.integers(2, 64, 4)
    a_t, b_t = rng.integers(2, 64, 3), rng.integers(2, 64, 2)

    def shift(t):
        return np.concatenate([[0], t[:-1]])

    # One packed row: segments 1 and 2, then padding.
    enc = np.concatenate([a_in, b_in, [0, 0]])[None].astype(np.int32)
    enc_seg = np.array([[1] * 5 + [2] * 4 + [0, 0]], np.int32)
    tgt = np.concatenate([a_t, b_t, [0]])[None].astype(np.int32)
    dec_in = np.concatenate([shift(a_t), shift(b_t), [0]])[None].astype(np.int32)
    dec_seg = np.array([[1] * 3 + [2] * 2 + [0]], np.int32)
    apply = _jit_apply(model)
    packed = apply(
        variables, enc, dec_in, tgt, encoder_segment_ids=enc_seg, decoder_segment_ids=dec_seg,
        enable_dropout=False,
    )  # fmt: skip
    for inp, t, sl in ((a_in, a_t, slice(0, 3)), (b_in, b_t, slice(3, 5))):
        single = apply(
            variables, inp[None].astype(np.int32), shift(t)[None].astype(np.int32),
            t[None].astype(np.int32), enable_dropout=False,
        )  # fmt: skip
        np.testing.assert_allclose(np.asarray(packed)[0, sl], np.asarray(single)[0], atol=1e-5)


def test_cached_decoding_matches_teacher_forcing(model_and_params):
    model, variables = model_and_params
    enc, _, _ = _batch(seed=5)
    rng = np.random.default_rng(6)
    length = 7
    tgt = rng.integers(2, 64, (3, length)).astype(np.int32)  # no padding: every step is real
    dec_in = np.concatenate([np.zeros((3, 1), np.int32), tgt[:, :-1]], axis=1)
    params = variables["params"]
    apply = _jit_apply(model)
    full = apply({"params": params}, enc, dec_in, tgt, enable_dropout=False)

    cache = jax.eval_shape(
        lambda: model.init(
            jax.random.key(0), enc, dec_in, dec_in, enable_dropout=False, decode=True
        )["cache"]
    )
    cache = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), cache)
    assert cache["decoder"]["cache_index"].shape == ()
    sa = cache["decoder"]["layers_0"]["self_attention"]["cached_key"]
    assert sa.shape == (3, CFG.num_heads, length, CFG.head_dim)
    encoded = apply({"params": params}, enc, enable_dropout=False, method=Transformer.encode)

    @jax.jit
    def step(cache, token):
        logits, mutated = model.apply(
            {"params": params, "cache": cache}, encoded, enc, token, token,
            enable_dropout=False, decode=True, max_decode_length=length, mutable=["cache"],
            method=Transformer.decode,
        )  # fmt: skip
        return logits[:, 0], mutated["cache"]

    steps = []
    for t in range(length):
        logits, cache = step(cache, dec_in[:, t : t + 1])
        steps.append(logits)
    np.testing.assert_allclose(np.stack(steps, axis=1), np.asarray(full), atol=1e-4)
    assert int(cache["decoder"]["cache_index"]) == length


def test_beams_sharing_their_querys_encoder_rows_match_expanded_rows(model_and_params):
    """Decoder rows b * n .. (b + 1) * n - 1 may attend to encoder row b (one cross-attention
    cache per query, "fill" then "reuse"): same logits as copying the encodings to every row."""
    from jaxrec.inference.decoding import expand_rows
    from jaxrec.inference.generation import CROSS_ATTENTION, init_cache

    model, variables = model_and_params
    params = variables["params"]
    enc, _, _ = _batch(seed=7)
    beams, length = 4, 4
    tokens = np.random.default_rng(8).integers(2, 64, (3 * beams, length)).astype(np.int32)
    apply = _jit_apply(model)
    encoded = apply({"params": params}, enc, enable_dropout=False, method=Transformer.encode)
    enc_rows, encoded_rows = np.repeat(enc, beams, 0), jnp.repeat(encoded, beams, 0)

    def step(cache, enc_out, enc_tokens, token, mode):
        logits, mutated = model.apply(
            {"params": params, "cache": cache}, enc_out, enc_tokens, token, token,
            enable_dropout=False, decode=True, max_decode_length=length, mutable=["cache"],
            method=Transformer.decode, cross_cache=mode,
        )  # fmt: skip
        return logits[:, 0], mutated["cache"]

    step = jax.jit(step, static_argnames="mode")
    ref_cache = init_cache(model, 3 * beams, enc.shape[1], length)
    shared = expand_rows(
        init_cache(model, 3, enc.shape[1], length), beams, skip=lambda p: CROSS_ATTENTION in p
    )
    for t in range(length):
        want, ref_cache = step(ref_cache, encoded_rows, enc_rows, tokens[:, t : t + 1], "auto")
        got, shared = step(
            shared, encoded, enc, tokens[:, t : t + 1], "fill" if t == 0 else "reuse"
        )
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)
    cross = shared["decoder"]["layers_0"][CROSS_ATTENTION]["cached_key"]
    assert cross.shape[0] == 3  # one row per query, never copied to the beams

    with pytest.raises(ValueError, match="cannot share"):
        step(init_cache(model, 10, enc.shape[1], length), encoded, enc, tokens[:10, :1], "fill")
    with pytest.raises(ValueError, match="cross_cache must be"):
        step(ref_cache, encoded_rows, enc_rows, tokens[:, :1], "sometimes")


def test_relative_position_buckets_match_reference_values():
    buckets = layers.relative_position_buckets(1, 200, True, 32, 128)[0]
    # Keys after the query use the upper half; exact buckets below 8, log buckets up to 15.
    assert buckets[0] == 0 and buckets[1] == 17 and buckets[7] == 23
    assert buckets[8] == 24 and buckets[199] == 31
    causal = layers.relative_position_buckets(200, 1, False, 32, 128)[:, 0]
    assert causal[0] == 0 and causal[15] == 15 and causal[16] == 16 and causal[199] == 31
    assert np.all(np.diff(causal) >= 0)
    assert np.all(layers.relative_position_buckets(1, 50, False, 32, 128)[0, 1:] == 0)


def test_tied_output_layer_has_no_logits_dense(model_and_params):
    model = Transformer(CFG.replace(logits_via_embedding=True))
    enc, dec_in, tgt = _batch()
    shapes = jax.eval_shape(model.init, jax.random.key(0), enc, dec_in, tgt)
    assert "logits_dense" not in shapes["params"]["decoder"]
    params = dict(nn.meta.unbox(model_and_params[1]["params"]))
    params["decoder"] = {k: v for k, v in params["decoder"].items() if k != "logits_dense"}
    logits = _jit_apply(model)({"params": params}, enc, dec_in, tgt, enable_dropout=False)
    # Tied logits are the embedding product scaled by emb_dim**-0.5: finite and not huge.
    assert logits.shape == (3, 6, 64) and np.isfinite(np.asarray(logits)).all()


def test_config_is_importable_from_both_modules():
    from jaxrec.models import configs

    assert configs.T5Config is T5Config
    assert isinstance(hash(get_config("tiger")), int)
    with pytest.raises(ValueError, match="unknown model config"):
        get_config("huge")


def test_decoder_dropout_rate_sets_the_decoders_dropout_apart_from_the_encoders():
    enc, dec_in, tgt = _batch()

    def logits(cfg, seed):
        model = Transformer(cfg)
        variables = model.init(jax.random.key(0), enc, dec_in, tgt, enable_dropout=False)
        encoded = model.apply(variables, enc, enable_dropout=False, method=Transformer.encode)
        rngs = {"dropout": jax.random.key(seed)}
        enc_out = model.apply(variables, enc, rngs=rngs, method=Transformer.encode)
        dec_out = model.apply(variables, encoded, enc, dec_in, tgt, rngs=rngs,
                              method=Transformer.decode)  # fmt: skip
        return np.asarray(enc_out), np.asarray(dec_out)

    both = CFG.replace(dropout_rate=0.3)
    encoder_only = both.replace(decoder_dropout_rate=0.0)
    enc_a, dec_a = logits(encoder_only, 1)
    enc_b, dec_b = logits(encoder_only, 2)
    assert not np.allclose(enc_a, enc_b)  # the encoder still drops out
    np.testing.assert_array_equal(dec_a, dec_b)  # the decoder does not
    _, dec_c = logits(both, 1)
    _, dec_d = logits(both, 2)
    assert not np.allclose(dec_c, dec_d)  # without the override it follows dropout_rate

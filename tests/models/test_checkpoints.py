"""Checkpoint import/export: Hugging Face parity (safetensors and .bin), T5X, vocab resizing."""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.models import checkpoints
from jaxrec.models.configs import get_config
from jaxrec.models.network import Transformer

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

VOCAB = 200


def _hf_model(seed=0):
    torch.manual_seed(seed)
    config = transformers.T5Config(
        vocab_size=VOCAB, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2,
        num_heads=4, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
        dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
    )  # fmt: skip
    model = transformers.T5ForConditionalGeneration(config).eval()
    # An untied output layer like FLAN-T5's (transformers >= 5 ties it at construction).
    model.lm_head.weight = torch.nn.Parameter(torch.randn(VOCAB, 64) * 0.05)
    return model


def _inputs():
    # Inputs longer than 16 and 32 positions exercise the logarithmic relative-position buckets.
    rng = np.random.default_rng(0)
    enc = rng.integers(2, VOCAB, (3, 40)).astype(np.int32)
    enc[0, 25:] = 0
    enc[2, 9:] = 0
    labels = rng.integers(2, VOCAB, (3, 7)).astype(np.int32)
    labels[1, 4:] = 0
    dec_in = np.concatenate([np.zeros((3, 1), np.int32), labels[:, :-1]], axis=1)  # shift right
    return enc, dec_in, labels


def _hf_logits(model, enc, dec_in):
    with torch.no_grad():
        out = model(
            input_ids=torch.from_numpy(enc).long(),
            attention_mask=torch.from_numpy(enc > 0).long(),
            decoder_input_ids=torch.from_numpy(dec_in).long(),
        )
    return out.logits.numpy()


def _assert_parity(config, params, model):
    enc, dec_in, labels = _inputs()
    apply = jax.jit(Transformer(config).apply, static_argnames="enable_dropout")
    ours = apply({"params": params}, enc, dec_in, labels, enable_dropout=False)
    theirs = _hf_logits(model, enc, dec_in)
    valid = labels > 0  # t5x masks padded target rows; HF computes them anyway
    assert np.abs(np.asarray(ours)[valid] - theirs[valid]).max() <= 1e-4


def test_hf_safetensors_parity(tmp_path):
    model = _hf_model()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    config, params = checkpoints.load_hf_checkpoint(str(tmp_path))
    assert not config.logits_via_embedding and config.mlp_activations == ("gelu", "linear")
    assert (config.emb_dim, config.num_heads, config.head_dim, config.mlp_dim) == (64, 4, 16, 128)
    _assert_parity(config, params, model)


def test_hf_pytorch_bin_parity(tmp_path):
    model = _hf_model(seed=1)
    model.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    config, params = checkpoints.load_hf_checkpoint(str(tmp_path))
    _assert_parity(config, params, model)


def test_export_to_hf_round_trip(tmp_path):
    config = get_config("tiny", vocab_size=VOCAB, dropout_rate=0.0)
    tokens = jnp.ones((1, 3), jnp.int32)
    variables = Transformer(config).init(jax.random.key(3), tokens, tokens, tokens)
    params = jax.tree_util.tree_map(np.asarray, nn.meta.unbox(variables["params"]))
    checkpoints.save_hf_checkpoint(str(tmp_path), config, params)
    model = transformers.T5ForConditionalGeneration.from_pretrained(str(tmp_path)).eval()
    _assert_parity(config, params, model)
    loaded_config, loaded = checkpoints.load_hf_checkpoint(str(tmp_path))
    assert loaded_config.replace(dropout_rate=0.0) == config
    jax.tree_util.tree_map(np.testing.assert_array_equal, loaded, params)


def test_hf_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        checkpoints.load_hf_checkpoint(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="not T5"):
        checkpoints.load_hf_checkpoint(str(tmp_path))


@pytest.fixture(scope="module")
def tiny_params():
    config = get_config("tiny", vocab_size=96)
    tokens = jnp.ones((1, 3), jnp.int32)
    variables = Transformer(config).init(jax.random.key(7), tokens, tokens, tokens)
    return config, jax.tree_util.tree_map(np.asarray, nn.meta.unbox(variables["params"]))


def test_t5x_legacy_checkpoint_round_trip(tmp_path, tiny_params):
    config, params = tiny_params
    ckpt_dir = checkpoints.save_t5x_checkpoint(str(tmp_path), params, step=1184000)
    # T5X's on-disk layout: msgpack `checkpoint` + one zarr array per parameter.
    assert (tmp_path / "checkpoint_1184000" / "checkpoint").is_file()
    array_dir = tmp_path / "checkpoint_1184000" / "target.encoder.layers_0.attention.key.kernel"
    assert (array_dir / ".zarray").is_file()
    loaded_config, loaded = checkpoints.load_t5x_checkpoint(ckpt_dir)
    assert loaded_config.replace(dropout_rate=config.dropout_rate) == config
    jax.tree_util.tree_map(np.testing.assert_array_equal, loaded, params)
    # Moving the directory keeps it readable: array paths are relative.
    moved = tmp_path / "moved"
    (tmp_path / "checkpoint_1184000").rename(moved)
    _, again = checkpoints.load_t5x_checkpoint(str(moved / "checkpoint"))
    np.testing.assert_array_equal(again["decoder"]["logits_dense"]["kernel"],
                                  params["decoder"]["logits_dense"]["kernel"])  # fmt: skip


def test_t5x_checkpoint_on_a_remote_filesystem(tiny_params):
    """A non-local path (TF's in-memory `ram://` filesystem standing in for gs://) is read
    through gfile: here a msgpack whose leaves are inline arrays, as t5x writes small ones."""
    from flax import serialization
    from tensorflow.io import gfile

    config, params = tiny_params
    contents = {"version": 3, "optimizer": {"target": params, "state": {"step": np.int32(5)}}}
    gfile.makedirs("ram://bucket/flan/checkpoint_5")
    with gfile.GFile("ram://bucket/flan/checkpoint_5/checkpoint", "wb") as f:
        f.write(serialization.msgpack_serialize(contents))
    loaded_config, loaded = checkpoints.load_t5x_checkpoint("ram://bucket/flan/checkpoint_5")
    assert loaded_config.emb_dim == config.emb_dim
    jax.tree_util.tree_map(np.testing.assert_array_equal, loaded, params)
    with pytest.raises(FileNotFoundError, match="not found"):
        checkpoints.load_t5x_checkpoint("ram://bucket/flan/checkpoint_6")


def test_t5x_array_leaves_on_gcs_use_the_gcs_kvstore():
    from jaxrec.t5x_interop import checkpoint as t5x_checkpoint

    spec = t5x_checkpoint.kvstore_spec(
        "gs://t5-data/pretrained_models/t5x/flan_t5_base/checkpoint_1184000",
        "target.encoder.layers_0.attention.key.kernel",
    )
    assert spec == {
        "driver": "gcs",
        "bucket": "t5-data",
        "path": "pretrained_models/t5x/flan_t5_base/checkpoint_1184000/"
        "target.encoder.layers_0.attention.key.kernel",
    }
    assert t5x_checkpoint.kvstore_spec("/ckpt/checkpoint_1", "a.b") == {
        "driver": "file", "path": "/ckpt/checkpoint_1/a.b"
    }  # fmt: skip
    with pytest.raises(ValueError, match="local paths or gs://"):
        t5x_checkpoint.kvstore_spec("s3://bucket/ckpt", "a.b")
    with pytest.raises(ValueError, match="local directory"):
        checkpoints.load_hf_checkpoint("gs://bucket/flan-t5-base")


def test_orbax_pytree_checkpoint(tmp_path, tiny_params):
    ocp = pytest.importorskip("orbax.checkpoint")
    config, params = tiny_params
    path = tmp_path / "orbax"
    ocp.PyTreeCheckpointer().save(str(path), {"target": params, "state": {"step": 3}})
    loaded_config, loaded = checkpoints.load_t5x_checkpoint(str(path))
    assert loaded_config.emb_dim == config.emb_dim
    jax.tree_util.tree_map(np.testing.assert_array_equal, loaded, params)
    with pytest.raises(FileNotFoundError):
        checkpoints.load_t5x_checkpoint(str(tmp_path / "missing"))


def test_resize_vocab(tiny_params):
    _, params = tiny_params
    resized = checkpoints.resize_vocab(params, 150, jax.random.key(0), pad_to_multiple=128)
    emb = resized["token_embedder"]["embedding"]
    head = resized["decoder"]["logits_dense"]["kernel"]
    assert emb.shape == (256, 64) and head.shape == (64, 256)
    old = params["token_embedder"]["embedding"]
    np.testing.assert_array_equal(emb[:96], old)
    np.testing.assert_array_equal(head[:, :96], params["decoder"]["logits_dense"]["kernel"])
    new = emb[96:]
    assert np.abs(new.mean() - old.mean()) < 0.2 and abs(new.std() / old.std() - 1) < 0.2
    assert not np.allclose(new[0], new[1])
    assert params["token_embedder"]["embedding"].shape == (96, 64)  # input untouched
    shrunk = checkpoints.resize_vocab(params, 50, 0)
    np.testing.assert_array_equal(shrunk["token_embedder"]["embedding"], old[:50])

"""Named configurations: published FLAN-T5 parameter counts (no allocation) and gin files."""

import math
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from jaxrec.models.configs import CONFIGS, get_config
from jaxrec.models.network import Transformer

GIN_DIR = pathlib.Path(__file__).resolve().parents[2] / "gin" / "models"

# google/flan-t5-* model cards (T5 v1.1 LM-adapted shapes, untied output layer).
PUBLISHED = {
    "small": 76_961_152,
    "base": 247_577_856,
    "large": 783_150_080,
    "xl": 2_849_757_184,
    "xxl": 11_135_332_352,
}


def count_params(config) -> int:
    tokens = jnp.ones((1, 2), jnp.int32)
    shapes = jax.eval_shape(
        lambda: Transformer(config).init(jax.random.key(0), tokens, tokens, tokens)
    )
    leaves = jax.tree_util.tree_leaves(nn.meta.unbox(shapes["params"]))
    return sum(math.prod(x.shape) for x in leaves)


# large and xl take ~5 s each to trace on the shared CPU; the same code path is covered by the
# smallest and the largest size in the fast suite.
@pytest.mark.parametrize(
    "name",
    ["small", "base", "xxl", pytest.param("large", marks=pytest.mark.slow),
     pytest.param("xl", marks=pytest.mark.slow)],
)  # fmt: skip
def test_flan_t5_parameter_counts(name):
    assert count_params(get_config(name)) == PUBLISHED[name]


def test_tiger_shape_and_vocab_override():
    cfg = get_config("tiger", vocab_size=1027)
    assert (cfg.emb_dim, cfg.num_heads, cfg.head_dim, cfg.mlp_dim) == (128, 6, 64, 1024)
    assert (cfg.num_encoder_layers, cfg.num_decoder_layers, cfg.vocab_size) == (4, 4, 1027)
    # embedding + untied output layer grow by 2 * emb_dim per token
    assert count_params(cfg) - count_params(get_config("tiger", vocab_size=1000)) == 27 * 2 * 128
    assert get_config("flan_t5_small") == CONFIGS["small"]


def test_gin_files_bind_the_same_configs():
    gin = pytest.importorskip("gin")
    pytest.importorskip("jaxrec.train")  # registers jaxrec.models.configs.T5Config and train

    for name, expected in CONFIGS.items():
        gin.clear_config()
        gin.parse_config_file(str(GIN_DIR / f"flan_t5_{name}.gin"))
        reference = gin.query_parameter("jaxrec.train.train.model_config")
        assert reference.configurable.name == "T5Config", name
        assert gin.get_configurable("jaxrec.models.configs.T5Config")() == expected, name
    gin.clear_config()

"""Mesh creation, logical axis rules, sharded init and batch placement (8 forced CPU devices)."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxrec import partitioning
from jaxrec.models import configs, network
from jaxrec.training import optimizers
from jaxrec.training import step as train_step


@pytest.mark.parametrize(
    "shape,expected",
    [("auto", (8, 1)), ("2x4", (2, 4)), ("4,2", (4, 2)), ((1, 8), (1, 8)), ("-1x2", (4, 2))],
)
def test_parse_mesh_shape(shape, expected):
    assert partitioning.parse_mesh_shape(shape, 8) == expected


@pytest.mark.parametrize("shape", ["3x2", "2x2x2", "axb", (-1, -1)])
def test_parse_mesh_shape_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match="mesh shape"):
        partitioning.parse_mesh_shape(shape, 8)


def test_create_mesh_axes():
    mesh = partitioning.create_mesh("2x4")
    assert mesh.axis_names == ("data", "model")
    assert dict(mesh.shape) == {"data": 2, "model": 4}


def test_rules_map_t5x_names():
    rules = dict(partitioning.standard_logical_axis_rules())
    assert rules["batch"] == "data"
    for name in ("vocab", "mlp", "heads", "joined_kv"):
        assert rules[name] == "model"
    for name in ("embed", "length", "kv"):
        assert rules[name] is None
    assert dict(partitioning.standard_logical_axis_rules(fsdp=True))["embed"] == "data"


def _setup(fsdp: bool):
    model = network.Transformer(
        configs.get_config("tiny", num_encoder_layers=1, num_decoder_layers=1)
    )
    mesh = partitioning.create_mesh((2, 4))
    rules = partitioning.standard_logical_axis_rules(fsdp=fsdp)
    tx = optimizers.make_optimizer("adafactor", 1e-3, min_dim_size_to_factor=32)
    return mesh, rules, train_step.setup_state(model, tx, mesh, rules, input_len=8, target_len=4)


@pytest.mark.parametrize("fsdp", [False, True])
def test_param_and_optimizer_shardings_follow_rules(fsdp):
    _, _, setup = _setup(fsdp)
    params = setup.shardings.params
    embed = "data" if fsdp else None
    assert params["token_embedder"]["embedding"].spec == P("model", embed)  # (vocab, embed)
    mlp = params["encoder"]["layers_0"]["mlp"]
    assert mlp["wi_0"]["kernel"].spec == P(embed, "model")  # (embed, mlp)
    assert mlp["wo"]["kernel"].spec == P("model", embed)  # (mlp, embed)
    attn = params["encoder"]["layers_0"]["attention"]
    assert attn["query"]["kernel"].spec == P(embed, "model")  # (embed, joined_kv)
    # Adafactor's factored moments inherit the spec of the dimension they keep.
    opt = setup.shardings.opt_state[0]
    wi_shape = setup.abstract_state.params["encoder"]["layers_0"]["mlp"]["wi_0"]["kernel"].shape
    v_row = opt.v_row["encoder"]["layers_0"]["mlp"]["wi_0"]["kernel"]
    v_col = opt.v_col["encoder"]["layers_0"]["mlp"]["wi_0"]["kernel"]
    assert wi_shape == (64, 128)
    assert v_row.spec == P(embed) and v_col.spec == P("model")


def test_init_materialises_shards_on_devices():
    mesh, rules, setup = _setup(fsdp=False)
    with partitioning.mesh_context(mesh, rules):
        state = setup.init(jax.random.key(0))
    emb = state.params["token_embedder"]["embedding"]  # [vocab 512, embed 64]
    assert emb.sharding.spec == P("model", None)
    assert {s.data.shape for s in emb.addressable_shards} == {(128, 64)}
    assert len({s.device for s in emb.addressable_shards}) == 8
    assert int(state.step) == 0


def test_shard_batch_splits_rows_over_data():
    mesh = partitioning.create_mesh((4, 2))
    host = {"x": np.arange(16 * 3).reshape(16, 3).astype(np.int32)}
    out = partitioning.shard_batch(host, mesh)["x"]
    assert out.shape == (16, 3)
    assert out.sharding.spec == P("data")
    assert {s.data.shape for s in out.addressable_shards} == {(4, 3)}
    np.testing.assert_array_equal(np.asarray(out), host["x"])


def test_single_host_does_not_initialise_distributed(monkeypatch):
    monkeypatch.delenv("JAXREC_MULTIHOST", raising=False)
    monkeypatch.delenv("JAX_COORDINATOR_ADDRESS", raising=False)
    assert partitioning.maybe_initialize_distributed() is False
    assert partitioning.maybe_initialize_distributed(False) is False

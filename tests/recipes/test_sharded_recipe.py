"""The semantic-id recipe past one device: `run_tiger` on a mesh of the 8 forced host devices,
every training batch and every retrieval batch split over its `data` axis, trains and evaluates
as the same run on one device does: the same losses (to float tolerance), the same validation
curve and the same test metrics."""

import dataclasses

import jax
import pytest

from jaxrec import partitioning
from jaxrec.data import canonical, prepare, synthetic
from jaxrec.data.processing import PrepareOptions
from jaxrec.indexing.schemes import random_index
from jaxrec.recipes import reproduce, sid_retrieval
from jaxrec.recipes.reproduce import RecipeConfig
from jaxrec.recipes.sid_retrieval import TrainSettings

STEPS, EVERY = 30, 15
CFG = RecipeConfig(
    model="tiny", model_overrides=(("num_encoder_layers", 1), ("num_decoder_layers", 1)),
    steps=STEPS, eval_every_steps=EVERY, validation_users=48, num_beams=8,
    eval_batch_size=16,
    train=TrainSettings(history=8, batch_size=16, learning_rate=0.005, warmup_steps=5),
)  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A small synthetic dataset (planted topics) and a random 2-level index of its items."""
    root = tmp_path_factory.mktemp("synth")
    synthetic.generate(str(root / "raw"), num_users=120, num_items=60, num_topics=4, seed=2)
    ds = prepare.prepare_dataset("synthetic", str(root / "raw"),
                                 options=PrepareOptions(num_negatives=10, seed=2))  # fmt: skip
    canonical.write_dataset(ds, str(root / "data"))
    index_path = str(root / "data" / f"{ds.name}.index.json")
    random_index(ds.num_items, seed=0, base=8).to_json(index_path, dataset=ds)
    return ds, str(root / "data"), index_path


class _Spy:
    """Where the recipe's batches went: the training batches' meshes (`shard_batch`) and the
    shardings of the retrieval batches handed to the beam search."""

    def __init__(self, monkeypatch):
        self.train_meshes, self.retrieval_shardings = [], []
        shard_batch, make_generate_fn = partitioning.shard_batch, sid_retrieval.make_generate_fn

        def spied_shard_batch(batch, mesh):
            self.train_meshes.append(dict(mesh.shape))
            return shard_batch(batch, mesh)

        def spied_make_generate_fn(*args, **kwargs):
            generate = make_generate_fn(*args, **kwargs)

            def spied(params, encoder_inputs, constraint):
                self.retrieval_shardings.append(getattr(encoder_inputs, "sharding", None))
                return generate(params, encoder_inputs, constraint)

            return spied

        monkeypatch.setattr(partitioning, "shard_batch", spied_shard_batch)
        monkeypatch.setattr(sid_retrieval, "make_generate_fn", spied_make_generate_fn)


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory):
    """The same recipe on a 1-device mesh and on the 8-device mesh `data`=8."""
    ds, data_dir, index_path = data
    assert jax.device_count() == 8  # tests/conftest.py forces 8 host devices
    out = {}
    for shape in ("1x1", "8x1"):
        with pytest.MonkeyPatch.context() as mp:
            spy = _Spy(mp)
            result = reproduce.run_tiger(
                data_dir, str(tmp_path_factory.mktemp(f"run_{shape}")),
                dataclasses.replace(CFG, mesh_shape=shape), index_path, ds,
            )  # fmt: skip
        out[shape] = (result, spy)
    return out


def test_the_eight_device_run_splits_every_batch_over_data(runs):
    _, one = runs["1x1"]
    _, eight = runs["8x1"]
    assert one.train_meshes == [{"data": 1, "model": 1}] * STEPS
    assert eight.train_meshes == [{"data": 8, "model": 1}] * STEPS
    assert eight.retrieval_shardings  # validations and test
    for sharding in eight.retrieval_shardings:
        assert sharding.spec == jax.sharding.PartitionSpec("data")
        assert len(sharding.device_set) == 8
    assert all(len(s.device_set) == 1 for s in one.retrieval_shardings)


def test_same_losses_on_one_and_eight_devices(runs):
    one, eight = runs["1x1"][0], runs["8x1"][0]
    assert [s for s, _ in eight["losses"]] == list(range(1, STEPS + 1))
    for (step, a), (_, b) in zip(one["losses"], eight["losses"], strict=True):
        assert b == pytest.approx(a, abs=2e-4, rel=1e-4), step
    assert eight["losses"][-1][1] < eight["losses"][0][1]  # it trains


def test_same_validation_curve_and_test_metrics(runs):
    one, eight = runs["1x1"][0], runs["8x1"][0]
    keys = ("recall@5", "recall@10", "ndcg@5", "ndcg@10", "invalid_rate", "num_users")
    assert [c["step"] for c in eight["curve"]] == [EVERY, STEPS]
    for a, b in zip(one["curve"], eight["curve"], strict=True):
        assert {k: b[k] for k in keys} == pytest.approx({k: a[k] for k in keys}, abs=1e-6)
    assert eight["validation"]["selected_step"] == one["validation"]["selected_step"]
    assert eight["test"] == pytest.approx(one["test"], abs=1e-6)
    assert eight["test"]["num_users"] == one["test"]["num_users"] > 0
    assert eight["test"]["recall@20"] > 0  # a metric that can differ, not zeros that cannot

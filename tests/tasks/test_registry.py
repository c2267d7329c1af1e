"""seqio registration: names, idempotency, tokenized features, feature converters, eval pieces."""

import importlib
import os

import numpy as np
import pytest
import seqio

from jaxrec.data.dataset import DataError
from jaxrec.tasks import registry
from jaxrec.tasks.examples import TaskOptions

LENGTHS = {"inputs": 512, "targets": 64}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def names(tiny_dir, cache):
    return registry.register_dataset_tasks(tiny_dir, item_repr="sid", cache_dir=cache)


def test_names_and_mixtures(names):
    expected_tasks = ["retrieval", "ranking", "rating", "mim", "mlm", "bpr", "item2index",
                      "index2item", "fusionseqrec"]  # fmt: skip
    assert names == [f"tiny_sid_{t}" for t in expected_tasks] + ["tiny_sid_cao", "tiny_sid_lcrec"]
    cao = seqio.get_mixture_or_task("tiny_sid_cao")
    assert sorted(t.name for t in cao.tasks) == sorted(
        f"tiny_sid_{t}" for t in ("retrieval", "ranking", "rating", "mim", "mlm", "bpr")
    )
    lcrec = seqio.get_mixture_or_task("tiny_sid_lcrec")
    assert sorted(t.name for t in lcrec.tasks) == sorted(
        f"tiny_sid_{t}" for t in ("retrieval", "item2index", "index2item", "fusionseqrec")
    )
    assert set(registry.SKIPPED["tiny_sid"]) == {"itemsearch", "preference"}
    task = seqio.get_mixture_or_task("tiny_sid_retrieval")
    assert set(task.splits) == {"train", "validation", "test"}


def test_registration_is_idempotent_and_replaceable(tiny_dir, cache, names):
    before = seqio.get_mixture_or_task("tiny_sid_retrieval")
    assert registry.register_dataset_tasks(tiny_dir, item_repr="sid", cache_dir=cache) == names
    assert seqio.get_mixture_or_task("tiny_sid_retrieval") is before
    other = registry.register_dataset_tasks(
        tiny_dir, item_repr="sid", cache_dir=cache, options=TaskOptions(seed=3)
    )
    assert other == names
    after = seqio.get_mixture_or_task("tiny_sid_retrieval")
    assert after is not before
    assert registry.source_of("tiny_sid_retrieval").options.seed == 3
    registry.register_dataset_tasks(tiny_dir, item_repr="sid", cache_dir=cache)  # restore


def test_tokenized_targets_match_text(names):
    source = registry.source_of("tiny_sid_retrieval")
    vocab = source.vocabulary
    texts = source.examples("retrieval", "validation")
    task = seqio.get_mixture_or_task("tiny_sid_retrieval")
    ds = task.get_dataset(LENGTHS, split="validation", shuffle=False)
    got = list(ds.as_numpy_iterator())
    assert len(got) == len(texts)
    for ex, text in zip(got, texts, strict=True):
        assert ex["targets"].tolist() == vocab.encode(text.targets) + [vocab.eos_id]
        assert ex["inputs"].tolist() == vocab.encode(text.inputs) + [vocab.eos_id]
        # An sid target is exactly its item tokens + EOS.
        assert all(t >= vocab.first_item_id for t in ex["targets"][:-1])
        assert vocab.decode(ex["targets"].tolist()) == text.targets


@pytest.mark.parametrize("pack", [False, True])
def test_feature_converter(names, pack):
    conv = seqio.EncDecFeatureConverter(pack=pack)
    name = "tiny_sid_cao" if pack else "tiny_sid_retrieval"  # one mixture is enough (slow)
    ds = seqio.get_dataset(name, LENGTHS, dataset_split="train", shuffle=True, seed=0,
                           feature_converter=conv)  # fmt: skip
    batch = next(ds.batch(8).as_numpy_iterator())
    assert batch["encoder_input_tokens"].shape == (8, 512)
    assert batch["decoder_target_tokens"].shape == (8, 64)
    vocab = registry.source_of("tiny_sid_cao").vocabulary
    assert batch["decoder_target_tokens"].max() < vocab.vocab_size
    eos_per_row = (batch["decoder_target_tokens"] == vocab.eos_id).sum(axis=1)
    if pack:
        assert "decoder_segment_ids" in batch
        assert (batch["decoder_segment_ids"].max(axis=1) >= 2).any()  # rows hold several
        assert np.array_equal(eos_per_row, batch["decoder_segment_ids"].max(axis=1))
    else:
        assert "decoder_segment_ids" not in batch
        assert (eos_per_row == 1).all()
        # Decoder inputs are the targets shifted right (teacher forcing).
        assert (
            batch["decoder_input_tokens"][:, 1:] == batch["decoder_target_tokens"][:, :-1]
        ).all()


def test_mixture_rates(tiny_dir, cache, names):
    mix = seqio.get_mixture_or_task("tiny_sid_cao")
    source = registry.source_of("tiny_sid_cao")
    for task in mix.tasks:
        short = task.name[len("tiny_sid_") :]
        assert mix.get_rate(task) == len(source.examples(short, "train"))
    registry.register_dataset_tasks(
        tiny_dir, item_repr="sid", cache_dir=cache, mixture_rates={"mim": 0.25}
    )
    mix = seqio.get_mixture_or_task("tiny_sid_cao")
    rates = {t.name: mix.get_rate(t) for t in mix.tasks}
    assert rates["tiny_sid_mim"] == 0.25
    registry.register_dataset_tasks(tiny_dir, item_repr="sid", cache_dir=cache)


def test_eval_examples_are_the_task_prompts(names):
    source = registry.source_of("tiny_sid_ranking")
    for task in ("retrieval", "ranking", "rating"):
        evals = registry.eval_examples("tiny_sid_cao", "test", task)
        assert [e.inputs for e in evals] == [e.inputs for e in source.examples(task, "test")]
        assert [e.target_item for e in evals] == source.dataset.targets("test").tolist()
    with pytest.raises(KeyError):
        registry.eval_examples("nope", "test")


def test_item_token_ids_are_the_targets(names):
    source = registry.source_of("tiny_sid_retrieval")
    table = source.item_token_ids()
    assert len(table) == source.dataset.num_items
    assert len({tuple(t) for t in table}) == len(table)  # the tiny index has no collisions
    for ex in source.examples("retrieval", "test")[:5]:
        assert table[ex.target_item] == source.vocabulary.encode(ex.targets)
        assert all(len(t) == 3 for t in table)


def test_other_representations(tiny_dir, cache):
    names = registry.register_reprs(tiny_dir, reprs=("id", "id_title", "title"), cache_dir=cache)
    assert "tiny_id_retrieval" in names and "tiny_title_cao" in names
    assert "tiny_id_item2index" not in names  # alignment needs semantic ids
    source = registry.source_of("tiny_id_title_retrieval")
    ex = source.examples("retrieval", "test")[0]
    target = source.dataset.targets("test")[0]
    assert ex.targets == f'item_{target} "{source.renderer.titles[target]}"'
    assert source.vocabulary.item_tokens == ()
    # Text representations still round-trip through the vocabulary.
    vocab = source.vocabulary
    assert vocab.decode(vocab.encode(ex.inputs)) == ex.inputs


def test_sid_without_index_is_a_clear_error(tmp_path, tiny_dir):
    import shutil

    d = tmp_path / "noindex"
    shutil.copytree(tiny_dir, d, ignore=shutil.ignore_patterns("*.index.json", "cache"))
    with pytest.raises(DataError, match="index"):
        registry.register_dataset_tasks(str(d), item_repr="sid")
    assert registry.register_reprs(str(d), cache_dir=str(tmp_path)) != []


def test_tasks_module_registers_from_env(tiny_dir, cache, monkeypatch):
    monkeypatch.setenv("JAXREC_SYNTHETIC_DIR", tiny_dir)
    monkeypatch.setenv("JAXREC_ITEM_REPRS", "id")
    monkeypatch.setenv("JAXREC_CACHE_DIR", cache)
    import tasks.synthetic

    mod = importlib.reload(tasks.synthetic)
    assert "synthetic_id_retrieval" in mod.REGISTERED
    assert seqio.get_mixture_or_task("synthetic_id_cao") is not None
    monkeypatch.setenv("JAXREC_SYNTHETIC_DIR", os.path.join(tiny_dir, "missing"))
    assert importlib.reload(tasks.synthetic).REGISTERED == []

"""`jaxrec eval` end to end on a tiny dataset and a MODEL_DIR laid out like `jaxrec.train`'s."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax.linen import meta

from jaxrec.cli import main
from jaxrec.data.canonical import write_dataset
from jaxrec.data.dataset import DataError, Dataset, Item
from jaxrec.indexing.item_index import ItemIndex
from jaxrec.inference import evaluate
from jaxrec.inference import metrics as eval_metrics
from jaxrec.models.configs import get_config
from jaxrec.models.network import Transformer
from jaxrec.tasks import registry
from jaxrec.tasks.examples import eval_examples

NUM_ITEMS, NUM_USERS = 30, 12
WORDS = ["rose", "shea", "cocoa", "argan", "mint", "citrus", "velvet", "matte", "silky", "pure"]
KINDS = ["lotion", "serum", "cream", "balm", "oil", "mask", "soap", "gel"]


def tiny_dataset(seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    seqs = [rng.choice(NUM_ITEMS, size=int(rng.integers(4, 9)), replace=False) for _ in range(12)]
    items = [
        Item(
            original_id=f"I{i}",
            title=f"{WORDS[i % 10].title()} {KINDS[i % 8].title()} {i}",
            description=f"A {WORDS[(3 * i) % 10]} {KINDS[i % 8]}.",
        )
        for i in range(NUM_ITEMS)
    ]
    negatives = np.stack(
        [rng.choice(np.setdiff1d(np.arange(NUM_ITEMS), s), size=20, replace=False) for s in seqs]
    )
    ratings = [rng.integers(1, 6, size=len(s)).astype(np.float32) for s in seqs]
    return Dataset("Mini", [f"U{u}" for u in range(NUM_USERS)], seqs, items, ratings=ratings,
                   negatives=negatives, metadata={"name": "Mini"})  # fmt: skip


def tiny_index() -> ItemIndex:
    # 3 levels x 4 codes; items 7 and 19 share one code (a collision, as in real indices).
    codes = [(i % 4, (i // 4) % 4, (i // 16) % 4) for i in range(NUM_ITEMS)]
    codes[19] = codes[7]
    return ItemIndex(tuple(tuple(f"<{c}_{v}>" for c, v in zip("abc", t, strict=True))
                           for t in codes))  # fmt: skip


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    ds = tiny_dataset()
    write_dataset(ds, str(data))
    tiny_index().to_json(str(data / "Mini.index.json"), dataset=ds)
    names = registry.register_dataset_tasks(str(data), item_repr="sid", tasks=("retrieval",))
    vocab = registry.source_of(names[0]).vocabulary
    config = get_config("tiny", vocab_size=-(-vocab.vocab_size // 128) * 128, dropout_rate=0.0)
    model = Transformer(config)
    x = jnp.ones((1, 8), jnp.int32)
    params = meta.unbox(model.init(jax.random.PRNGKey(1), x, x, x, enable_dropout=False)["params"])
    model_dir = tmp_path_factory.mktemp("model")
    with ocp.CheckpointManager(str(model_dir / "checkpoints")) as mgr:
        state = {"step": jnp.array(7), "params": params, "opt_state": {"count": jnp.array(7)}}
        mgr.save(7, args=ocp.args.StandardSave(state))
        mgr.wait_until_finished()
    cfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.__dict__.items()}
    (model_dir / "model_config.json").write_text(json.dumps(cfg))
    vocab_info = {"vocab_size": vocab.vocab_size, "eos_id": 1, "pad_id": 0,
                  "mixture_or_task_name": "mini_sid_cao",
                  "task_feature_lengths": {"inputs": 96, "targets": 8}}  # fmt: skip
    (model_dir / "vocabulary.json").write_text(json.dumps(vocab_info))
    return str(data), str(model_dir), vocab, params


def run_cli(capsys, *argv):
    assert main(["eval", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_retrieval_is_exact_full_ranking(setup, capsys):
    data, model_dir, vocab, params = setup
    out = os.path.join(model_dir, "rows.jsonl")
    res = run_cli(capsys, "--model_dir", model_dir, "--dataset", data, "--split", "test",
                  "--num_beams", "32", "--batch_size", "8", "--out", out)  # fmt: skip
    for k in (1, 5, 10, 20):
        assert f"recall@{k}" in res and f"ndcg@{k}" in res
    assert res["num_users"] == NUM_USERS and res["invalid_rate"] == 0.0 and res["step"] == 7
    with open(out) as f:
        rows = [json.loads(line) for line in f]
    assert [r["user"] for r in rows] == list(range(NUM_USERS))
    targets = tiny_dataset().targets("test")
    assert [r["target"] for r in rows] == targets.tolist()
    ranked = np.array([r["items"] + [-1] * (20 - len(r["items"])) for r in rows])
    assert res == pytest.approx({**res, **eval_metrics.retrieval_metrics(ranked, targets)})

    # 32 beams >= 29 distinct codes: the top 20 must be the exact best items by likelihood.
    loaded = evaluate.load_model_dir(model_dir)
    source = registry.source_of("mini_sid_retrieval")
    exs = eval_examples("retrieval", source.dataset, source.renderer, "test", source.options)
    inputs = evaluate.encode_prompts(vocab.encode, [e.inputs for e in exs[:3]], 96, 1)
    item_tokens = [vocab.encode(s) for s in source.renderer.strings]
    cands = np.tile(np.arange(NUM_ITEMS), (3, 1))
    scores = evaluate.score_candidates(loaded, inputs, cands, item_tokens, 1)
    for u in range(3):
        best = sorted(range(NUM_ITEMS), key=lambda i: (-round(scores[u, i], 4), i))[:20]
        assert rows[u]["items"] == best
    # Registration resolved the planted collision (items 7 and 19): two paths, each one item
    # (expanding a shared leaf is tested in tests/inference/test_beam_search.py).
    assert item_tokens[7] != item_tokens[19] and item_tokens[7][:-1] == item_tokens[19][:-1]
    assert all(len(g) == 1 for g in source.catalogue().table.leaf_groups.values())


def test_ranking_and_rating(setup, capsys):
    data, model_dir, _, _ = setup
    res = run_cli(capsys, "--model_dir", model_dir, "--dataset", data, "--task", "ranking",
                  "--split", "validation", "--templates", "0,1", "--max_users", "6")  # fmt: skip
    assert res["num_users"] == 6 and set(res["templates"]) == {"0", "1"}
    assert 0.0 <= res["hr@1"] <= res["hr@5"] <= res["hr@20"] <= 1.0
    assert res["hr@1"] == pytest.approx(np.mean([res["templates"][t]["hr@1"] for t in ("0", "1")]))
    res = run_cli(capsys, "--model_dir", model_dir, "--dataset", data, "--task", "rating",
                  "--max_users", "4")  # fmt: skip
    assert res["num_ratings"] == 4 and 0 <= res["unparsable_ratings"] <= 4
    if res["unparsable_ratings"] == 4:  # nothing parsed: no RMSE, written as null (strict JSON)
        assert res["rmse"] is None and res["mae"] is None


def test_bad_model_dir_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "model_config.json").write_text("{bad json")
    assert main(["eval", "--model_dir", str(tmp_path), "--dataset", str(tmp_path)]) == 2
    assert "model_config.json: line 1" in capsys.readouterr().err


@pytest.mark.parametrize("item_repr", ["title", "id"])
def test_titles_and_numeric_ids_decode_exactly_through_the_same_trie(setup, item_repr):
    """Item strings of other representations become prefix tables over their SentencePiece
    tokens: the search returns only catalogue items, and with beams >= items, the exact best."""
    data, model_dir, _, _ = setup
    loaded = evaluate.load_model_dir(model_dir)
    names = registry.register_dataset_tasks(data, item_repr=item_repr, tasks=("retrieval",))
    source = registry.source_of(names[0])
    vocab, strings = source.vocabulary, source.renderer.strings
    assert len({tuple(vocab.encode(s)) for s in strings}) == NUM_ITEMS  # distinct token paths
    exs = eval_examples("retrieval", source.dataset, source.renderer, "test", source.options)[:4]
    metrics, rows = evaluate.evaluate(loaded, exs, "retrieval", source, 96, num_beams=32,
                                      batch_size=4)  # fmt: skip
    assert metrics["invalid_rate"] == 0.0 and all(len(r["items"]) == 20 for r in rows)

    inputs = evaluate.encode_prompts(vocab.encode, [e.inputs for e in exs], 96, 1)
    item_tokens = [vocab.encode(s) for s in strings]
    cands = np.tile(np.arange(NUM_ITEMS), (len(exs), 1))
    scores = evaluate.score_candidates(loaded, inputs, cands, item_tokens, 1)
    for u, row in enumerate(rows):
        best = sorted(range(NUM_ITEMS), key=lambda i: (-round(scores[u, i], 4), i))[:20]
        assert row["items"] == best


def test_sharded_evaluation_matches_one_device(setup, capsys):
    """`--mesh 2x4` (8 forced CPU devices): parameters sharded by the logical rules, prompts
    split over `data`; the same items, ranks and metrics as on one device."""
    data, model_dir, _, _ = setup
    single = evaluate.load_model_dir(model_dir)
    sharded = evaluate.load_model_dir(model_dir, mesh_shape="2x4")
    assert dict(sharded.mesh.shape) == {"data": 2, "model": 4}
    mlp = sharded.params["decoder"]["layers_0"]["mlp"]["wi_0"]["kernel"]
    assert mlp.sharding.spec == jax.sharding.PartitionSpec(None, "model")
    assert sharded.batch_size(5) == 6 and single.batch_size(5) == 5

    names = registry.register_dataset_tasks(data, item_repr="sid", tasks=("retrieval",))
    source = registry.source_of(names[0])
    vocab = source.vocabulary
    exs = eval_examples("retrieval", source.dataset, source.renderer, "test", source.options)
    inputs = evaluate.encode_prompts(vocab.encode, [e.inputs for e in exs], 96, 1)
    a_items, a_scores, _ = evaluate.retrieve(single, inputs, source.catalogue(), 8, batch_size=5)
    b_items, b_scores, _ = evaluate.retrieve(sharded, inputs, source.catalogue(), 8, batch_size=5)
    np.testing.assert_array_equal(a_items, b_items)
    np.testing.assert_allclose(a_scores, b_scores, atol=1e-4)

    res = run_cli(capsys, "--model_dir", model_dir, "--dataset", data, "--task", "ranking",
                  "--max_users", "6", "--mesh", "auto")  # fmt: skip
    ref = run_cli(capsys, "--model_dir", model_dir, "--dataset", data, "--task", "ranking",
                  "--max_users", "6")  # fmt: skip
    assert res == pytest.approx(ref)
    assert main(["eval", "--model_dir", model_dir, "--dataset", data, "--mesh", "3x3"]) == 2
    assert "--mesh: mesh shape (3, 3) needs 9 devices" in capsys.readouterr().err


def test_sharded_restore_of_a_mismatched_config_is_a_clear_error(setup, tmp_path):
    _, model_dir, _, _ = setup
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    cfg = json.loads((copy / "model_config.json").read_text())
    (copy / "model_config.json").write_text(json.dumps(dict(cfg, logits_via_embedding=True)))
    with pytest.raises(DataError, match="parameters do not match model_config.json"):
        evaluate.load_model_dir(str(copy), mesh_shape="2x4")

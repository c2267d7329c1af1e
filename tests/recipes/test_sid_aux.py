"""Auxiliary tasks of the semantic-id recipe: the examples say what `jaxrec.recipes.sid_aux`
says, packing keeps them apart (packed losses equal one-example-per-row losses) and
`TrainingData` mixes them into the retrieval rows, drawn anew each epoch."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.data.dataset import DataError, Dataset, Item
from jaxrec.indexing.item_index import ItemIndex
from jaxrec.indexing.sid_vocab import NUM_RESERVED, SidVocabulary
from jaxrec.models.configs import get_config
from jaxrec.models.network import Transformer
from jaxrec.recipes import prefix_shared, sid_aux
from jaxrec.recipes.sid_retrieval import TrainingData, TrainSettings
from jaxrec.training.step import token_losses

NUM_ITEMS, K = 30, 3


def _dataset(attributes: bool = True) -> Dataset:
    rng = np.random.default_rng(0)
    seqs = [rng.choice(NUM_ITEMS, size=int(n), replace=False) for n in rng.integers(4, 26, 12)]
    items = [
        Item(str(i), attributes=tuple(sorted(rng.choice(9, size=1 + i % 4, replace=False) + 100)))
        if attributes else Item(str(i))
        for i in range(NUM_ITEMS)
    ]  # fmt: skip
    return Dataset("Mini", [f"u{u}" for u in range(len(seqs))], seqs, items)


def _vocab(dataset: Dataset, tasks=sid_aux.TASKS) -> SidVocabulary:
    rng = np.random.default_rng(1)
    letters = "abc"
    tokens = [[f"<{letters[j]}_{c}>" for j, c in enumerate(rng.integers(0, 8, K))]
              for _ in range(NUM_ITEMS)]  # fmt: skip
    for i, t in enumerate(tokens):  # distinct ids
        t[-1] = f"<c_{i}>"
    base = SidVocabulary.from_index(ItemIndex(tuple(map(tuple, tokens))))
    return base.with_extra_tokens(sid_aux.extra_tokens(tasks, dataset))


def test_extra_tokens_follow_the_item_tokens_and_leave_item_ids_alone():
    ds = _dataset()
    base = SidVocabulary.from_index(ItemIndex(tuple((f"<a_{i}>", "<b_0>") for i in range(4))))
    vocab = base.with_extra_tokens(sid_aux.extra_tokens(["mim", "index2item"], ds))
    assert np.array_equal(vocab.codes, base.codes)
    assert vocab.token_id("<task_mim>") == NUM_RESERVED + len(base.tokens)
    assert vocab.vocab_size == base.vocab_size + 2 + 2 + 9  # 2 markers, mask, sep, 9 attributes
    assert vocab.decode([vocab.token_id("<attr_104>"), vocab.codes[2][0], 1]) == "<attr_104><a_2>"
    with pytest.raises(ValueError, match="already in the vocabulary"):
        vocab.with_extra_tokens(["<mask>"])
    with pytest.raises(KeyError, match="<task_bpr>"):
        vocab.token_id("<task_bpr>")


def test_examples_carry_their_targets():
    ds = _dataset()
    vocab = _vocab(ds)
    codes = prefix_shared.with_item_ids(vocab.codes)
    aux = sid_aux.AuxTasks(sid_aux.TASKS, ds, vocab, codes, history=8)
    rng = np.random.default_rng(3)
    ids = {name: vocab.token_id(name) for name in vocab.extra_tokens}
    for w, seen in zip(aux.windows, aux.seen, strict=True):
        ex = aux.mim(w, rng)
        assert ex.inputs[0, 0] == ids["<task_mim>"]
        items = w[-7:]
        masked = np.flatnonzero(ex.inputs[1:, 0] == ids["<mask>"])
        assert len(masked) == 1 and len(ex.inputs) == len(items) + 1
        assert ex.target == tuple(vocab.codes[items[masked[0]]])
        others = np.delete(np.arange(len(items)), masked)
        assert np.array_equal(ex.inputs[1:][others], codes[items[others]])

        ex = aux.bpr(w, seen, rng)
        sep = int(np.flatnonzero(ex.inputs[:, 0] == ids["<sep>"])[0])
        assert ex.inputs[0, 0] == ids["<task_bpr>"] and sep == len(ex.inputs) - 3
        pair = [int(row[-1]) - 1 for row in ex.inputs[sep + 1 :]]  # item id + 1 in the last slot
        positive = [i for i in pair if tuple(vocab.codes[i]) == ex.target]
        assert len(positive) == 1 and len([i for i in pair if i not in seen]) == 1
        at = list(w).index(positive[0])  # the history is the window just before the positive
        assert at >= 1 and np.array_equal(ex.inputs[1:sep], codes[w[:at][-4:]])
    for i in range(NUM_ITEMS):
        ex = aux.item2index(i)
        assert ex.target == tuple(vocab.codes[i])
        assert [int(x) for x in ex.inputs[1:, 0]] == [
            ids[f"<attr_{a}>"] for a in ds.items[i].attributes
        ]
        ex = aux.index2item(i)
        assert np.array_equal(ex.inputs[1, :K], vocab.codes[i]) and ex.inputs[1, K] == 0
        assert ex.target == tuple(ids[f"<attr_{a}>"] for a in ds.items[i].attributes)


def test_packing_places_targets_after_their_segments_content():
    ex = [
        sid_aux.Example(np.array([[5, 0], [6, 7]]), (8, 9)),
        sid_aux.Example(np.array([[5, 0]]), (3, 4, 5, 6, 7)),  # needs 2 positions: padded
        sid_aux.Example(np.array([[9, 0], [10, 11], [12, 13]]), (14,)),
    ]
    b = sid_aux.pack_examples(ex, length=4, k=2, eos_id=1)
    assert b["encoder_input_tokens"][:, :, 0].tolist() == [[5, 6, 0, 5], [9, 10, 12, 0]]
    assert b["encoder_segment_ids"].tolist() == [[1, 1, 2, 2], [1, 1, 1, 0]]
    assert b["decoder_target_tokens"][0].tolist() == [8, 9, 1, 0, 0, 0, 3, 4, 5, 6, 7, 1]
    assert b["decoder_input_tokens"][0].tolist() == [0, 8, 9, 0, 0, 0, 0, 3, 4, 5, 6, 7]
    assert b["decoder_segment_ids"][0].tolist() == [1, 1, 1, 0, 0, 0, 2, 2, 2, 2, 2, 2]
    assert b["decoder_cross_positions"][0].tolist() == [1, 1, 1, 0, 0, 0, 3, 3, 3, 3, 3, 3]
    assert b["decoder_target_tokens"][1, :2].tolist() == [14, 1]
    assert b["decoder_cross_positions"][1, :2].tolist() == [2, 2]
    with pytest.raises(ValueError, match="needs 5 positions"):
        sid_aux.pack_examples([sid_aux.Example(np.ones((5, 2), np.int32), (3,))], 4, 2, 1)


def _loss_sums(model, params, batch):
    logits = model.apply(
        {"params": params}, batch["encoder_input_tokens"], batch["decoder_input_tokens"],
        batch["decoder_target_tokens"], enable_dropout=False,
        encoder_segment_ids=batch["encoder_segment_ids"],
        decoder_segment_ids=batch["decoder_segment_ids"],
        decoder_cross_positions=batch["decoder_cross_positions"],
    )  # fmt: skip
    targets = batch["decoder_target_tokens"]
    loss, _ = token_losses(logits, targets, 0.0, 0.0)
    return np.asarray(jnp.sum(loss * (targets > 0), axis=1))


def test_packed_examples_train_as_if_each_had_its_own_row():
    ds = _dataset()
    vocab = _vocab(ds)
    codes = prefix_shared.with_item_ids(vocab.codes)
    aux = sid_aux.AuxTasks(sid_aux.TASKS, ds, vocab, codes, history=10)
    examples = aux.examples(np.random.default_rng(0), rate=0.3)
    packed = sid_aux.pack_examples(examples, 10, K, vocab.eos_id)
    alone = [sid_aux.pack_examples([e], 10, K, vocab.eos_id) for e in examples]
    alone = {k: np.concatenate([a[k] for a in alone]) for k in packed}
    assert len(packed["encoder_input_tokens"]) < len(examples)  # several examples per row
    cfg = get_config(
        "tiny", vocab_size=vocab.padded_vocab_size(), dropout_rate=0.0, encoder_causal=True,
        num_encoder_layers=2, num_input_items=NUM_ITEMS, cross_recency_bias=True,
    )  # fmt: skip
    model = Transformer(cfg)
    init = {k: jnp.asarray(v[:2]) for k, v in packed.items()}
    params = nn.unbox(model.init(jax.random.key(0), **init)["params"])
    table = params["decoder"]["recency_bias"]["rel_embedding"]  # zero-initialised
    params["decoder"]["recency_bias"]["rel_embedding"] = jnp.linspace(-2, 2, table.size).reshape(
        table.shape
    )
    total_packed = _loss_sums(model, params, packed).sum()
    total_alone = _loss_sums(model, params, alone).sum()
    np.testing.assert_allclose(total_packed, total_alone, rtol=2e-5)
    n_targets = sum(len(e.target) + 1 for e in examples)
    assert int((packed["decoder_target_tokens"] > 0).sum()) == n_targets


def test_training_data_mixes_auxiliary_rows_drawn_anew_each_epoch():
    ds = _dataset()
    vocab = _vocab(ds, ("mim", "bpr"))
    plain = TrainingData(ds, vocab, TrainSettings(batch_size=4, history=8))
    settings = TrainSettings(batch_size=4, history=8, aux_tasks=("mim", "bpr"))
    mixed = TrainingData(ds, vocab, settings)
    assert mixed.num_rows == plain.num_rows and mixed.num_aux_rows > 0
    assert mixed.steps_per_epoch == (plain.num_rows + mixed.num_aux_rows) // 4
    mim = vocab.token_id("<task_mim>")
    seen_epochs = []
    for epoch in range(2):
        it = mixed.batches(epoch * mixed.steps_per_epoch)
        rows = [next(it) for _ in range(mixed.steps_per_epoch)]
        enc = np.concatenate([b["encoder_input_tokens"] for b in rows])
        assert all(b["encoder_input_tokens"].shape == (4, 8, K) for b in rows)
        starts = enc[:, :, 0] == mim
        assert starts.any()  # auxiliary rows are in the epoch
        seen_epochs.append(enc[starts.any(axis=1)])
    assert len(seen_epochs[0]) and not np.array_equal(seen_epochs[0], seen_epochs[1][:1])
    assert len(mixed._epoch_aux(1)["encoder_input_tokens"]) == mixed.num_aux_rows


def test_bad_task_settings_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="unknown aux_tasks"):
        TrainSettings(aux_tasks=("mlm",))
    with pytest.raises(ValueError, match="prefix_shared"):
        TrainSettings(mode="per_prefix", aux_tasks=("mim",))
    bare = _dataset(attributes=False)
    with pytest.raises(DataError, match="no item has attributes"):
        sid_aux.check_tasks(["item2index"], bare)


def test_next_item_targets_cover_retrieval_rows_only():
    ds = _dataset()
    vocab = _vocab(ds, ("mim",))
    codes = prefix_shared.with_item_ids(vocab.codes)
    settings = TrainSettings(batch_size=4, history=8, aux_tasks=("mim",), next_item_loss=0.5)
    data = TrainingData(ds, vocab, settings, codes)
    mim = vocab.token_id("<task_mim>")
    it = data.batches(0)
    for _ in range(data.steps_per_epoch):
        b = next(it)
        enc, nxt = b["encoder_input_tokens"], b["encoder_next_items"]
        aux_rows = (enc[:, :, 0] == mim).any(axis=1)
        assert not nxt[aux_rows].any()  # auxiliary rows carry no next-item targets
        real = b["encoder_segment_ids"][~aux_rows] > 0
        assert ((nxt[~aux_rows] > 0) == real).all()  # every retrieval position has one
        # the next item of position p is the item whose codes decoder block p emits
        dec = b["decoder_target_tokens"][~aux_rows].reshape(len(real), 8, K + 1)[..., :K]
        want = np.where(real[..., None], vocab.codes[np.maximum(nxt[~aux_rows] - 1, 0)], 0)
        assert np.array_equal(dec, want)
    with pytest.raises(ValueError, match="item-id inputs"):
        TrainingData(ds, vocab, TrainSettings(next_item_loss=0.5))

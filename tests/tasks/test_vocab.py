"""RecVocabulary: item tokens are single ids, never split; Python and TF agree and round-trip."""

import pickle

import numpy as np
import pytest
import tensorflow as tf

from jaxrec.data.dataset import DataError
from jaxrec.tasks.templates import corpus
from jaxrec.tasks.vocab import RecVocabulary, train_sentencepiece

ITEM_TOKENS = [f"<{c}_{k}>" for c in "abcd" for k in range(16)]
TEXTS = [
    "Lavender body lotion with shea butter",
    "Hydrating face cream for dry skin",
    "Rose scented hand soap, 3 pack",
    *corpus(),
]
SAMPLES = [
    "<a_1><b_2><c_3><d_4>",
    "History: <a_1><b_2><c_3><d_4>, <a_12><b_0><c_15><d_9>. Next?",
    "x<a_3>y <b_4>z",
    "Fill in: rose <extra_id_0> soap <extra_id_1>",
    "unseen characters: ünïcödé 漢字 {braces} [MASK]",
    "<a_1> <b_2>",
    "",
]


@pytest.fixture(scope="module")
def spm_path(tmp_path_factory):
    return train_sentencepiece(TEXTS, str(tmp_path_factory.mktemp("spm")), vocab_size=200)


@pytest.fixture(scope="module")
def vocab(spm_path):
    return RecVocabulary(spm_path, ITEM_TOKENS)


def test_layout_and_size(vocab):
    first = vocab.first_item_id
    assert vocab.vocab_size == first + len(ITEM_TOKENS)
    assert vocab.extra_id(0) == first - 1 and vocab.extra_id(99) == first - 100
    assert (vocab.pad_id, vocab.eos_id, vocab.unk_id) == (0, 1, 2)
    assert vocab.encode("<extra_id_0>") == [vocab.extra_id(0)]
    for k, tok in enumerate(ITEM_TOKENS):
        assert vocab.encode(tok) == [first + k]  # one id each, appended in order
        assert vocab.item_token_id(tok) == first + k


@pytest.mark.parametrize("text", SAMPLES)
def test_round_trip_python_and_tf(vocab, text):
    ids = vocab.encode(text)
    tf_ids = vocab.encode_tf(tf.constant(text)).numpy().tolist()
    assert tf_ids == ids
    assert vocab.decode(ids) == text
    assert vocab.decode_tf(tf.constant(ids, tf.int32)).numpy().decode() == text


def test_item_tokens_never_split(vocab):
    first = vocab.first_item_id
    ids = vocab.encode("a<a_1>b<b_15>, <c_7><d_0>")
    item_ids = [i for i in ids if i >= first]
    assert item_ids == [vocab.item_token_id(t) for t in ("<a_1>", "<b_15>", "<c_7>", "<d_0>")]
    # The pieces of a token's text never appear on their own.
    assert vocab.encode("<a_1>") == [vocab.item_token_id("<a_1>")]
    # A target that is just an item is exactly its token ids (no leading space piece).
    assert vocab.encode("<a_1><b_2><c_3><d_4>") == [
        vocab.item_token_id(t) for t in ("<a_1>", "<b_2>", "<c_3>", "<d_4>")
    ]


def test_encode_tf_inside_a_dataset_graph(vocab):
    ds = tf.data.Dataset.from_tensor_slices(SAMPLES).map(vocab.encode_tf)
    got = [x.tolist() for x in ds.as_numpy_iterator()]
    assert got == [vocab.encode(s) for s in SAMPLES]


def test_decode_tf_batch_and_eos(vocab):
    ids = vocab.encode("<a_1><b_2>") + [vocab.eos_id] + vocab.encode("tail")
    assert vocab.decode(ids) == "<a_1><b_2>"
    batch = tf.constant([vocab.encode("<a_1>") + [0], vocab.encode("<b_2><c_3>")], tf.int32)
    assert [s.decode() for s in vocab.decode_tf(batch).numpy()] == ["<a_1>", "<b_2><c_3>"]
    # Out-of-range ids decode as unknown rather than crashing.
    assert vocab.decode([vocab.vocab_size + 5]) == vocab.decode([vocab.unk_id])


def test_item_token_ids_for_index_and_text(vocab):
    class _Index:
        num_items = 2

        def format_item(self, i):
            return ["<a_1><b_2>", "<a_3><b_4>"][i]

    assert vocab.item_token_ids(_Index()) == [
        [vocab.item_token_id("<a_1>"), vocab.item_token_id("<b_2>")],
        [vocab.item_token_id("<a_3>"), vocab.item_token_id("<b_4>")],
    ]
    titles = ["Rose soap", "Lavender lotion"]
    assert vocab.item_token_ids(titles) == [vocab.encode(t) for t in titles]
    assert all(i < vocab.first_item_id for ids in vocab.item_token_ids(titles) for i in ids)


def test_training_is_cached_and_deterministic(spm_path, tmp_path):
    again = train_sentencepiece(TEXTS, str(tmp_path), vocab_size=200)
    with open(spm_path, "rb") as a, open(again, "rb") as b:
        assert a.read() == b.read()
    assert train_sentencepiece(TEXTS, str(tmp_path), vocab_size=200) == again
    other = train_sentencepiece(TEXTS[:3], str(tmp_path), vocab_size=200)
    assert other != again
    with pytest.raises(DataError):
        train_sentencepiece(["", "  "], str(tmp_path))


def test_pickle_equality_and_lazy_path(spm_path, vocab):
    clone = pickle.loads(pickle.dumps(vocab))
    assert clone == vocab and hash(clone) == hash(vocab)
    assert clone.encode(SAMPLES[1]) == vocab.encode(SAMPLES[1])
    assert RecVocabulary(spm_path, ITEM_TOKENS[:3]) != vocab
    calls = []
    lazy = RecVocabulary(lambda: calls.append(1) or spm_path, ITEM_TOKENS)
    assert calls == []  # nothing trained or loaded until first use
    assert lazy.encode("<a_2>") == vocab.encode("<a_2>") and calls == [1]


def test_bad_item_tokens(spm_path):
    with pytest.raises(DataError):
        RecVocabulary(spm_path, ["item_1"])
    with pytest.raises(DataError):
        RecVocabulary(spm_path, ["<a_1>", "<a_1>"])


def test_seqio_tokenize_uses_it(vocab):
    import seqio

    ds = tf.data.Dataset.from_tensor_slices({"targets": ["<a_1><b_2>"]})
    out = seqio.preprocessors.tokenize(
        ds, {"targets": seqio.Feature(vocab, add_eos=True)}, with_eos=True
    )
    got = next(out.as_numpy_iterator())["targets"]
    assert np.array_equal(got, vocab.encode("<a_1><b_2>") + [vocab.eos_id])

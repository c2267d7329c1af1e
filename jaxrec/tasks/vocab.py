"""One seqio vocabulary: a T5 SentencePiece model, its sentinels, then the item tokens.

    ids   0 .. P-1          SentencePiece pieces (0 pad, 1 EOS, 2 unk; FLAN-T5: P = 32,000)
          P .. P+E-1        extra ids / sentinels, `<extra_id_0>` = P+E-1 (seqio/T5 order)
          P+E .. P+E+T-1    item tokens (`<a_12>`, ...), one id each, in `ItemIndex` order

Item tokens are added to the SentencePiece model proto as USER_DEFINED pieces, the mechanism
seqio itself uses for sentinels. SentencePiece then never splits them, in Python and inside
TF graphs (tensorflow_text runs the same C++ model), so `encode`/`encode_tf` agree id for id.
Unlike sentinels they carry no leading "▁", so they match inside words too ("<a_1><b_2>").
One fix-up is needed: SentencePiece's dummy prefix turns a text that *starts* with an item token
into ["▁", "<a_1>", ...]; that lone "▁" is dropped (by an id test, in both runtimes) so a target
"<a_1><b_2><c_3><d_4>" is exactly its four ids.

`vocab_size` is the new total, so a model's embedding can be resized to it.
Where no pretrained model is available, `train_sentencepiece` fits a small model on the
dataset's own text (cached by content hash, deterministic).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import seqio
import tensorflow as tf

from jaxrec.data.dataset import DataError

log = logging.getLogger(__name__)

FLAN_T5_SPM = "gs://t5-data/vocabs/cc_all.32000.100extra/sentencepiece.model"
NUM_EXTRA_IDS = 100
ITEM_TOKEN = re.compile(r"<[a-z]_\d+>")
SPM_DUMMY_PREFIX = "▁"


class RecVocabulary(seqio.Vocabulary):
    """SentencePiece + `extra_ids` sentinels + item tokens as single ids.

    Args:
      spm_path: SentencePiece model file (local or gs://; pad=0, EOS=1, unk=2 as in T5), or
        a function returning one (called on first use, e.g. to train a local model lazily).
      item_tokens: new tokens in id order, e.g. `ItemIndex.item_tokens()`.
      extra_ids: sentinels appended by seqio's convention (100 for FLAN-T5).
    """

    def __init__(
        self,
        spm_path: str | Callable[[], str],
        item_tokens: Sequence[str] = (),
        extra_ids: int = 100,
    ):
        self._spm_path = spm_path
        self._item_tokens = tuple(item_tokens)
        self._num_extra = extra_ids
        self._sp = None  # (SentencePieceProcessor, serialized proto, first item id)
        bad = [t for t in self._item_tokens if not ITEM_TOKEN.fullmatch(t)]
        if bad:
            raise DataError(f"item tokens must look like <x_N>; got {bad[:5]}")
        if len(set(self._item_tokens)) != len(self._item_tokens):
            raise DataError("item tokens must be distinct")
        # seqio-level extra ids are 0: our sentinels live inside the base range so that
        # `vocab_size` is simply the total and item ids come after them.
        super().__init__(extra_ids=0)

    # -- loading -----------------------------------------------------------------------------
    def __getstate__(self):
        state = self.__dict__.copy()
        state["_sp"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    def _load(self):
        if self._sp is not None:
            return self._sp
        import sentencepiece as spm
        from sentencepiece import sentencepiece_model_pb2 as pb

        base = seqio.SentencePieceVocabulary(self.spm_path, extra_ids=self._num_extra)
        proto = pb.ModelProto.FromString(base.sp_model)
        existing = {p.piece for p in proto.pieces}
        clash = [t for t in self._item_tokens if t in existing]
        if clash:
            raise DataError(f"{self.spm_path}: item tokens already in the model: {clash[:5]}")
        first_item = len(proto.pieces)
        for tok in self._item_tokens:
            proto.pieces.add(piece=tok, score=0.0, type=pb.ModelProto.SentencePiece.USER_DEFINED)
        serialized = proto.SerializeToString()
        processor = spm.SentencePieceProcessor()
        processor.LoadFromSerializedProto(serialized)
        if (processor.pad_id(), processor.eos_id(), processor.unk_id()) != (0, 1, 2):
            raise DataError(f"{self.spm_path}: expected pad=0, EOS=1, unk=2 (T5 convention)")
        self._space_id = processor.PieceToId(SPM_DUMMY_PREFIX)
        self._sp = (processor, serialized, first_item)
        return self._sp

    @property
    def spm_path(self) -> str:
        """The SentencePiece model file (resolving a lazy path on first use)."""
        if callable(self._spm_path):
            self._spm_path = self._spm_path()
        return self._spm_path

    @property
    def item_tokens(self) -> tuple[str, ...]:
        return self._item_tokens

    @property
    def first_item_id(self) -> int:
        """Id of the first item token (= SentencePiece pieces + extra ids)."""
        return self._load()[2]

    @property
    def num_extra_ids(self) -> int:
        return self._num_extra

    def extra_id(self, k: int) -> int:
        """Id of sentinel `<extra_id_k>` (seqio order: `<extra_id_0>` is the highest)."""
        return self.first_item_id - 1 - k

    def item_token_id(self, token: str) -> int:
        return self.first_item_id + self._item_tokens.index(token)

    # -- seqio.Vocabulary --------------------------------------------------------------------
    @property
    def eos_id(self) -> int:
        return 1

    @property
    def unk_id(self) -> int:
        return 2

    @property
    def _base_vocab_size(self) -> int:
        return self.first_item_id + len(self._item_tokens)

    @property
    def vocab_size(self) -> int:
        """Total ids: pieces + extra ids + item tokens (resize the embedding to this)."""
        return self._base_vocab_size

    def _encode(self, s: str) -> list[int]:
        processor, _, first_item = self._load()
        ids = processor.EncodeAsIds(s)
        if len(ids) > 1 and ids[0] == self._space_id and ids[1] >= first_item:
            ids = ids[1:]
        return ids

    def _decode(self, ids: Iterable[int]) -> str:
        processor, _, _ = self._load()
        size = self._base_vocab_size
        return processor.DecodeIds([int(i) if 0 <= i < size else self.unk_id for i in ids])

    def _tf_tokenizer(self):
        import tensorflow_text as tf_text

        return tf_text.SentencepieceTokenizer(model=self._load()[1])

    def _encode_tf(self, s: tf.Tensor) -> tf.Tensor:
        """Scalar string -> [len] int32 (the same ids as `encode`)."""
        _, _, first_item = self._load()
        ids = self._tf_tokenizer().tokenize(s)  # [len]
        if ids.shape.rank != 1:
            raise ValueError("encode_tf expects a scalar string")
        n = tf.size(ids)
        padded = tf.concat([ids, tf.zeros([2], ids.dtype)], axis=0)
        drop = tf.logical_and(
            n > 1,
            tf.logical_and(
                tf.equal(padded[0], self._space_id), tf.greater_equal(padded[1], first_item)
            ),
        )
        return ids[tf.cast(drop, tf.int32) :]

    def _decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
        """[..., len] int32 -> [...] strings."""
        return self._tf_tokenizer().detokenize(ids)

    def __eq__(self, other) -> bool:
        if self is other:
            return True
        if not isinstance(other, RecVocabulary):
            return False
        return (self._spm_path, self._item_tokens, self._num_extra) == (
            other._spm_path,
            other._item_tokens,
            other._num_extra,
        )

    def __hash__(self) -> int:
        return hash((self._item_tokens, self._num_extra))

    def __str__(self) -> str:
        return (
            f"RecVocabulary(spm={self.spm_path}, extra_ids={self._num_extra}, "
            f"item_tokens={len(self._item_tokens)})"
        )

    # -- item id tables ----------------------------------------------------------------------
    def item_token_ids(self, items) -> list[list[int]]:
        """Token ids of every item as a decoder emits it (for prefix tables).

        Args:
          items: an `ItemIndex` (uses `format_item`) or a sequence of item strings (e.g. titles
            or "item_1234" in text modes, tokenized by SentencePiece).
        """
        if hasattr(items, "format_item"):
            texts = [items.format_item(i) for i in range(items.num_items)]
        else:
            texts = list(items)
        return [self._encode(t) for t in texts]


# -- a SentencePiece model for machines without FLAN-T5's -------------------------------------
def train_sentencepiece(
    texts: Iterable[str], cache_dir: str, vocab_size: int = 4000, model_type: str = "unigram"
) -> str:
    """Train (or reuse) a small T5-style SentencePiece model on `texts`; returns its path.

    pad=0, EOS=1, unk=2, no BOS, byte fallback (any text round-trips). The file name carries a
    hash of the text and options, so the same inputs reuse the cached model and training is
    deterministic (single thread, no sentence sampling).
    """
    import sentencepiece as spm

    lines = [t.replace("\n", " ").strip() for t in texts]
    lines = [t for t in lines if t]
    if not lines:
        raise DataError("no text to train a SentencePiece model on")
    # Byte fallback needs its 256 byte pieces plus every character as a piece.
    min_size = 3 + 256 + len(set("".join(lines))) + 1
    if vocab_size < min_size:
        log.info(
            "SentencePiece vocab_size %d < %d required pieces; using %d",
            vocab_size,
            min_size,
            min_size,
        )
        vocab_size = min_size
    digest = hashlib.sha256()
    digest.update(f"{vocab_size}:{model_type}:v1\n".encode())
    for t in lines:
        digest.update(t.encode("utf-8") + b"\n")
    os.makedirs(cache_dir, exist_ok=True)
    path = os.path.join(cache_dir, f"spm_{vocab_size}_{digest.hexdigest()[:16]}.model")
    if os.path.exists(path):
        return path
    log.info(
        "no pretrained SentencePiece model given: training a %d-piece %s model on %d lines of "
        "dataset text -> %s",
        vocab_size,
        model_type,
        len(lines),
        path,
    )
    with tempfile.TemporaryDirectory() as tmp:
        corpus = os.path.join(tmp, "corpus.txt")
        with open(corpus, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        prefix = os.path.join(tmp, "spm")
        spm.SentencePieceTrainer.Train(
            input=corpus,
            model_prefix=prefix,
            vocab_size=vocab_size,
            model_type=model_type,
            pad_id=0,
            eos_id=1,
            unk_id=2,
            bos_id=-1,
            byte_fallback=True,
            character_coverage=1.0,
            hard_vocab_limit=False,
            shuffle_input_sentence=False,
            input_sentence_size=0,
            num_threads=1,
            minloglevel=2,
        )
        from sentencepiece import sentencepiece_model_pb2 as pb

        with open(prefix + ".model", "rb") as src:
            proto = pb.ModelProto.FromString(src.read())
        # The temp paths recorded in the trainer spec would make equal models differ.
        proto.trainer_spec.ClearField("input")
        proto.trainer_spec.ClearField("model_prefix")
        tmp_out = path + f".tmp{os.getpid()}"
        with open(tmp_out, "wb") as dst:
            dst.write(proto.SerializeToString(deterministic=True))
        os.replace(tmp_out, path)
    return path


def pieces_per_item(vocab: RecVocabulary, items) -> np.ndarray:
    """[num_items] number of ids per item (for sizing target lengths)."""
    return np.array([len(t) for t in vocab.item_token_ids(items)], dtype=np.int32)

"""Real data: prepared P5 Beauty (and LC-Rec's released semantic ids) through the builders."""

import numpy as np
import pytest

from jaxrec.data import formats, processing
from jaxrec.indexing.item_index import ItemIndex
from jaxrec.tasks import examples as E
from jaxrec.tasks.items import make_renderer
from tests.tasks.leak import assert_no_leak

SAMPLE_USERS = 400


@pytest.fixture(scope="module")
def beauty(shared_data):
    inter = formats.read_sequence_txt(str(shared_data / "amazon2014" / "Beauty.txt"))
    return processing.build_dataset(inter, None, "Beauty")


@pytest.fixture(scope="module")
def lcrec_index(shared_data, beauty):
    """LC-Rec's released ids, re-keyed to our (shuffled) item ids: P5 item k is LC-Rec k-1."""
    released = ItemIndex.from_json(str(shared_data / "lcrec" / "Beauty.index.json"))
    return ItemIndex(tuple(released.tokens[int(it.original_id) - 1] for it in beauty.items))


@pytest.fixture(scope="module")
def users(beauty):
    return sorted(np.random.default_rng(0).choice(beauty.num_users, SAMPLE_USERS, False).tolist())


def test_beauty_tasks_and_skips(beauty, lcrec_index):
    r = make_renderer(beauty, "sid", lcrec_index)
    assert r.has_semantic_ids and not r.has_titles
    skipped = {t for t in E.TASKS if E.unavailable(t, beauty, r, None)}
    # No titles or ratings in the S3-Rec files: text and rating tasks are skipped.
    assert skipped == {"rating", "mlm", "item2index", "index2item", "fusionseqrec",
                       "itemsearch", "preference"}  # fmt: skip
    distinct = {t for seq in lcrec_index.tokens for t in seq}
    assert set(r.new_tokens) == distinct and len(distinct) <= 4 * 256  # the codes in use
    assert lcrec_index.num_colliding_items() == 13


@pytest.mark.parametrize("item_repr", ["id", "sid"])
def test_no_leakage_on_beauty(beauty, lcrec_index, users, item_repr):
    r = make_renderer(beauty, item_repr, lcrec_index if item_repr == "sid" else None)
    for task in ("retrieval", "ranking", "mim", "bpr"):
        exs = list(E.build_examples(task, beauty, r, "train", users=users))
        expected = sum(len(beauty.sequences[u]) - 3 for u in users) if task != "mim" else len(users)
        assert len(exs) == expected
        assert assert_no_leak(exs, beauty, r, check_titles=False) == expected


def test_beauty_eval_pieces(beauty, lcrec_index, users):
    r = make_renderer(beauty, "sid", lcrec_index)
    ranked = E.eval_examples("ranking", beauty, r, "test", users=users[:50])
    assert len(ranked) == 50
    for u, ev in zip(users[:50], ranked, strict=True):
        assert ev.user == u and len(ev.candidates) == 100  # target + 99 fixed negatives
        assert set(ev.candidates) == {ev.target_item, *beauty.negatives[u].tolist()}
        assert ev.target_item == beauty.sequences[u][-1]
    assert E.eval_examples("rating", beauty, r, "test") == []

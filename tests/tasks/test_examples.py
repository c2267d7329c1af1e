"""Example builders: counts, determinism, template coverage, candidates, no leakage."""

import json
import re

import numpy as np
import pytest

from jaxrec.data.dataset import DataError, Dataset
from jaxrec.tasks import examples as E
from jaxrec.tasks.items import make_renderer
from jaxrec.tasks.templates import TEMPLATES
from jaxrec.tasks.user_info import read_user_info
from tests.tasks.conftest import make_dataset, make_index
from tests.tasks.leak import assert_no_leak, mentions

ALL = ("retrieval", "ranking", "rating", "mim", "mlm", "bpr", "item2index", "index2item",
       "fusionseqrec")  # fmt: skip


@pytest.fixture(scope="module")
def ds():
    return make_dataset()


@pytest.fixture(scope="module")
def sid(ds):
    return make_renderer(ds, "sid", make_index(ds.num_items))


def _build(task, ds, r, split="train", **kw):
    return list(E.build_examples(task, ds, r, split, **kw))


def _template_regex(template: str) -> re.Pattern:
    parts = re.split(r"\{[a-z_]+\}", template)
    return re.compile("^" + "(.*?)".join(re.escape(p) for p in parts) + "$", re.S)


def _templates_used(task_keys, examples):
    used = set()
    for ex in examples:
        for key in task_keys:
            for k, (inp, tgt) in enumerate(TEMPLATES[key]):
                if _template_regex(inp).match(ex.inputs) and _template_regex(tgt).match(ex.targets):
                    used.add((key, k))
    return used


def test_counts_follow_the_split(ds, sid):
    n_train = sum(len(s) - 3 for s in ds.sequences)
    for task in ("retrieval", "ranking", "bpr", "fusionseqrec"):
        assert len(_build(task, ds, sid)) == n_train, task
    finite = sum(int(np.isfinite(r[1:-2]).sum()) for r in ds.ratings)
    assert len(_build("rating", ds, sid)) == finite  # the one NaN target is skipped
    assert len(_build("mim", ds, sid)) == ds.num_users
    assert len(_build("item2index", ds, sid)) == ds.num_items
    for split in ("validation", "test"):
        exs = _build("retrieval", ds, sid, split)
        assert [e.user for e in exs] == list(range(ds.num_users))
        assert [e.target_item for e in exs] == ds.targets(split).tolist()


def test_retrieval_history_is_capped_and_ordered(ds, sid):
    opts = E.TaskOptions(history_cap=3)
    ex = _build("retrieval", ds, sid, "test", opts=opts)[0]
    seq = ds.sequences[0].tolist()
    assert mentions(ex.inputs, sid) == [sid(i) for i in seq[-4:-1]]
    assert ex.targets == sid(seq[-1])


@pytest.mark.parametrize("task", ALL)
def test_deterministic_and_seeded(ds, sid, task):
    a, b = _build(task, ds, sid), _build(task, ds, sid)
    assert a == b
    if task not in ("retrieval", "item2index", "index2item"):
        c = _build(task, ds, sid, opts=E.TaskOptions(seed=1))
        assert c != a


def test_user_subset_matches_full_build(ds, sid):
    full = [e for e in _build("ranking", ds, sid) if e.user in (3, 7)]
    assert _build("ranking", ds, sid, users=[3, 7]) == full


@pytest.mark.parametrize("task", ALL)
def test_every_template_is_used_in_training(ds, sid, task):
    keys = ("fusion_title", "fusion_index") if task == "fusionseqrec" else (task,)
    used = _templates_used(keys, _build(task, ds, sid))
    assert used == {(k, i) for k in keys for i in range(len(TEMPLATES[k]))}


def test_eval_uses_the_fixed_template(ds, sid):
    exs = _build("retrieval", ds, sid, "validation", opts=E.TaskOptions(eval_template=2))
    assert _templates_used(("retrieval",), exs) == {("retrieval", 2)}


def test_ranking_candidates(ds, sid):
    for ex in _build("ranking", ds, sid):
        seq = ds.sequences[ex.user].tolist()
        hist = seq[: seq.index(ex.target_item)][-20:]
        mentioned = mentions(ex.inputs, sid)
        assert len(mentioned) == len(hist) + 20  # history + 20 training candidates
        assert ex.targets in mentioned and ex.targets == sid(ex.target_item)
        assert not {sid(i) for i in seq[-2:]} & set(mentioned)
    evals = E.eval_examples("ranking", ds, sid, "test")
    assert len(evals) == ds.num_users
    for ev in evals:
        seq = ds.sequences[ev.user].tolist()
        assert ev.target_item == seq[-1] and ev.target_item in ev.candidates
        assert len(set(ev.candidates)) == len(ev.candidates)
        # Tiny catalogue: every never-seen item is a candidate (100 cannot be reached).
        assert len(ev.candidates) == ds.num_items - len(set(seq)) + 1
        assert not set(ev.candidates) & (set(seq) - {seq[-1]})
    opts = E.TaskOptions(eval_candidates=10)
    for ev in E.eval_examples("ranking", ds, sid, "validation", opts):
        assert len(ev.candidates) == 10  # target + the first 9 fixed negatives
        assert set(ev.candidates) - {ev.target_item} == set(ds.negatives[ev.user][:9].tolist())


def test_eval_examples_match_task_inputs(ds, sid):
    for task in E.EVAL_TASKS:
        evals = E.eval_examples(task, ds, sid, "validation")
        built = _build(task, ds, sid, "validation")
        assert [e.inputs for e in evals] == [b.inputs for b in built]
    ratings = E.eval_examples("rating", ds, sid, "test")
    assert [r.target_rating for r in ratings] == [float(r[-1]) for r in ds.ratings]


@pytest.mark.parametrize("item_repr", ["sid", "id", "id_title", "title"])
def test_no_leakage_synthetic(ds, item_repr):
    index = make_index(ds.num_items) if item_repr == "sid" else None
    r = make_renderer(ds, item_repr, index)
    for task in ALL:
        if E.unavailable(task, ds, r, None):
            continue
        exs = _build(task, ds, r)
        assert assert_no_leak(exs, ds, r) > 0 or task in ("item2index", "index2item")


def test_mlm_uses_only_training_titles(ds, sid):
    for ex in _build("mlm", ds, sid):
        words = [w for w in (ex.inputs + " " + ex.targets).split() if not w.startswith("<extra")]
        train = ds.train_sequence(ex.user)[-20:].tolist()
        allowed = set(" ".join(sid.titles[i] for i in train).replace(";", " ").split())
        allowed |= set(" ".join(t for t in TEMPLATES["mlm"][0] + TEMPLATES["mlm"][1]
                                + TEMPLATES["mlm"][2]).split())  # fmt: skip
        assert {w.strip(";:") for w in words} <= {a.strip(";:") for a in allowed}


def test_leak_checker_catches_a_leak(ds, sid):
    seq = ds.sequences[0].tolist()
    bad = E.TextExample(0, f"history {sid(seq[0])}", sid(seq[-1]), seq[-1])
    with pytest.raises(AssertionError):
        assert_no_leak([bad], ds, sid)
    titled = E.TextExample(0, f"bought {sid.titles[seq[-2]]}", "x")
    with pytest.raises(AssertionError):
        assert_no_leak([titled], ds, sid)


def test_unavailable_tasks_are_reported(ds):
    bare = Dataset(name="b", users=["u"], sequences=[[0, 1, 2, 3]],
                   items=[ds.items[0].__class__(original_id=str(i)) for i in range(4)])  # fmt: skip
    r = make_renderer(bare, "id")
    assert "ratings" in E.unavailable("rating", bare, r, None)
    assert "titles" in E.unavailable("mlm", bare, r, None)
    assert "semantic" in E.unavailable("item2index", bare, r, None)
    assert "user.json" in E.unavailable("itemsearch", bare, r, None)
    with pytest.raises(ValueError):
        _build("rating", bare, r)
    with pytest.raises(DataError):
        make_renderer(bare, "title")
    with pytest.raises(DataError):
        make_renderer(bare, "sid")


def test_lcrec_user_json_tasks(ds, sid, tmp_path):
    u0, u1 = ds.sequences[0].tolist(), ds.sequences[1].tolist()
    obj = {
        "user_explicit_preference": {"U0": ["likes roses", "prefers matte"], "U1": "cheap"},
        "user_vague_intention": {
            "train": {
                "U0": {"querys": ["something floral", "a rose oil"], "item": u0[2],
                       "inters": u0[:2]},
                "U1": {"querys": ["leaky"], "item": u1[-1], "inters": u1[:3]},  # test target
            },
            "test": {"U0": {"querys": ["q"], "item": u0[-1], "inters": u0[:-1]}},
        },
    }  # fmt: skip
    path = tmp_path / "Tiny.user.json"
    path.write_text(json.dumps(obj))
    info = read_user_info(str(path), ds)
    assert info.preferences[1] == ("cheap",)
    search = _build("itemsearch", ds, sid, user_info=info)
    assert [e.user for e in search] == [0]  # user 1's intention reveals its test target
    assert search[0].targets == sid(u0[2])
    assert any(q in search[0].inputs for q in ("something floral", "a rose oil"))
    assert _build("itemsearch", ds, sid, "test", user_info=info)[0].targets == sid(u0[-1])
    prefs = _build("preference", ds, sid, user_info=info)
    assert {e.user for e in prefs} == {0, 1}
    assert assert_no_leak(search + prefs, ds, sid) == 3
    obj["user_explicit_preference"]["nobody"] = ["x"]
    path.write_text(json.dumps(obj))
    with pytest.raises(DataError, match="unknown user"):
        read_user_info(str(path), ds)

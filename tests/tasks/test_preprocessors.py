"""Preprocessors on tiny inputs: their docstring examples plus properties that must hold."""

import doctest
import math
import random

import pytest

from jaxrec.tasks import preprocessors as pp
from jaxrec.tasks.templates import TEMPLATES, corpus, pick

T = ("{history}", "{item}")


def test_docstring_examples():
    result = doctest.testmod(pp)
    assert result.attempted >= 10
    assert result.failed == 0


def test_retrieval_and_ranking_fill_fields():
    ex = pp.retrieval(["a", "b"], "c", ("H={history}", "T={item}"))
    assert ex == {"inputs": "H=a, b", "targets": "T=c"}
    ex = pp.ranking(["a"], ["x", "c"], "c", ("{history}|{candidates}", "{item}"))
    assert ex == {"inputs": "a|x, c", "targets": "c"}


def test_rating_shows_known_ratings_only():
    ex = pp.rating(
        ["a", "b", "c"], [4.0, math.nan, 2.5], "d", 3.0, ("{history}>{item}", "{rating}")
    )
    assert ex["inputs"] == "a (4 stars), b, c (2.5 stars)>d"
    assert ex["targets"] == "3"
    assert pp.rating(["a"], None, "d", 5.0, T)["inputs"] == "a"


@pytest.mark.parametrize("n", [2, 5, 20])
def test_masked_items_hides_and_returns_in_order(n):
    hist = [f"i{k}" for k in range(n)]
    for seed in range(20):
        ex = pp.masked_items(hist, random.Random(seed), ("{history}", "{masked}"), mask_rate=0.3)
        shown = ex["inputs"].split(", ")
        masked = ex["targets"].split(", ")
        assert len(shown) == n
        positions = [k for k, s in enumerate(shown) if s == pp.MASK]
        assert 1 <= len(positions) == len(masked) == max(1, round(0.3 * n))
        assert masked == [hist[k] for k in positions]  # in sequence order
        assert all(shown[k] == hist[k] for k in range(n) if k not in positions)


@pytest.mark.parametrize("n_words", [2, 3, 10, 57])
def test_span_corruption_reconstructs_text(n_words):
    words = [f"w{k}" for k in range(n_words)]
    text = " ".join(words)
    for seed in range(10):
        ex = pp.span_corruption(text, random.Random(seed), ("{text}", "{spans}"))
        inputs, targets = ex["inputs"].split(), ex["targets"].split()
        # Rebuild: each sentinel in the inputs is replaced by its span from the targets.
        spans, current = {}, None
        for tok in targets:
            if tok.startswith("<extra_id_"):
                current = tok
                spans[current] = []
            else:
                spans[current].append(tok)
        rebuilt = []
        for tok in inputs:
            rebuilt.extend(spans[tok] if tok.startswith("<extra_id_") else [tok])
        assert rebuilt == words
        num_sentinels = sum(t.startswith("<extra_id_") for t in inputs)
        assert targets[-1] == pp.sentinel(num_sentinels)  # closing sentinel
        masked = sum(len(v) for v in spans.values())
        assert 1 <= masked < n_words


def test_span_corruption_needs_two_words():
    with pytest.raises(ValueError):
        pp.span_corruption("one", random.Random(0), ("{text}", "{spans}"))


def test_bpr_pair_order_is_random_and_target_is_positive():
    orders = set()
    for seed in range(30):
        ex = pp.bpr(["h"], "pos", "neg", random.Random(seed), ("{first}|{second}", "{item}"))
        assert ex["targets"] == "pos"
        assert sorted(ex["inputs"].split("|")) == ["neg", "pos"]
        orders.add(ex["inputs"])
    assert orders == {"pos|neg", "neg|pos"}


def test_alignment_and_lcrec_user_tasks():
    assert pp.item2index("T", "D", "<a_1>", ("{title} {description}", "{item}"))["inputs"] == "T D"
    assert pp.index2item("<a_1>", "T", ("{item}", "{title}"))["targets"] == "T"
    assert pp.fusion_title(["<a_1>"], "T", ("{history}", "{title}"))["targets"] == "T"
    assert pp.fusion_index(["A", "B"], "<a_2>", ("{titles}", "{item}"))["inputs"] == '"A", "B"'
    assert pp.item_search(["x"], "q?", "y", ("{history} {query}", "{item}"))["inputs"] == "x q?"
    assert pp.preference(["x"], "p", ("{history}", "{preference}"))["targets"] == "p"


def test_templates_have_no_user_ids_and_fill_without_error():
    fields = dict(history="h", titles="t", candidates="c", item="i", first="f", second="s",
                  rating="r", title="t", description="d", text="x", spans="y", masked="m",
                  query="q", preference="p")  # fmt: skip
    for task, templates in TEMPLATES.items():
        assert len(templates) >= 3, task
        for inputs, targets in templates:
            assert "user_id" not in inputs and "{user" not in inputs
            inputs.format(**fields), targets.format(**fields)
    assert len(corpus()) == 2 * sum(len(t) for t in TEMPLATES.values())


def test_pick_is_seeded_and_eval_is_fixed():
    a = [pick("retrieval", random.Random(5)) for _ in range(3)]
    b = [pick("retrieval", random.Random(5)) for _ in range(3)]
    assert a == b
    assert pick("retrieval", None, 1) == TEMPLATES["retrieval"][1]

"""Gin-bound dataclasses of the wrong type: one line naming the field and the value
(`jaxrec.cli.gin_checks.check_field_types`, `check_bound_types`), here and from
`jaxrec reproduce`."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

import gin
from jaxrec.cli import reproduce as reproduce_cmd
from jaxrec.cli.gin_checks import check_field_types
from jaxrec.data.dataset import DataError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclasses.dataclass(frozen=True)
class Inner:
    rate: float = 1.0
    name: str = "x"


@dataclasses.dataclass(frozen=True)
class Outer:
    count: int = 1
    ratio: float = 0.5
    flag: bool = False
    label: str = "a"
    limit: int | None = None
    tags: tuple[str, ...] = ()
    pair: tuple[str, int] = ("a", 1)
    pairs: tuple[tuple[str, float], ...] = ()
    overrides: tuple[tuple[str, Any], ...] = ()
    inner: Inner = Inner()
    anything: Any = None
    table: dict = dataclasses.field(default_factory=dict)
    fn: Callable[[int], int] | None = None


@dataclasses.dataclass(frozen=True)
class Unresolved:
    n: int = 0
    x: NoSuchType = None  # noqa: F821 - does not resolve: not checked, the others still are


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"count": "many"}, "Outer.count must be int, got 'many'"),
        ({"count": True}, "Outer.count must be int, got True"),
        ({"count": 2.0}, "Outer.count must be int, got 2.0"),
        ({"ratio": "0.5"}, "Outer.ratio must be float, got '0.5'"),
        ({"ratio": False}, "Outer.ratio must be float, got False"),
        ({"flag": 1}, "Outer.flag must be bool, got 1"),
        ({"label": 3}, "Outer.label must be str, got 3"),
        ({"limit": "3"}, "Outer.limit must be int | None, got '3'"),
        ({"tags": "abc"}, "Outer.tags must be tuple[str, ...], got 'abc'"),
        ({"tags": ["a"]}, "Outer.tags must be tuple[str, ...], got ['a']"),
        ({"tags": ("a", 1)}, "Outer.tags must be tuple[str, ...], got ('a', 1)"),
        ({"pair": ("a",)}, "Outer.pair must be tuple[str, int], got ('a',)"),
        ({"pairs": (("a", "b"),)},
         "Outer.pairs must be tuple[tuple[str, float], ...], got (('a', 'b'),)"),
        ({"overrides": ((1, 2),)}, "Outer.overrides must be tuple[tuple[str, Any], ...], got "
         "((1, 2),)"),
        ({"inner": Inner(rate="x")}, "Inner.rate must be float, got 'x'"),
        ({"inner": 3}, "Outer.inner must be Inner, got 3"),
    ],
)  # fmt: skip
def test_a_field_of_the_wrong_type_is_named_with_its_value(changes, message):
    with pytest.raises(DataError) as e:
        check_field_types(Outer(**changes), "cfg.gin")
    assert str(e.value) == f"cfg.gin: {message}"


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"ratio": 3},  # an int is a float
        {"limit": 4},
        {"tags": ("a", "b")},
        {"pairs": (("SASRec", 0.08), ("x", 1))},
        {"overrides": (("dropout_rate", 0.1), ("cross_recency_bias", True))},
        {"inner": Inner(rate=2, name="y")},
        {"anything": object(), "table": {1: 2}, "fn": "not checked"},  # not checked
    ],
)
def test_values_of_the_annotated_types_pass(changes):
    check_field_types(Outer(**changes), "cfg.gin")


def test_an_annotation_that_does_not_resolve_is_skipped():
    check_field_types(Unresolved(x=object()), "w")
    with pytest.raises(DataError, match=r"^w: Unresolved\.n must be int, got 'a'$"):
        check_field_types(Unresolved(n="a"), "w")


# -- jaxrec reproduce: the recipe's RecipeConfig and TrainSettings -----------------------------
RECIPE = f"recipe [{os.path.join(reproduce_cmd._REPO_GIN_DIR, reproduce_cmd.DEFAULT_RECIPE)!r}]"


@pytest.fixture
def clean_gin():
    yield
    gin.clear_config()


@pytest.mark.parametrize(
    "binding,message",
    [
        # checked on the constructed RecipeConfig (construction succeeds):
        ("RecipeConfig.validation_users='many'",
         "RecipeConfig.validation_users must be int, got 'many'"),
        ("RecipeConfig.steps=2.5", "RecipeConfig.steps must be int, got 2.5"),
        ("RecipeConfig.encoder_causal=1", "RecipeConfig.encoder_causal must be bool, got 1"),
        ("TrainSettings.batch_size='x'", "TrainSettings.batch_size must be int, got 'x'"),
        ("TrainSettings.learning_rate=None",
         "TrainSettings.learning_rate must be float, got None"),
        # checked on the bound values, before __post_init__ fails on them or converts them:
        ("TrainSettings.mode=3", "TrainSettings.mode must be str, got 3"),
        ("TrainSettings.aux_tasks='mim'", "TrainSettings.aux_tasks must be tuple[str, ...], "
         "got 'mim'"),
        ("TrainSettings.aux_tasks=[3]", "TrainSettings.aux_tasks must be tuple[str, ...], "
         "got [3]"),
        ("RecipeConfig.references=5", "RecipeConfig.references must be tuple[tuple[str, float], "
         "...], got 5"),
        ("RecipeConfig.references={'SASRec': 'high'}", "RecipeConfig.references must be "
         "tuple[tuple[str, float], ...], got {'SASRec': 'high'}"),
    ],
)  # fmt: skip
def test_recipe_binding_of_the_wrong_type(clean_gin, binding, message):
    with pytest.raises(DataError) as e:
        reproduce_cmd.recipe_config([], [binding])
    assert str(e.value) == f"{RECIPE}: {message}"


def test_recipe_bindings_of_the_right_types_still_pass(clean_gin):
    cfg = reproduce_cmd.recipe_config([], [
        "RecipeConfig.minutes=3", "RecipeConfig.model=tiny", "RecipeConfig.model_overrides={}",
        "RecipeConfig.references={'SASRec': 0.0863, 'TIGER': 0.0648}",
        "TrainSettings.aux_tasks=['mim', 'bpr']", "TrainSettings.learning_rate=1e-3",
    ])  # fmt: skip
    assert cfg.minutes == 3 and cfg.model == "tiny" and cfg.model_overrides == ()
    assert cfg.references == (("SASRec", 0.0863), ("TIGER", 0.0648))
    assert cfg.train.aux_tasks == ("mim", "bpr") and cfg.train.learning_rate == 1e-3


def test_every_shipped_recipe_passes_the_type_checks(clean_gin):
    gin_dir = pathlib.Path(REPO, "gin", "experiments")
    recipes = sorted(f for f in gin_dir.glob("*.gin") if "RecipeConfig." in f.read_text())
    assert recipes
    for path in recipes:
        reproduce_cmd.recipe_config([str(path)], [])


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    from jaxrec.data import canonical, prepare, synthetic
    from jaxrec.data.processing import PrepareOptions

    root = tmp_path_factory.mktemp("synth")
    synthetic.generate(str(root / "raw"), num_users=60, num_items=30, num_topics=3, seed=0)
    ds = prepare.prepare_dataset("synthetic", str(root / "raw"),
                                 options=PrepareOptions(num_negatives=5, seed=0))  # fmt: skip
    canonical.write_dataset(ds, str(root / "data"))
    return root / "data"


def test_reproduce_cli_refuses_a_binding_of_the_wrong_type_in_one_line(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "jaxrec", "reproduce", "tiger", "--dataset", str(tiny_dataset),
         "--out", str(out), "--gin.RecipeConfig.validation_users='many'"],
        capture_output=True, text=True, check=False, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if " INFO " not in ln and " WARNING " not in ln]
    assert lines == [
        f"jaxrec: error: {RECIPE}: RecipeConfig.validation_users must be int, got 'many'"
    ], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()

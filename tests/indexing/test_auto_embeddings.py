"""`jaxrec index build` with the default `--embeddings auto` works on the project's own data."""

import json

import pytest

from jaxrec.cli import main
from jaxrec.data import synthetic
from jaxrec.data.dataset import DataError, Dataset, Item
from jaxrec.indexing import embed

SMALL = ["--levels", "2", "--codes", "8", "--hidden", "16", "--latent-dim", "4", "--epochs", "2"]


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("auto")
    synthetic.generate(str(root / "raw"), num_users=120, num_items=60, num_topics=4, seed=0)
    argv = ["data", "prepare", "--source", "synthetic", "--input", str(root / "raw")]
    assert main(argv + ["--out", str(root / "ds"), "--num-negatives", "5"]) == 0
    return root / "ds"


def test_auto_builds_on_the_synthetic_default(synth_dir, capsys):
    capsys.readouterr()
    assert main(["index", "build", str(synth_dir), *SMALL, "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["num_items"] == 60 and report["collisions"] == 0


def _ds(items):
    return Dataset("t", ["u"], [[0, 1, 2]], items)


def test_auto_order_attributes_then_text(monkeypatch):
    with_attrs = _ds([Item(str(i), title=f"t{i}", attributes=(i,)) for i in range(3)])
    assert embed.auto_source(with_attrs) == "attributes"
    text_only = _ds([Item(str(i), title=f"t{i}") for i in range(3)])
    monkeypatch.setattr(embed, "text_encoder_installed", lambda: False)
    assert embed.auto_source(text_only) == "text-tfidf"
    monkeypatch.setattr(embed, "text_encoder_installed", lambda: True)
    assert embed.auto_source(text_only) == "text"
    with pytest.raises(DataError, match=r"--embeddings PATH\.npy, or use --method random"):
        embed.auto_source(_ds([Item(str(i)) for i in range(3)]))


def test_errors_name_the_option_that_works():
    with pytest.raises(DataError, match="--embeddings text-tfidf"):
        embed.attribute_embeddings([Item("a", title="x")])
    if not embed.text_encoder_installed():
        with pytest.raises(DataError, match="--embeddings text-tfidf works without it"):
            embed.sentence_encoder_dir()

import json

import numpy as np
import pytest

from jaxrec.cli import main
from jaxrec.data.canonical import write_dataset
from jaxrec.data.dataset import Dataset, Item
from jaxrec.indexing.item_index import ItemIndex
from jaxrec.indexing.schemes import semantic_index

RQ_FLAGS = [
    "--levels",
    "2",
    "--codes",
    "8",
    "--hidden",
    "16",
    "--latent-dim",
    "4",
    "--epochs",
    "3",
    "--batch-size",
    "32",
    "--seed",
    "3",
    "--embeddings",
    "attributes",
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    rng = np.random.default_rng(0)
    n_items = 40
    items = [
        Item(
            str(i),
            title=f"item {i % 35}",
            attributes=tuple(int(a) for a in rng.choice(12, 3, replace=False)),
        )
        for i in range(n_items)
    ]
    seqs = [rng.choice(n_items, 5, replace=False) for _ in range(25)]
    ds = Dataset(name="Tiny", users=[f"u{u}" for u in range(25)], sequences=seqs, items=items)
    out = tmp_path_factory.mktemp("tiny")
    write_dataset(ds, str(out))
    return out


def _last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_build_rqvae_and_check(data_dir, capsys):
    out = data_dir / "rq.index.json"
    args = ["index", "build", str(data_dir), "--out", str(out), "--json", *RQ_FLAGS]
    assert main(args) == 0
    report = _last_json(capsys)
    for key in (
        "collisions",
        "collisions_before_resolution",
        "levels",
        "codes_per_level",
        "codebook_usage",
        "perplexity",
        "reconstruction_mse",
        "seconds",
    ):
        assert key in report
    assert report["collisions"] == 0 and report["levels"] >= 2
    assert len(report["codebook_usage"]) == report["levels"]
    assert report["cpu_threads"] == 1  # the worker's default, whatever the core count
    index = ItemIndex.from_json(str(out), num_items=40)
    assert index.num_colliding_items() == 0 and index.tokens[0][0].startswith("<a_")
    first = out.read_bytes()
    assert main(args) == 0  # same seed, same file
    assert out.read_bytes() == first
    capsys.readouterr()
    assert main(["index", "check", str(out), "--dataset", str(data_dir), "--json"]) == 0
    check = _last_json(capsys)
    assert check["collisions"] == 0 and check["num_items"] == 40
    # --cpu-threads reaches the worker (it used to keep one thread whatever was asked).
    assert main(["--cpu-threads", "2", *args]) == 0
    assert _last_json(capsys)["cpu_threads"] == 2


@pytest.mark.parametrize("method", ["random", "sequential", "title"])
def test_build_other_methods(data_dir, capsys, method):
    out = data_dir / f"{method}.index.json"
    assert (
        main(["index", "build", str(data_dir), "--method", method, "--out", str(out), "--json"])
        == 0
    )
    report = _last_json(capsys)
    assert report["collisions"] == 0
    assert report["collisions_before_resolution"] == (5 if method == "title" else 0)
    index = ItemIndex.from_json(str(out), num_items=40)
    assert index.is_text == (method == "title") and index.num_colliding_items() == 0


def test_default_output_path_and_npy_embeddings(data_dir, capsys, tmp_path):
    emb = np.random.default_rng(1).normal(size=(40, 11)).astype(np.float32)  # attribute dim
    np.save(tmp_path / "e.npy", emb)
    assert (
        main(["index", "build", str(data_dir), *RQ_FLAGS, "--embeddings", str(tmp_path / "e.npy")])
        == 0
    )
    assert (data_dir / "Tiny.index.json").exists()
    assert "wrote" in capsys.readouterr().out


def test_errors_are_reported_without_traceback(data_dir, capsys, tmp_path):
    emb = np.zeros((40, 6), np.float32)
    emb[17, 2] = np.nan
    np.save(tmp_path / "bad.npy", emb)
    assert (
        main(
            [
                "index",
                "build",
                str(data_dir),
                "--embeddings",
                str(tmp_path / "bad.npy"),
                "--out",
                str(tmp_path / "x.json"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "bad.npy: item 17: non-finite" in err and "Traceback" not in err
    (tmp_path / "short.json").write_text(json.dumps({"0": ["<a_1>"], "1": ["<a_2>"]}))
    assert main(["index", "check", str(tmp_path / "short.json"), "--dataset", str(data_dir)]) == 2
    assert "38 item(s) missing" in capsys.readouterr().err
    assert main(["index", "build", str(tmp_path), "--method", "random"]) == 2
    assert "no *.inter.json" in capsys.readouterr().err


def test_check_reports_and_resolves_collisions(data_dir, capsys, tmp_path):
    codes = np.stack([np.arange(40) % 5, np.arange(40) % 3], axis=1)  # 15 distinct rows
    semantic_index(codes).to_json(str(tmp_path / "c.json"))
    out = tmp_path / "fixed.json"
    assert main(["index", "check", str(tmp_path / "c.json"), "--resolve", str(out), "--json"]) == 0
    report = _last_json(capsys)
    assert report["collisions"] == 25 and report["collision_groups"] == 15
    fixed = ItemIndex.from_json(str(out), num_items=40)
    assert fixed.num_colliding_items() == 0
    assert [t[0] for t in fixed.tokens] == [f"<a_{i % 5}>" for i in range(40)]

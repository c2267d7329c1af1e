"""The same index whatever the core count: an RQ-VAE index built with 1 CPU, with 2 CPUs and under
forced host devices has the same bytes (`jaxrec.indexing.isolated`)."""

import os
import subprocess
import sys

import numpy as np
import pytest

from jaxrec.data.canonical import read_dataset, write_dataset
from jaxrec.data.dataset import Dataset, Item
from jaxrec.indexing.build import build_index
from jaxrec.indexing.isolated import build_rqvae_index, worker_env
from jaxrec.indexing.rqvae import RQVAEConfig

NUM_ITEMS = 2048  # batches of 1024: weight gradients sum over 1024 rows, which XLA splits by pool
FLAGS = ["--levels", "2", "--codes", "64", "--hidden", "256,128", "--latent-dim", "16",
         "--epochs", "20", "--batch-size", "1024", "--seed", "5"]  # fmt: skip
CONFIG = RQVAEConfig(hidden_dims=(256, 128), latent_dim=16, levels=2, codes=64, epochs=20,
                     batch_size=1024, seed=5)  # fmt: skip


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    rng = np.random.default_rng(0)
    items = [Item(str(i)) for i in range(NUM_ITEMS)]
    seqs = [rng.choice(NUM_ITEMS, 5, replace=False) for _ in range(300)]
    ds = Dataset(name="Wide", users=[f"u{u}" for u in range(300)], sequences=seqs, items=items)
    out = tmp_path_factory.mktemp("wide")
    write_dataset(ds, str(out))
    centers = rng.normal(size=(32, 256))
    emb = centers[rng.integers(0, 32, NUM_ITEMS)] + 0.3 * rng.normal(size=(NUM_ITEMS, 256))
    np.save(out / "emb.npy", emb.astype(np.float32))
    return out


@pytest.fixture(scope="module")
def worker_index(data_dir):
    """The library call from this process (8 forced host devices): the worker path."""
    return build_rqvae_index(str(data_dir), str(data_dir / "emb.npy"), CONFIG)


def _cli_build(data_dir, out, cpus, forced_devices=False):
    env = worker_env()  # this checkout on the path, no forced devices ...
    env.pop("JAXREC_CPU_THREADS")
    env.pop("JAX_PLATFORMS")
    if forced_devices:  # ... unless asked for
        env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    cmd = [sys.executable, "-m", "jaxrec", "index", "build", str(data_dir), "--embeddings",
           str(data_dir / "emb.npy"), "--out", str(out), *FLAGS]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False,
                          preexec_fn=lambda: os.sched_setaffinity(0, cpus))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return out.read_bytes()


def test_the_index_has_the_same_bytes_on_1_and_2_cpus_and_under_forced_devices(
    data_dir, tmp_path, worker_index
):
    cpus = sorted(os.sched_getaffinity(0))
    one = _cli_build(data_dir, tmp_path / "one.json", cpus[:1])
    forced = _cli_build(data_dir, tmp_path / "forced.json", cpus[:1], forced_devices=True)
    assert forced == one
    if len(cpus) < 2:
        pytest.skip("one CPU only: the 2-CPU build cannot be compared")
    two = _cli_build(data_dir, tmp_path / "two.json", cpus[:2])
    assert two == one
    index, report = worker_index
    index.to_json(str(tmp_path / "lib.json"))
    assert (tmp_path / "lib.json").read_bytes() == one
    assert report["num_items"] == NUM_ITEMS


def test_without_the_worker_the_codes_depend_on_the_thread_pool(data_dir, worker_index):
    """Why the worker exists: trained here, under 8 forced host devices (a pool of 8 threads),
    the same RQ-VAE gives other codes than the one-thread worker."""
    ds = read_dataset(str(data_dir))
    emb = np.load(data_dir / "emb.npy")
    here, _ = build_index(ds, "rqvae", emb, CONFIG)
    assert here.tokens != worker_index[0].tokens


def test_worker_errors_are_one_line(data_dir, capsys):
    from jaxrec.cli import main

    code = main(["index", "build", str(data_dir), "--embeddings", str(data_dir / "none.npy")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("jaxrec: error: ") and "none.npy" in err[-1]

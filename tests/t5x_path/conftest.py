"""Real t5x runs (`python -m t5x.train / infer / eval`) with the shipped gin/t5x files on the
synthetic dataset, as subprocesses launched the way tpu_scripts/train.sh does (cwd = the
checkout, `--gin_search_paths=gin`). Skipped only when t5x is not installed.

The fine-tuned MODEL_DIR is made once per session and shared by the pytest-xdist workers (a
file lock in the session's common temp directory), so each test runs only its own t5x command.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

pytest.importorskip("t5x")

REPO = pathlib.Path(__file__).resolve().parents[2]
TASK = "synthetic_sid_retrieval"
# A tiny network; every sharded dimension divides 8 (t5x's CPU mesh puts all devices on 'model').
TINY = {
    "EMB_DIM": 32,
    "NUM_HEADS": 8,
    "HEAD_DIM": 4,
    "MLP_DIM": 64,
    "NUM_LAYERS": 1,
    "ACTIVATION_DTYPE": "'float32'",
}
# Prompts of the synthetic data stay below 128 tokens: nothing is trimmed, so t5x.eval (which
# pads to the longest prompt) and jaxrec eval (the trained length) see the same inputs.
LENGTHS = "{'inputs': 128, 'targets': 8}"
FINETUNE_STEPS = 20


def gin_flags(macros: dict) -> list[str]:
    return [f"--gin.{k}={v}" for k, v in macros.items()]


def run_t5x(script: str, gin_file: str, macros: dict, env: dict, devices: int = 1) -> str:
    """Runs `python -m t5x.{script}` in the checkout; returns its log, fails the test on error."""
    env = dict(env)
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    else:
        env.pop("XLA_FLAGS", None)
    cmd = [sys.executable, "-m", f"t5x.{script}", "--gin_search_paths=gin",
           f"--gin_file={gin_file}", *gin_flags(macros)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}):\n{log[-6000:]}")
    return log


def train_losses(log: str) -> dict[int, float]:
    """Step -> training loss from t5x's `[step] collection=train ... loss=...` summaries."""
    out = {}
    for m in re.finditer(r"\[(\d+)\] collection=train .*?(?:^|[ ,])loss=([0-9.eE+-]+)", log, re.M):
        out[int(m.group(1))] = float(m.group(2))
    return out


def read_jsonl(path: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@contextlib.contextmanager
def _locked(path: pathlib.Path):
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def shared_root(tmp_path_factory) -> pathlib.Path:
    """A directory common to all xdist workers of this session."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    path = root / "t5x_path"
    path.mkdir(exist_ok=True)
    return path


def _make_dataset(out: pathlib.Path) -> None:
    from jaxrec.data import synthetic
    from jaxrec.data.canonical import write_dataset
    from jaxrec.data.prepare import prepare_dataset
    from jaxrec.data.processing import PrepareOptions
    from tests.tasks.conftest import make_index

    raw = out.parent / "raw"
    synthetic.generate(str(raw), num_users=40, num_items=60, num_topics=5, seed=1)
    ds = prepare_dataset("synthetic", str(raw), options=PrepareOptions(num_negatives=20))
    write_dataset(ds, str(out))
    index = make_index(ds.num_items, seed=1, levels=3, codes=8)
    index.to_json(str(out / f"{ds.name}.index.json"), dataset=ds)


@pytest.fixture(scope="session")
def t5x_env(shared_root) -> dict:
    """Environment of the t5x commands: the synthetic dataset registered by `tasks.synthetic`."""
    data = shared_root / "synth"
    with _locked(shared_root / "data.lock"):
        if not (data / "synthetic.inter.json").exists():
            _make_dataset(data)
    env = dict(os.environ)
    env.update(
        JAXREC_SYNTHETIC_DIR=str(data),
        JAXREC_ITEM_REPRS="sid",
        JAXREC_CACHE_DIR=str(shared_root / "cache"),  # the dataset's SentencePiece model
        JAX_PLATFORMS="cpu",
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
    )
    return env


def finetune_macros(model_dir: pathlib.Path, steps: int) -> dict:
    return {
        "MIXTURE_OR_TASK_NAME": f"'{TASK}'",
        "MIXTURE_OR_TASK_MODULE": "'tasks.synthetic'",
        "MODEL_DIR": f"'{model_dir}'",
        "INITIAL_CHECKPOINT_PATH": "None",
        "TRAIN_STEPS": steps,
        "TASK_FEATURE_LENGTHS": LENGTHS,
        "BATCH_SIZE": 8,
        "EVAL_PERIOD": 5,
        "EVAL_STEPS": 1,
        "NUM_DECODES": 4,
        "utils.SaveCheckpointConfig.period": 10,
        "utils.create_learning_rate_scheduler.base_learning_rate": 0.01,
        "utils.create_learning_rate_scheduler.warmup_steps": 1,
        **TINY,
    }


@pytest.fixture(scope="session")
def finetuned(shared_root, t5x_env) -> tuple[pathlib.Path, str]:
    """(MODEL_DIR, log) of `t5x.train` with t5x/finetune_jaxrec.gin, one device, 20 steps."""
    model_dir = shared_root / "finetune"
    log_file = shared_root / "finetune.log"
    with _locked(shared_root / "finetune.lock"):
        if not log_file.exists():
            shutil.rmtree(model_dir, ignore_errors=True)
            log = run_t5x(
                "train", "t5x/finetune_jaxrec.gin", finetune_macros(model_dir, FINETUNE_STEPS),
                t5x_env,
            )  # fmt: skip
            log_file.write_text(log)
    return model_dir, log_file.read_text()

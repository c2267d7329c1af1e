"""seqio's offline cache of jaxrec's tasks, written by Apache Beam: `python -m
seqio.scripts.cache_tasks_main` (DirectRunner) over tasks registered by `--module_import=tasks`
from a prepared dataset, one worker per shard of users. The cached examples are the uncached
ones, and `python -m jaxrec.train` with USE_CACHED_TASKS = True trains from the cache alone."""

import json
import os
import pathlib
import subprocess
import sys

import pytest
import seqio

from jaxrec import train
from jaxrec.tasks.sources import UserShardedSource

from .conftest import make_dataset, make_index, write_dataset

pytest.importorskip("apache_beam")

REPO = pathlib.Path(__file__).resolve().parents[2]
TASKS = ("beamy_sid_retrieval", "beamy_sid_item2index")  # three user shards; one item shard


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    """What `import tasks` registers from: a prepared dataset of 60 users and its index."""
    root = tmp_path_factory.mktemp("beam")
    data = root / "data"
    ds = make_dataset(num_users=60, name="Beamy")
    write_dataset(ds, str(data))
    make_index(ds.num_items).to_json(str(data / "Beamy.index.json"), dataset=ds)
    return {"JAXREC_DATA_DIR": str(data), "JAXREC_ITEM_REPRS": "sid",
            "JAXREC_USERS_PER_SHARD": "20", "JAXREC_CACHE_DIR": str(root / "spm")}  # fmt: skip


@pytest.fixture(scope="module")
def registered(env):
    """The same registration in this process; seqio's cache directories restored after."""
    import tasks

    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        names = tasks.register_from_env("JAXREC_DATA_DIR")
    cache_dirs = list(seqio.utils.get_global_cache_dirs())
    yield names
    seqio.utils.set_global_cache_dirs(cache_dirs)


@pytest.fixture(scope="module")
def cache_dir(env, registered, tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("seqio_cache")
    cmd = [sys.executable, "-m", "seqio.scripts.cache_tasks_main", "--module_import=tasks",
           f"--tasks={','.join(TASKS)}", f"--output_cache_dir={out}",
           "--pipeline_options=--runner=DirectRunner", "--min_shards=2"]  # fmt: skip
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    done = subprocess.run(cmd, cwd=REPO, env={**os.environ, **env, "PYTHONPATH": path},
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    seqio.add_global_cache_dirs([str(out)])
    return out


def _examples(task: str, split: str, use_cached: bool) -> list[tuple]:
    ds = seqio.get_mixture_or_task(task).get_dataset(
        sequence_length=None, split=split, use_cached=use_cached, shuffle=False
    )
    return sorted((tuple(e["inputs"]), tuple(e["targets"])) for e in ds.as_numpy_iterator())


def test_beam_writes_every_split_of_the_tasks(cache_dir):
    for task, source_shards in zip(TASKS, (3, 1), strict=True):
        task_dir = cache_dir / seqio.get_task_dir_from_name(task)
        assert (task_dir / "COMPLETED").exists(), task
        for split in ("train", "validation", "test"):
            source = seqio.get_mixture_or_task(task).source
            assert len(source.list_shards(split)) == source_shards
            info = json.loads((task_dir / f"info.{split}.json").read_text())
            assert info["num_shards"] == max(source_shards, 2)  # --min_shards=2
            assert set(info["features"]) >= {"inputs", "targets"}
            stats = json.loads((task_dir / f"stats.{split}.json").read_text())
            assert stats["examples"] > 0, (task, split)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("split", ["train", "validation", "test"])
def test_cached_examples_are_the_uncached_ones(cache_dir, task, split):
    assert seqio.get_mixture_or_task(task).cache_dir == str(
        cache_dir / seqio.get_task_dir_from_name(task)
    )
    cached = _examples(task, split, use_cached=True)
    assert cached and cached == _examples(task, split, use_cached=False)


def _train_args(model_dir, task: str, cache: str) -> list[str]:
    return [
        "--gin_file=runs/finetune.gin", f"--gin.MIXTURE_OR_TASK_NAME={task}",
        "--gin.MIXTURE_OR_TASK_MODULE=tasks",
        "--gin.TASK_FEATURE_LENGTHS={'inputs': 96, 'targets': 8}", "--gin.TRAIN_STEPS=3",
        "--gin.BATCH_SIZE=8", f"--gin.MODEL_DIR={model_dir}", "--gin.MODEL_NAME=tiny",
        "--gin.USE_CACHED_TASKS=True", "--gin.train.log_every=1",
        "--gin.jaxrec.models.configs.get_config.num_encoder_layers=1",
        "--gin.jaxrec.models.configs.get_config.num_decoder_layers=1",
        f"--seqio_additional_cache_dirs={cache}",
    ]  # fmt: skip


def test_jaxrec_train_trains_from_the_cache_alone(cache_dir, tmp_path, monkeypatch):
    def unread(*args, **kwargs):
        raise AssertionError("USE_CACHED_TASKS read the task's source")

    monkeypatch.setattr(UserShardedSource, "get_dataset", unread)
    assert train.main(_train_args(tmp_path, TASKS[0], str(cache_dir))) == 0
    lines = (tmp_path / "train_metrics.jsonl").read_text().splitlines()
    losses = {r["step"]: r["last_loss"] for r in map(json.loads, lines)}
    assert sorted(losses) == [1, 2, 3] and all(0 < x < 100 for x in losses.values())


def test_an_uncached_task_is_a_one_line_error(cache_dir, tmp_path, capsys):
    args = _train_args(tmp_path, "beamy_sid_ranking", str(cache_dir))
    assert train.main(args) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]  # besides progress logs
    assert "Traceback" not in err and len(errors) == 1
    assert "'beamy_sid_ranking' is not cached" in errors[0]
    assert "seqio.scripts.cache_tasks_main" in errors[0]

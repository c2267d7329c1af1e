"""End to end through `jaxrec.train.main`: a tiny seqio task trains, checkpoints and resumes
exactly; gin files parse; MODEL_DIR holds what evaluation needs."""

import importlib.util
import json
import pathlib

import pytest

import gin
from jaxrec import train
from jaxrec.models import configs

from . import tiny_task

REPO = pathlib.Path(__file__).resolve().parents[2]
STEPS, CUT = 24, 16


def _args(model_dir, steps):
    return [
        "--gin_file=runs/finetune.gin",
        f"--gin.MIXTURE_OR_TASK_NAME={tiny_task.TASK_NAME}",
        "--gin.MIXTURE_OR_TASK_MODULE=tests.training.tiny_task",
        "--gin.TASK_FEATURE_LENGTHS={'inputs': 32, 'targets': 8}",
        f"--gin.TRAIN_STEPS={steps}",
        "--gin.BATCH_SIZE=8",
        f"--gin.MODEL_DIR={model_dir}",
        "--gin.MESH_SHAPE=2x4",
        "--gin.MODEL_NAME=tiny",
        "--gin.DROPOUT_RATE=0.1",  # resume must also reproduce the dropout masks
        "--gin.LEARNING_RATE=0.01",
        "--gin.jaxrec.models.configs.get_config.num_encoder_layers=1",
        "--gin.jaxrec.models.configs.get_config.num_decoder_layers=1",
        "--gin.train.log_every=1",
        "--gin.train.checkpoint_every=8",
    ]


def _losses(model_dir) -> dict[int, float]:
    lines = (pathlib.Path(model_dir) / "train_metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["last_loss"] for r in map(json.loads, lines)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    straight = tmp_path_factory.mktemp("straight")
    resumed = tmp_path_factory.mktemp("resumed")
    assert train.main(_args(straight, STEPS)) == 0
    assert train.main(_args(resumed, CUT)) == 0  # "crash" after step 16 ...
    assert train.main(_args(resumed, STEPS)) == 0  # ... and restart with the full budget
    return straight, resumed


def test_tiny_model_trains_and_loss_falls(runs):
    losses = _losses(runs[0])
    assert sorted(losses) == list(range(1, STEPS + 1))
    first = sum(losses[s] for s in range(1, 5)) / 4
    last = sum(losses[s] for s in range(STEPS - 3, STEPS + 1)) / 4
    assert last < first - 0.5, (first, last)


def test_resume_reproduces_uninterrupted_losses(runs):
    straight, resumed = map(_losses, runs)
    # The resumed dir logged 1..16 in its first run and 17..24 after restoring step 16.
    assert sorted(resumed) == list(range(1, STEPS + 1))
    for step in range(CUT + 1, STEPS + 1):
        assert resumed[step] == pytest.approx(straight[step], abs=1e-6), step


def test_model_dir_has_what_eval_needs(runs):
    model_dir = pathlib.Path(runs[0])
    operative = (model_dir / "config.gin").read_text()
    assert "TRAIN_STEPS = 24" in operative and "MODEL_NAME = 'tiny'" in operative
    config = configs.T5Config(**json.loads((model_dir / "model_config.json").read_text()))
    assert config.num_encoder_layers == 1 and config.dropout_rate == 0.1
    vocab = json.loads((model_dir / "vocabulary.json").read_text())
    assert vocab["vocab_size"] == 259 and vocab["mixture_or_task_name"] == tiny_task.TASK_NAME
    steps = sorted(int(p.name) for p in (model_dir / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [8, 16, 24]
    assert list((model_dir / "train").glob("events.out.tfevents.*"))


@pytest.mark.parametrize(
    "arg,binding",
    [
        ("--gin.MODEL_DIR=/tmp/x", "MODEL_DIR = '/tmp/x'"),
        ("--gin.TRAIN_STEPS=100", "TRAIN_STEPS = 100"),
        ("--gin.MESH_SHAPE=2x4", "MESH_SHAPE = '2x4'"),
        ("--gin.DROPOUT_RATE=None", "DROPOUT_RATE = None"),
        ("--gin.TASK_FEATURE_LENGTHS={'inputs': 8}", "TASK_FEATURE_LENGTHS = {'inputs': 8}"),
        ("--gin.train.optimizer=@jaxrec.training.optimizers.make_optimizer",
         "train.optimizer = @jaxrec.training.optimizers.make_optimizer"),
        ("--gin.NAME='quoted'", "NAME = 'quoted'"),
    ],
)  # fmt: skip
def test_gin_shorthand_flags(arg, binding):
    assert train.rewrite_gin_args([arg, "--other"]) == [f"--gin_bindings={binding}", "--other"]


def test_missing_gin_file_is_a_clear_error(capsys):
    assert train.main(["--gin_file=runs/no_such.gin"]) == 2
    assert "no_such.gin" in capsys.readouterr().err


def test_pretrain_gin_parses_with_t5x_defaults():
    gin.clear_config()
    gin.add_config_file_search_path(str(REPO / "gin"))  # as jaxrec.train does (its includes)
    try:
        gin.parse_config_files_and_bindings(
            [str(REPO / "gin/runs/pretrain.gin")],
            ["MIXTURE_OR_TASK_NAME = 't'", "MODEL_DIR = '/tmp/m'"],
        )
        assert gin.query_parameter("jaxrec.training.optimizers.make_schedule.name") == "rsqrt"
        assert gin.query_parameter("jaxrec.training.optimizers.make_schedule.warmup_steps").selector
        assert gin.query_parameter("%WARMUP_STEPS") == 10000
        assert gin.query_parameter("jaxrec.training.optimizers.make_optimizer.name") == "adafactor"
        assert gin.query_parameter("%DROPOUT_RATE") == 0.0
    finally:
        gin.clear_config()


@pytest.mark.skipif(importlib.util.find_spec("t5x") is None, reason="t5x not installed")
@pytest.mark.parametrize(
    "name", ["finetune_jaxrec.gin", "pretrain_jaxrec.gin", "infer_jaxrec.gin", "eval_jaxrec.gin"]
)
def test_t5x_gin_files_resolve_with_the_documented_search_path(name, monkeypatch):
    """`--gin_search_paths=<jaxrec>/gin` (t5x adds its own package directory, for
    t5x/configs/runs/*.gin): every include resolves (tests/t5x_path runs them for real)."""
    import t5x

    t5x_root = str(pathlib.Path(t5x.__file__).resolve().parents[1])
    monkeypatch.setattr(gin.config, "_LOCATION_PREFIXES", [""])  # only these search paths
    gin.clear_config()
    try:
        for path in (str(REPO / "gin"), t5x_root):
            gin.add_config_file_search_path(path)
        # `import __main__ as train_script` names the t5x script's own functions: skipped here.
        gin.parse_config_files_and_bindings(
            [f"t5x/{name}"], ["MIXTURE_OR_TASK_NAME = 't'"], skip_unknown=True,
            finalize_config=False,
        )  # fmt: skip
        assert gin.query_parameter("%NUM_DECODES") == 20  # from t5x/jaxrec_model.gin
        assert gin.query_parameter("%MIXTURE_OR_TASK_MODULE") == "tasks.beauty"
    finally:
        gin.clear_config()


@pytest.mark.parametrize("path", sorted((REPO / "gin/models").glob("flan_t5_*.gin")), ids=str)
def test_model_gin_files_compose_with_the_run_file(path):
    gin.clear_config()
    try:
        gin.parse_config_files_and_bindings(
            [str(REPO / "gin/runs/finetune.gin"), str(path)],
            ["MIXTURE_OR_TASK_NAME = 't'", "MODEL_DIR = '/tmp/m'"],
        )
        bound = gin.query_parameter("train.model_config")
        assert bound.selector == "jaxrec.models.configs.T5Config"
        size = path.stem.removeprefix("flan_t5_")
        expected = configs.get_config(size)
        for field in ("emb_dim", "num_heads", "num_encoder_layers", "mlp_dim"):
            assert gin.query_parameter(f"jaxrec.models.configs.T5Config.{field}") == getattr(
                expected, field
            )
    finally:
        gin.clear_config()

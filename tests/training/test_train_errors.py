"""`python -m jaxrec.train` user errors: one line, exit code 2, before any work."""

import subprocess
import sys

import pytest

from jaxrec import train

from . import tiny_task


def _base(model_dir):
    return [
        "--gin_file=runs/finetune.gin",
        f"--gin.MIXTURE_OR_TASK_NAME={tiny_task.TASK_NAME}",
        "--gin.MIXTURE_OR_TASK_MODULE=tests.training.tiny_task",
        f"--gin.MODEL_DIR={model_dir}",
        "--gin.MODEL_NAME=tiny",
    ]


@pytest.mark.parametrize(
    "override,expected",
    [
        ("--gin.TRAIN_STEPZ=3", "'TRAIN_STEPZ' binds nothing: no configuration refers to "
         "%TRAIN_STEPZ; did you mean TRAIN_STEPS"),
        ("--gin.train.train_stepz=3", "doesn't have a parameter named 'train_stepz'; did you "
         "mean train_steps?"),
        ("--gin.trainz.train_steps=3", "No configurable matching 'trainz'; did you mean train"),
        ("--gin.MIXTURE_OR_TASK_NAME=jaxrec_trainer_tiny_x", "MIXTURE_OR_TASK_NAME "
         "'jaxrec_trainer_tiny_x': no task or mixture of that name is registered"),
        ("--gin.MIXTURE_OR_TASK_MODULE=tests.no_such_tasks", "MIXTURE_OR_TASK_MODULE "
         "'tests.no_such_tasks': no such module"),
        ("--gin.TRAIN_STEPS=", "TRAIN_STEPS must be a non-negative integer, got ''"),
        ("--gin.TRAIN_STEPS=(", "gin:"),
        ("--no_such_flag=1", "no_such_flag"),
    ],
)  # fmt: skip
def test_config_errors_are_one_line_before_any_work(tmp_path, capsys, override, expected):
    model_dir = tmp_path / "run"
    assert train.main(_base(model_dir) + [override]) == 2
    err = "\n".join(ln for ln in capsys.readouterr().err.splitlines() if " INFO " not in ln)
    assert len(err.splitlines()) == 1 and err.startswith("jaxrec.train: error: "), err
    assert expected in err
    assert not model_dir.exists()


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(Exception, match="TRAIN_STEPZ"):
        train.main(_base(tmp_path / "run") + ["--gin.TRAIN_STEPZ=3", "--debug"])


def test_subprocess_stderr_is_one_line_without_native_noise(tmp_path):
    env_args = [sys.executable, "-m", "jaxrec.train", *_base(tmp_path / "run")]
    proc = subprocess.run(
        env_args + ["--gin.MIXTURE_OR_TASK_NAME=nope"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if " INFO " not in ln]
    assert lines == ["jaxrec.train: error: MIXTURE_OR_TASK_NAME 'nope': no task or mixture of "
                     "that name is registered by MIXTURE_OR_TASK_MODULE 'tests.training.tiny_task' "
                     "(see `jaxrec tasks list`)"], proc.stderr  # fmt: skip

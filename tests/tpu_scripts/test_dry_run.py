"""Dry-run output (exact gcloud command lines) and missing-variable errors of tpu_scripts/."""

import os
import pathlib
import shlex
import shutil
import subprocess

import pytest

SCRIPTS = pathlib.Path(__file__).resolve().parents[2] / "tpu_scripts"
ALL = ("create", "setup", "train", "eval", "logs", "fetch", "delete")
FLAGS = "--project=proj-1 --zone=us-central2-b"
ENV = {
    "TPU_NAME": "rec-tpu",
    "ZONE": "us-central2-b",
    "PROJECT": "proj-1",
    "MODEL_DIR": "gs://bucket/runs/tiger",
    "GIN_FILE": "gin/experiments/tiger_beauty.gin",
    "JAXREC_REPO": "https://github.com/example/jaxrec.git",
}
# Variables only some scripts need are set per test.

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def run(script: str, *args: str, **env: str | None) -> subprocess.CompletedProcess:
    full = {"PATH": os.environ["PATH"], "HOME": "/nonexistent", **ENV}
    for k, v in env.items():
        if v is None:
            full.pop(k, None)
        else:
            full[k] = v
    return subprocess.run(
        ["bash", str(SCRIPTS / f"{script}.sh"), *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=30,
    )


def lines(script: str, *args: str, **env: str | None) -> list[str]:
    proc = run(script, "--dry-run", *args, **env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def ssh(worker: str, command: str) -> str:
    return f"gcloud compute tpus tpu-vm ssh rec-tpu {FLAGS} --worker={worker} --command='{command}'"


def test_create():
    assert lines("create") == [
        f"gcloud compute tpus tpu-vm create rec-tpu {FLAGS} --accelerator-type=v4-8 "
        "--version=tpu-ubuntu2204-base"
    ]
    assert lines("create", "--spot", ACCELERATOR_TYPE="v5litepod-16") == [
        f"gcloud compute tpus tpu-vm create rec-tpu {FLAGS} --accelerator-type=v5litepod-16 "
        "--version=v2-alpha-tpuv5-lite --spot"
    ]
    assert lines("create", "--queued", "--spot", RUNTIME_VERSION="rt-1") == [
        f"gcloud compute tpus queued-resources create rec-tpu-qr {FLAGS} --node-id=rec-tpu "
        "--accelerator-type=v4-8 --runtime-version=rt-1 --spot",
        f"gcloud compute tpus queued-resources describe rec-tpu-qr {FLAGS}",
    ]
    assert "--preemptible" in lines("create", "--preemptible")[0]


def test_setup_git_and_sdist():
    pip = (
        'pip install -U "jax[tpu]>=0.10.2,<0.11" '
        "-f https://storage.googleapis.com/jax-releases/libtpu_releases.html"
    )
    check = ssh(
        "all",
        'python3 -c "import jax; print(jax.process_index(), jax.device_count(), '
        'jax.local_device_count())"',
    )
    assert lines("setup") == [
        ssh(
            "all",
            "set -e; mkdir -p ~/jaxrec_logs; rm -rf ~/jaxrec && git clone "
            "https://github.com/example/jaxrec.git ~/jaxrec && git -C ~/jaxrec checkout main; "
            f"{pip}; pip install -e ~/jaxrec",
        ),
        check,
    ]
    out = lines(
        "setup", "--with-t5x", "--data", "/d/Beauty", JAXREC_REPO="dist/jaxrec-0.1.0.tar.gz"
    )
    assert out[0] == (
        "gcloud compute tpus tpu-vm scp dist/jaxrec-0.1.0.tar.gz rec-tpu:~/jaxrec-0.1.0.tar.gz "
        f"{FLAGS} --worker=all"
    )
    assert "tar xzf ~/jaxrec-0.1.0.tar.gz -C ~/jaxrec --strip-components=1" in out[1]
    assert out[2] == ssh(
        "all",
        "set -e; pip install --no-deps "
        "git+https://github.com/google-research/t5x@cc342d419ec3e3e9c4bf1df33c82330cafdc1e16 "
        "git+https://github.com/google/airio@69897df7d9a427b947a9f7bb4164c7782b43e601 "
        "git+https://github.com/google-research/jestimator@326824a477feef6d92e6f44175000907a72899ca"
        " && pip install fiddle jaxtyping chex cached_property grain",
    )
    assert out[3:] == [
        ssh("all", "mkdir -p ~/data"),
        f"gcloud compute tpus tpu-vm scp --recurse /d/Beauty rec-tpu:~/data/ {FLAGS} --worker=all",
        check,
    ]


def test_train_single_host_and_pod():
    cmd = "python3 -m jaxrec.train --multihost={} --gin_file=gin/experiments/tiger_beauty.gin "
    cmd += "--gin.MODEL_DIR=gs://bucket/runs/tiger"
    bg = "cd ~/jaxrec && nohup {} > ~/jaxrec_logs/train.log 2>&1 < /dev/null &"
    assert lines("train") == [ssh("all", bg.format(cmd.format("false")))]
    assert lines("train", "--gin.TRAIN_STEPS=100", ACCELERATOR_TYPE="v4-32") == [
        ssh("all", bg.format(cmd.format("true") + " --gin.TRAIN_STEPS=100"))
    ]
    cached = lines("train", "--gin.USE_CACHED_TASKS=True", "--seqio_additional_cache_dirs=gs://b/c")
    assert cached == [ssh("all", bg.format(cmd.format("false") + " --gin.USE_CACHED_TASKS=True "
                                           "--seqio_additional_cache_dirs=gs://b/c"))]  # fmt: skip
    env = lines("train", REMOTE_ENV="JAXREC_BEAUTY_DIR=/d/Beauty")
    assert env == [ssh("all", bg.format("env JAXREC_BEAUTY_DIR=/d/Beauty " + cmd.format("false")))]
    fg = lines("train", "--foreground", "--t5x", GIN_FILE="gin/t5x/finetune_jaxrec.gin")
    assert fg == [
        ssh(
            "all",
            "cd ~/jaxrec && python3 -m t5x.train --gin_search_paths=gin "
            "--gin_file=gin/t5x/finetune_jaxrec.gin "
            '--gin.MODEL_DIR=\\"gs://bucket/runs/tiger\\" --alsologtostderr 2>&1 | '
            "tee ~/jaxrec_logs/train.log",
        )
    ]


def test_eval_logs_fetch_delete():
    (line,) = lines("eval", DATASET_DIR="/d/Beauty")
    expected = "jaxrec eval --model_dir gs://bucket/runs/tiger --dataset /d/Beauty --mesh auto"
    assert f"&& {expected} --json 2>" in line
    (line,) = lines(
        "eval", "--", "--model_dir", "gs://bucket/runs/tiger", "--dataset", "/d/my data"
    )
    argv = shlex.split(line)
    assert argv[:8] == [
        "gcloud", "compute", "tpus", "tpu-vm", "ssh", "rec-tpu", "--project=proj-1",
        "--zone=us-central2-b",
    ]  # fmt: skip
    assert argv[8] == "--worker=0"
    remote = argv[9].removeprefix("--command=")
    assert "jaxrec eval --model_dir gs://bucket/runs/tiger --dataset '/d/my data' --json" in remote
    assert remote.endswith(
        "gsutil cp ~/jaxrec_logs/eval.json gs://bucket/runs/tiger/eval/eval.json"
    )
    assert lines("logs", "--worker", "1", "--follow") == [
        ssh("1", "tail -n 100 -F ~/jaxrec_logs/train.log")
    ]
    assert lines("fetch", "out") == [
        "mkdir -p out/worker0 out/model_dir",
        f"gcloud compute tpus tpu-vm scp --recurse 'rec-tpu:~/jaxrec_logs/*' out/worker0/ {FLAGS} "
        "--worker=0",
        "gsutil -m rsync -r -x '^checkpoints/.*' gs://bucket/runs/tiger out/model_dir",
    ]
    assert lines("delete") == [f"gcloud compute tpus tpu-vm delete rec-tpu {FLAGS} --quiet"]
    assert lines("delete", "--queued") == [
        f"gcloud compute tpus queued-resources delete rec-tpu-qr {FLAGS} --force --quiet"
    ]


@pytest.mark.parametrize("script", ALL)
@pytest.mark.parametrize("var", ["TPU_NAME", "ZONE", "PROJECT"])
def test_missing_required_variable(script, var):
    proc = run(script, "--dry-run", **{var: None})
    assert proc.returncode != 0
    assert proc.stdout == ""
    assert f"error: {var} is not set" in proc.stderr


@pytest.mark.parametrize(
    "script, var", [("train", "GIN_FILE"), ("train", "MODEL_DIR"), ("setup", "JAXREC_REPO"),
                    ("eval", "MODEL_DIR"), ("eval", "DATASET_DIR"), ("fetch", "MODEL_DIR")],
)  # fmt: skip
def test_missing_script_variable(script, var):
    proc = run(script, "--dry-run", **{var: None})
    assert proc.returncode != 0 and f"error: {var} is not set" in proc.stderr


def test_bad_inputs_are_named():
    proc = run("train", "--dry-run", MODEL_DIR="/tmp/local")
    assert proc.returncode != 0 and "must be a gs:// path" in proc.stderr
    proc = run("create", "--dry-run", ACCELERATOR_TYPE="x9-8")
    assert proc.returncode != 0 and "RUNTIME_VERSION" in proc.stderr
    proc = run("create", "--dry-run", "--bogus")
    assert proc.returncode != 0 and "--bogus" in proc.stderr
    proc = run("create", "--dry-run", TPU_CONFIG="/nonexistent/config.sh")
    assert proc.returncode != 0 and "TPU_CONFIG" in proc.stderr


def test_config_file_is_sourced(tmp_path):
    cfg = tmp_path / "tpu.env"
    cfg.write_text("TPU_NAME=from-file\n")
    out = lines("delete", TPU_NAME=None, TPU_CONFIG=str(cfg))
    assert out == [f"gcloud compute tpus tpu-vm delete from-file {FLAGS} --quiet"]


def test_dry_run_lines_are_valid_shell():
    for script in ALL:
        for line in lines(script, DATASET_DIR="/d/Beauty"):
            assert shlex.split(line)[0] in ("gcloud", "gsutil", "mkdir"), line

"""`jaxrec reproduce tiger` as a resumable run: what it does with OUT (refusals before any
work), SIGTERM (a checkpoint after the current step, exit 0, `--resume` finishes the run) and
kill -9 at any point, a checkpoint write included, with a fixed `--steps` plan: the resumed
run's curve, test metrics and losses are those of the uninterrupted run, bit for bit.

The runs are `python -m jaxrec reproduce tiger` subprocesses over a small synthetic dataset
(300 users, 120 items) with a tiny network: 60 steps, a validation every 10.
"""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest

from jaxrec import cli
from jaxrec.data import canonical, prepare, synthetic
from jaxrec.data.processing import PrepareOptions
from jaxrec.training import selection

REPO = pathlib.Path(__file__).resolve().parents[2]
STEPS, EVERY = 60, 10
VALIDATION_STEPS = list(range(EVERY, STEPS + 1, EVERY))
CURVE_KEYS = ("step", "recall@10", "ndcg@10", "loss")
# A small run (as in test_reproduce.py): tiny network, 2-level index of 16 codes over TF-IDF
# embeddings, 100 validation users, batch 8.
SMALL = [
    "--gin.RecipeConfig.model=tiny", "--gin.RecipeConfig.model_overrides={}",
    "--gin.RecipeConfig.index_embeddings=text-tfidf", "--gin.RecipeConfig.index_levels=2",
    "--gin.RecipeConfig.index_codes=16", "--gin.RecipeConfig.index_epochs=20",
    "--gin.RecipeConfig.validation_users=100", "--gin.RecipeConfig.num_beams=10",
    "--gin.TrainSettings.batch_size=8", "--gin.TrainSettings.learning_rate=0.005",
]  # fmt: skip


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    synthetic.generate(str(root / "raw"), num_users=300, num_items=120, num_topics=6, seed=1)
    ds = prepare.prepare_dataset("synthetic", str(root / "raw"),
                                 options=PrepareOptions(num_negatives=20, seed=1))  # fmt: skip
    canonical.write_dataset(ds, str(root / "data"))
    return str(root / "data")


def _args(data_dir, out, *extra):
    return ["reproduce", "tiger", "--dataset", str(data_dir), "--out", str(out),
            "--steps", str(STEPS), f"--gin.RecipeConfig.eval_every_steps={EVERY}", *SMALL,
            *extra]  # fmt: skip


def _tree(path: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() if p.is_file() else b"<dir>"
            for p in sorted(path.rglob("*"))}  # fmt: skip


def _error(capsys) -> str:
    """The one line a refused command prints on stderr."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaxrec: error: "), err
    return lines[0]


def test_out_dir_rules(data_dir, tmp_path, capsys):
    # A non-empty OUT without --resume / --overwrite: one line, exit 2, OUT untouched.
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert cli.main(_args(data_dir, out)) == 2
    err = _error(capsys)
    assert "not empty" in err and str(out) in err
    assert _tree(out) == {"notes.txt": b"mine"}

    # --resume and --overwrite exclude each other.
    assert cli.main(_args(data_dir, tmp_path / "new", "--resume", "--overwrite")) == 2
    err = _error(capsys)
    assert "--resume" in err and "--overwrite" in err
    assert not (tmp_path / "new").exists()

    # OUT may not be (or hold) the dataset, whatever the flags.
    before = _tree(pathlib.Path(data_dir))
    for out, flags in [(data_dir, ()), (data_dir, ("--overwrite",)), (data_dir, ("--resume",)),
                       (os.path.dirname(data_dir), ("--overwrite",))]:  # fmt: skip
        assert cli.main(_args(data_dir, out, *flags)) == 2, (out, flags)
        assert "holds the dataset" in _error(capsys), (out, flags)
    assert _tree(pathlib.Path(data_dir)) == before

    # --overwrite deletes only a jaxrec run (one with jaxrec_model.json); --resume continues
    # only one.
    other = tmp_path / "other"
    (other / "sub").mkdir(parents=True)
    (other / "sub" / "data.bin").write_bytes(b"\x00\x01")
    (other / "model_config.json").write_text("{}")
    before = _tree(other)
    for flag in ("--overwrite", "--resume"):
        assert cli.main(_args(data_dir, other, flag)) == 2, flag
        err = _error(capsys)
        assert "jaxrec_model.json" in err and "not a jaxrec" in err, err
        assert _tree(other) == before, flag

    # A budget that is not positive is refused before any work: with the full default recipe
    # (an RQ-VAE index of 200 epochs, the 4+4-layer network) anything past the argument
    # checks would take minutes.
    for minutes in ("0", "-1", "nan"):
        t = time.perf_counter()
        code = cli.main(["reproduce", "tiger", "--dataset", data_dir, "--out",
                         str(tmp_path / f"m{minutes}"), "--minutes", minutes])  # fmt: skip
        seconds = time.perf_counter() - t
        assert code == 2, minutes
        assert "--minutes" in _error(capsys), minutes
        assert seconds < 5.0, (minutes, seconds)
        assert not (tmp_path / f"m{minutes}").exists()


class _FakeLoop:
    """What `Validation` reads of the loop."""

    def __init__(self, train_steps):
        self.train_steps, self.state = train_steps, type("S", (), {"params": None})()

    def elapsed(self):
        return 0.0

    def request_save(self):
        pass


def _validation(evaluations):
    return selection.Validation(lambda params: {"recall@10": next(evaluations), "ndcg@10": 0.0},
                                every=2)  # fmt: skip


def test_validation_restored_between_evaluations_continues_the_curve_exactly():
    """A preemption checkpoint between two validations: the restored hook's next curve point
    (the mean training loss since the last point) is the uninterrupted one's, although the
    saved losses are rounded (the window is rebuilt from them)."""
    losses = [1.0000049, 1.000099, 0.5, 0.25]  # mean of the first two: 1.0001 (1.0 if rounded)
    straight, loop = _validation(iter([0.1, 0.2])), _FakeLoop(len(losses))
    straight.begin(loop)
    for step, loss in enumerate(losses, 1):
        straight.after_step(loop, step, {"loss": loss})

    first = _validation(iter([0.1, 0.2]))
    first.begin(loop)
    first.after_step(loop, 1, {"loss": losses[0]})
    saved = json.loads(json.dumps(first.state_dict()))  # as the checkpoint's `loop` item
    resumed = _validation(iter([0.1, 0.2]))
    resumed.load_state_dict(saved)
    resumed.begin(loop)
    for step, loss in enumerate(losses[1:], 2):
        resumed.after_step(loop, step, {"loss": loss})
    assert resumed.curve == straight.curve
    assert resumed.losses == straight.losses


# -- subprocess runs -----------------------------------------------------------------------


def _complete_checkpoints(out) -> list[int]:
    ckpt = pathlib.Path(out) / "checkpoints"
    names = os.listdir(ckpt) if ckpt.exists() else []
    return sorted(int(n) for n in names if n.isdigit())


def _writing(out) -> list[int]:
    """Steps of checkpoints being written (orbax's temporary directories)."""
    ckpt = pathlib.Path(out) / "checkpoints"
    try:
        names = os.listdir(ckpt)
    except OSError:
        return []
    return [int(n.split(".")[0]) for n in names if "tmp" in n and n.split(".")[0].isdigit()]


def _record(out) -> dict:
    return json.loads((pathlib.Path(out) / "jaxrec_model.json").read_text())


def _result(out) -> dict:
    return json.loads((pathlib.Path(out) / "result.json").read_text())


class _Run:
    """`python -m jaxrec reproduce tiger ...` in a subprocess (stdout and stderr to files)."""

    def __init__(self, args, logs: pathlib.Path, env=None):
        logs.mkdir(parents=True, exist_ok=True)
        n = len(list(logs.glob("*.out")))
        self.stdout_path, stderr_path = logs / f"{n}.out", logs / f"{n}.err"
        with open(self.stdout_path, "w") as out, open(stderr_path, "w") as err:
            # No compilation cache unless a test gives one: each process compiles anew.
            base = {k: v for k, v in os.environ.items() if not k.startswith("JAX_PERSISTENT")
                    and k != "JAX_COMPILATION_CACHE_DIR"}  # fmt: skip
            self.proc = subprocess.Popen([sys.executable, "-m", "jaxrec", *map(str, args)],
                                         stdout=out, stderr=err, cwd=REPO,
                                         env={**base, **(env or {})})  # fmt: skip
        self.stderr_path = stderr_path
        self.start = time.time()

    def poll_until(self, trigger, timeout=420.0) -> bool:
        """True when `trigger()` held while the process ran; False when it exited first."""
        while self.proc.poll() is None:
            if trigger():
                return True
            if time.time() - self.start > timeout:
                self.proc.kill()
                self.proc.wait()
                pytest.fail(f"run did not finish in {timeout} s; see {self.stderr_path}")
            time.sleep(0.001)
        return False

    def wait(self, timeout=420.0) -> int:
        try:
            return self.proc.wait(timeout=max(timeout - (time.time() - self.start), 1.0))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"run did not finish in {timeout} s; see {self.stderr_path}")

    def finish(self) -> None:
        code = self.wait()
        assert code == 0, f"exit {code}: {self.stderr_tail()}"

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text()

    def stderr_tail(self, lines=15) -> str:
        return "\n".join(self.stderr_path.read_text().splitlines()[-lines:])


def _check_finished(out) -> dict:
    """A finished run: every validation once, in order; every step's loss once; status done."""
    result = _result(out)
    assert [c["step"] for c in result["curve"]] == VALIDATION_STEPS
    assert [s for s, _ in result["losses"]] == list(range(1, STEPS + 1))
    record = _record(out)
    assert record["status"] == "done"
    best = max(result["curve"], key=lambda c: (c["recall@10"], c["ndcg@10"]))
    assert result["validation"]["selected_step"] == record["selected_step"] == best["step"]
    assert result["plan"]["train_steps"] == result["plan"]["steps_run"] == STEPS
    return result


def test_sigterm_saves_and_resume_finishes(data_dir, tmp_path, capsys):
    """SIGTERM after the first validation: a checkpoint at the step it stopped after, exit 0,
    "preempted"; the same command with --resume runs the rest.

    About 1.5-2 minutes on 2 cores (two processes; the resumed one reads the compilation cache
    the first one wrote): 103-114 s measured with the machine otherwise loaded (load ~2)."""
    out, logs = tmp_path / "run", tmp_path / "logs"
    env = {"JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax_cache"),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
           "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}  # fmt: skip
    run = _Run(_args(data_dir, out), logs, env)
    assert run.poll_until(lambda: any(s >= EVERY for s in _complete_checkpoints(out))), (
        f"finished before it could be stopped: {run.stderr_tail()}"
    )
    run.proc.send_signal(signal.SIGTERM)
    assert run.wait() == 0, run.stderr_tail()
    match = re.search(r"preempted at step (\d+)", run.stdout)
    assert match, run.stdout
    stopped = int(match.group(1))
    assert EVERY <= stopped < STEPS
    assert stopped in _complete_checkpoints(out)  # saved after the step it stopped at
    assert not _writing(out)
    assert _record(out)["status"] == "preempted"
    assert not (out / "result.json").exists()

    # Without --resume the run there is not touched.
    before = _tree(out)
    assert cli.main(_args(data_dir, out)) == 2
    assert "not empty" in _error(capsys)
    assert _tree(out) == before

    resumed = _Run(_args(data_dir, out, "--resume"), logs, env)
    resumed.finish()
    assert "preempted" not in resumed.stdout
    assert f"resuming from checkpoint at step {stopped}" in resumed.stderr_path.read_text()
    _check_finished(out)
    assert _complete_checkpoints(out)[-1] == STEPS


def _comparable(result: dict) -> dict:
    return {
        "curve": [{k: c[k] for k in CURVE_KEYS} for c in result["curve"]],
        "test": {k: v for k, v in result["test"].items() if isinstance(v, float)},
        "validation": result["validation"],
        "losses": result["losses"],
    }


@pytest.mark.slow
def test_kill9_three_times_resumes_to_the_uninterrupted_result(data_dir, tmp_path):
    """kill -9 three times (after the first validation's checkpoint, during a checkpoint
    write, and during the test evaluation after the last checkpoint), resumed with --resume
    each time: the curve, the test metrics and the losses equal the uninterrupted run's.

    About 4-5 minutes on 2 cores (five processes, each compiling anew: no compilation
    cache): 283 s measured (load ~2); each start spends ~35-45 s on imports, the index and
    compilation before its first step, so most of the time is setup, not training. Run with
    `python -m pytest -q -s -m slow tests/recipes/test_reproduce_resume.py` to see where the
    kills landed."""
    straight, killed, logs = tmp_path / "straight", tmp_path / "killed", tmp_path / "logs"
    _Run(_args(data_dir, straight), logs).finish()
    reference = _comparable(_check_finished(straight))

    def after_checkpoint(step):
        return lambda: step in _complete_checkpoints(killed)

    def during_write(after):
        return lambda: any(s > after for s in _writing(killed))

    plan = [
        ("after_checkpoint", after_checkpoint(EVERY), None),
        ("during_write", during_write(2 * EVERY), "--resume"),
        ("during_test", after_checkpoint(STEPS), "--resume"),
    ]
    kills = []
    for what, trigger, flag in plan:
        run = _Run(_args(data_dir, killed, *([flag] if flag else [])), logs)
        hit = run.poll_until(trigger)
        writing = _writing(killed)
        run.proc.kill()  # SIGKILL: no handler, no cleanup
        run.proc.wait()
        assert hit, f"{what}: the run finished before it could be killed"
        kills.append({"kill": what, "checkpoints": _complete_checkpoints(killed),
                      "writing": writing})  # fmt: skip
        assert _record(killed)["status"] == "training"
        assert not (killed / "result.json").exists()
    print(f"\nreproduce kill -9 trial: {json.dumps(kills)}")
    assert kills[1]["writing"], kills  # one kill hit a checkpoint write
    assert kills[2]["checkpoints"][-1] == STEPS, kills

    last = _Run(_args(data_dir, killed, "--resume"), logs)
    last.finish()
    assert f"resuming from checkpoint at step {STEPS}" in last.stderr_path.read_text()
    got = _comparable(_check_finished(killed))
    assert got["curve"] == reference["curve"]
    assert got["test"] == reference["test"]
    assert got["validation"] == reference["validation"]
    assert got["losses"] == reference["losses"]


def test_a_run_stopped_while_indexing_can_be_resumed_or_overwritten(data_dir, tmp_path):
    import argparse

    from jaxrec import model_dir
    from jaxrec.cli.reproduce import _check_out

    out = tmp_path / "stopped"
    out.mkdir()
    # What a run leaves when it is stopped while building its index: the record comes first.
    model_dir.write_model_files(str(out), None, {"kind": "semantic_id", "status": "indexing"})
    (out / "synthetic.index.json").write_text("{}")

    _check_out(argparse.Namespace(out=str(out), dataset=data_dir, resume=True, overwrite=False))
    assert (out / "synthetic.index.json").exists()  # --resume keeps it (the run starts again)
    with pytest.raises(Exception, match="holds no trained model yet"):
        model_dir.load_sid_model(str(out))
    _check_out(argparse.Namespace(out=str(out), dataset=data_dir, resume=False, overwrite=True))
    assert not out.exists()  # --overwrite deletes it


def test_resume_may_change_the_budget_mesh_and_test_beams_only(tmp_path):
    """A run recorded before `test_num_beams` existed resumes under the hybrid recipe that now
    sets it (it acts after selection); a setting that shapes training does not."""
    from jaxrec.data.dataset import DataError
    from jaxrec.recipes.reproduce import _check_same_recipe

    stored = {"recipe": {"minutes": 120.0, "num_beams": 20, "seed": 0, "mesh_shape": None}}
    now = {"minutes": 60.0, "num_beams": 20, "seed": 0, "mesh_shape": "2x1", "test_num_beams": 40}
    _check_same_recipe(str(tmp_path), stored, now)
    for changed, shown in (
        ({"num_beams": 40}, "num_beams: 20 -> 40"),
        ({"seed": 1}, "seed: 0 -> 1"),
    ):
        with pytest.raises(DataError, match=shown):
            _check_same_recipe(str(tmp_path), stored, {**stored["recipe"], **changed})

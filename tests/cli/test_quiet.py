"""Commands are quiet by default: no TensorFlow/XLA native notices before their own output."""

import os
import subprocess
import sys

from jaxrec.cli import quiet
from tests.tasks.conftest import tiny_dir  # noqa: F401  (fixture)

NATIVE = ("oneDNN", "cudart_stub", "cuInit", "absl::InitializeLog", "cpu_feature_guard")


def _run(*argv):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    cmd = [sys.executable, "-m", "jaxrec", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)


def test_quiet_by_default_and_verbose_shows_native_logs(tiny_dir):  # noqa: F811
    quiet = _run("tasks", "list", "--dataset", tiny_dir, "--item-repr", "id")
    assert quiet.returncode == 0, quiet.stderr
    assert not [ln for ln in quiet.stderr.splitlines() if any(n in ln for n in NATIVE)]
    loud = _run("--verbose", "tasks", "list", "--dataset", tiny_dir, "--item-repr", "id")
    assert any(n in loud.stderr for n in NATIVE)


def test_entry_point_logging_follows_the_current_stderr(monkeypatch):
    """An entry point run earlier in the process (its stderr since closed) must not leave a
    handler that fails on the next one's records ("--- Logging error ---" and a traceback)."""
    import io
    import logging

    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    logging.basicConfig(force=True)  # a handler holding `first`, as a plain basicConfig makes
    first.close()
    second = io.StringIO()
    monkeypatch.setattr(sys, "stderr", second)
    quiet.configure_logging()
    logging.getLogger("jaxrec.test").info("restored step %d", 7)
    third = io.StringIO()
    monkeypatch.setattr(sys, "stderr", third)
    logging.getLogger("jaxrec.test").info("again")
    assert "restored step 7" in second.getvalue() and "Traceback" not in second.getvalue()
    assert "again" in third.getvalue()

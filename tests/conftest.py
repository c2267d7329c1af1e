"""Test setup: 8 forced CPU devices for sharding tests (set before JAX is imported)."""

import os
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# One persistent compilation cache per test run, shared by the xdist workers and the jaxrec
# subprocesses they start: the many identical tiny programs (train steps, beam searches)
# compile once per run instead of once per test.
_OWNER = os.getppid() if os.environ.get("PYTEST_XDIST_WORKER") else os.getpid()  # the session
JIT_CACHE = os.path.join(tempfile.gettempdir(), f"jaxrec_test_jit_{_OWNER}")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", JIT_CACHE)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import pathlib  # noqa: E402

import pytest  # noqa: E402

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """`../shared/data` beside the checkout (real Amazon data); tests skip if it is absent."""
    if not SHARED_DATA.exists():
        pytest.skip(f"{SHARED_DATA} not present")
    return SHARED_DATA


def pytest_sessionfinish(session, exitstatus):
    """The session's owner (xdist's controller, or the one process) removes the cache."""
    if not hasattr(session.config, "workerinput"):
        import shutil

        shutil.rmtree(JIT_CACHE, ignore_errors=True)

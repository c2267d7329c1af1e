"""Quiet native logging by default: TensorFlow/XLA C++ notices (oneDNN, cuda stubs, cuInit, CPU
features) and absl chatter are noise before a command's own output. Call `set_verbosity` at
entry points, before TensorFlow or JAX is imported; `--verbose` shows everything again.

Most of it obeys TF_CPP_MIN_LOG_LEVEL; the lines TensorFlow's shared libraries print while they
load (before absl logging is initialised) do not, so the import of `tensorflow` runs with the
stderr file descriptor captured and everything but those known notices is written back.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import logging
import os
import re
import sys
import tempfile

# C++ logging of TensorFlow and XLA: 0 all, 1 no INFO, 2 no WARNING, 3 no ERROR either
# ("failed call to cuInit" is logged as an error on every machine without a GPU driver).
_NOISY_LOGGERS = ("absl", "tensorflow", "jax._src.xla_bridge", "h5py")
_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IWE]\d{4} [\d:. ]+\d+ (port|cudart_stub|cpu_feature_guard|cuda_\w+)\.cc:\d+\]"
    r"|To enable the following instructions:)"
)


def drop_noise(text: str) -> str:
    """`text` without the known native notices (one per line)."""
    return "".join(ln for ln in text.splitlines(keepends=True) if not _NOISE.match(ln))


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Runs the import of `tensorflow` with fd 2 captured, then writes back all but noise."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: later imports are cached
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def quiet_exec(module):
            sys.stderr.flush()
            saved = os.dup(2)
            with tempfile.TemporaryFile(mode="w+b") as captured:
                os.dup2(captured.fileno(), 2)
                try:
                    exec_module(module)
                finally:
                    os.dup2(saved, 2)
                    os.close(saved)
                    captured.seek(0)
                    rest = drop_noise(captured.read().decode("utf-8", "replace"))
                    if rest:
                        sys.stderr.write(rest)

        spec.loader.exec_module = quiet_exec
        return spec


class _StderrHandler(logging.StreamHandler):
    """A log handler writing to whatever `sys.stderr` is at the time of each record (a
    redirected or captured stream replaces it after the handler was made; a handler holding
    the old one would write to a closed file)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def configure_logging(
    verbose: bool = False, fmt: str = "%(asctime)s %(levelname)s %(name)s: %(message)s"
) -> None:
    """Python logging of an entry point: to the current stderr, INFO (DEBUG with `verbose`).
    Replaces handlers an earlier entry point (in the same process) installed."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format=fmt,
        datefmt="%H:%M:%S",
        handlers=[_StderrHandler()],
        force=True,
    )


def set_verbosity(verbose: bool) -> None:
    """Lower (or, with `verbose`, restore) native and library logging."""
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.NOTSET)
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    if "tensorflow" not in sys.modules and not any(
        isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path
    ):
        sys.meta_path.insert(0, _QuietTensorFlowImport())


class _GinIncludeProbes(logging.Filter):
    """Drops gin's package-resource probes of includes: for a relative include gin first tries
    it as a Python package resource (logging "system_path_file_exists:..." and, when it is not
    one, the error "Path not found: ...") before it finds the file on the config search path,
    so every include of our gin files printed a false error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("Path not found: ", "system_path_file_exists:"))


@contextlib.contextmanager
def gin_include_probes_dropped():
    """Within the block, gin's package-resource probes of includes log nothing."""
    probe_filter = _GinIncludeProbes()
    root = logging.getLogger()
    root.addFilter(probe_filter)
    try:
        yield
    finally:
        root.removeFilter(probe_filter)

"""CPU compute threads, fixed so that a command gives the same numbers whatever the core count.

XLA sizes its CPU thread pool once, when the backend starts, from the CPUs the process may run
on (its affinity), and how a matmul or a reduction is split over that pool changes the order of
float sums; BLAS (numpy, scikit-learn) does the same with threads of its own. So the same
`jaxrec index build` gave other semantic ids on 1 and on 2 cores, and the same training run
other figures. The entry points (`jaxrec ...`, `python -m jaxrec.train`) therefore fix the
number of compute threads before JAX starts: `--cpu-threads N` / `JAXREC_CPU_THREADS`
(default 1). The XLA pool is sized by narrowing the affinity while the backend starts, then
every thread of the process gets the full affinity back (so several runs on one machine spread
over its cores, and data loading still uses them); BLAS pools are limited with threadpoolctl.
`--cpu-threads 0` keeps XLA's and BLAS's own choice (all CPUs: faster on many cores, results
then depend on the core count). Accelerators compute on the device; this governs the host CPU
backend only. A fixed thread count does not make CPUs of different types agree: their kernels
follow the instruction set (`jaxrec.indexing.isolated`).
"""

from __future__ import annotations

import contextlib
import logging
import os

from jaxrec.data.dataset import DataError

log = logging.getLogger(__name__)

ENV = "JAXREC_CPU_THREADS"
DEFAULT = 1
BLAS_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def requested(value: int | str | None = None, default: int = DEFAULT) -> int:
    """The thread count: `value`, else `$JAXREC_CPU_THREADS`, else `default` (a command's
    own, 1 for most; 0 = no limit)."""
    raw = value if value is not None else os.environ.get(ENV, default)
    try:
        n = int(raw)
    except (TypeError, ValueError):
        raise DataError(f"{ENV} / --cpu-threads must be an integer >= 0, got {raw!r}") from None
    if n < 0:
        raise DataError(f"{ENV} / --cpu-threads must be an integer >= 0, got {n}")
    return n


def _backend_started() -> bool:
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge._backends)
    except (ImportError, AttributeError):  # layout of a later jax: assume not started
        return False


def _threads_of_this_process() -> list[int]:
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return []


def fix_cpu_threads(threads: int | str | None = None, default: int = DEFAULT) -> int:
    """Starts JAX's backends with `threads` CPU compute threads and limits BLAS pools to as
    many (see the module docstring). Returns the count applied (0: unlimited). When the
    backend had already started (e.g. an in-process test), its pool is left as it is."""
    n = requested(threads, default)
    if n == 0 or not hasattr(os, "sched_getaffinity"):
        return 0
    for var in BLAS_ENV:  # BLAS libraries loaded from now on (scipy's, torch's) read these
        os.environ[var] = str(n)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n)  # those already loaded (numpy's)
    cpus = sorted(os.sched_getaffinity(0))
    if _backend_started():
        log.debug("JAX backend already started: its CPU pool keeps its size")
        return n
    import jax

    if len(cpus) <= n:
        jax.devices()
        return n
    os.sched_setaffinity(0, cpus[:n])
    try:
        jax.devices()  # the CPU client sizes its pool from the affinity now
    finally:
        for tid in _threads_of_this_process():  # the pool's threads inherited the narrow mask
            with contextlib.suppress(OSError):  # a thread that ended meanwhile
                os.sched_setaffinity(tid, cpus)
    return n

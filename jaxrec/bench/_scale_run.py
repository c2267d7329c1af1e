"""Running one point of the scale benchmark in a child process, with a memory watchdog.

The child (`python -m jaxrec.bench._scale_points STAGE PARAMS`) runs in its own session, so the
watchdog can end it and everything it started. Its peak resident memory comes from the
kernel's accounting of that one child (`os.wait4`), its own report adds per-phase peaks. A
point that exceeds the memory cap is stopped before the machine runs out (other people's jobs
share it), a point that runs past the timeout likewise; either is recorded as where the stage
stops, with the memory reached.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

from jaxrec.indexing.isolated import worker_env

PAGE = os.sysconf("SC_PAGE_SIZE")


def mem_available_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def mem_total_bytes() -> int:
    return os.sysconf("SC_PHYS_PAGES") * PAGE


def _group_rss(pgid: int) -> int:
    """Resident bytes of every process in process group `pgid`."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:  # field 5 of stat: pgrp
                total += int(fields[21]) * PAGE  # field 24: rss in pages
        except (OSError, IndexError, ValueError):
            continue
    return total


def run_point(stage: str, params: dict, timeout: float, mem_limit: int) -> dict:
    """Runs one point; returns its JSON result plus `status` ("ok", "memory", "timeout",
    "error"), `wall_seconds` and `peak_rss_bytes` (kernel accounting of the child)."""
    cmd = [sys.executable, "-m", "jaxrec.bench._scale_points", stage, json.dumps(params)]
    t0 = time.perf_counter()
    # The child's own CPU backend: no forced host devices (a test session's), this jaxrec.
    env = worker_env(int(params.get("threads", 0)))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, start_new_session=True, text=True,
                            env=env)  # fmt: skip
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)
    reader.start()
    status, watched_peak, rusage, code = "ok", 0, None, None
    try:
        while True:
            pid, wait_status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                code = os.waitstatus_to_exitcode(wait_status)
                break
            rss = _group_rss(proc.pid)
            watched_peak = max(watched_peak, rss)
            if rss > mem_limit or time.perf_counter() - t0 > timeout:
                status = "memory" if rss > mem_limit else "timeout"
                os.killpg(proc.pid, signal.SIGKILL)
            time.sleep(0.25)
    except BaseException:  # Ctrl-C or SIGTERM of the bench: its point does not outlive it
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    proc.returncode = code  # reaped by wait4 above
    reader.join(timeout=10)
    lines = [x for x in "".join(out).splitlines() if x.startswith("{")]
    result = json.loads(lines[-1]) if lines and code == 0 else {}
    if status == "ok" and code != 0:
        status = "killed" if code < 0 else "error"  # -9 without the watchdog: the OOM killer
    result.update(
        stage=stage,
        params=params,
        status=status,
        exit_code=code,
        wall_seconds=round(time.perf_counter() - t0, 3),
        peak_rss_bytes=max(rusage.ru_maxrss * 1024 if rusage else 0, watched_peak),
    )
    return result

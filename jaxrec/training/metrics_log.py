"""`train_metrics.jsonl`: one JSON record per logged step, each step at most once.

A run that resumes from the checkpoint at step S redoes the steps after S, so the records a
crashed run wrote past S (and a line torn by the crash) are dropped before it starts: readers
and plots see one record per step, the later one, with no de-duplication of their own.
"""

from __future__ import annotations

import json
import logging
import os

log = logging.getLogger(__name__)


def read_records(path: str) -> list[dict]:
    """The records of a metrics file in file order (a torn, unparsable line is skipped)."""
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and isinstance(rec.get("step"), int):
                records.append(rec)
    return records


def prepare_for_resume(path: str, start_step: int) -> None:
    """Keep one record per step <= `start_step` (the later one), in step order; drop the rest."""
    if not os.path.exists(path):
        return
    records = read_records(path)
    kept = {r["step"]: r for r in records if r["step"] <= start_step}
    dropped = len(records) - len(kept)
    if not dropped and [r["step"] for r in records] == sorted(kept):
        return
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for step in sorted(kept):
            f.write(json.dumps(kept[step]) + "\n")
    os.replace(tmp, path)
    log.info(
        "%s: dropped %d record(s) past step %d (redone after resume)", path, dropped, start_step
    )

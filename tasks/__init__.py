"""seqio registration modules, importable by name (`--gin.MIXTURE_OR_TASK_MODULE="tasks.beauty"`).

Importing a module registers the Tasks and Mixtures of one prepared dataset, found through
environment variables (gin files set them in `tpu_scripts`/run scripts, or set them yourself):

    JAXREC_DATA_DIR        prepared dataset dirs, `os.pathsep`-separated (`import tasks`)
    JAXREC_BEAUTY_DIR      the Beauty dataset dir (`import tasks.beauty`)
    JAXREC_SYNTHETIC_DIR   the synthetic dataset dir (`import tasks.synthetic`)
    JAXREC_ITEM_REPRS      comma-separated item representations (default: every feasible one)
    JAXREC_SPM_PATH        SentencePiece model, e.g. FLAN-T5's
                           gs://t5-data/vocabs/cc_all.32000.100extra/sentencepiece.model
                           (default: train a small local model on the dataset's text)
    JAXREC_USERS_PER_SHARD users per shard of each task's source (default 10000): the unit
                           of work of a Beam worker caching the tasks (`python -m
                           seqio.scripts.cache_tasks_main --module_import=tasks.beauty ...`)

A missing directory is logged and registers nothing. Representations named in
JAXREC_ITEM_REPRS must be buildable (else the import fails with the reason); by default every
feasible one is registered and the others are skipped with a WARNING. Names follow
`{name}_{repr}_{task}` (e.g. `beauty_sid_retrieval`) and `{name}_{repr}_{cao,lcrec}`.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def register_from_env(var: str, name: str | None = None) -> list[str]:
    """Register every dataset dir listed in environment variable `var`; returns the names."""
    from jaxrec.tasks.registry import register_reprs

    value = os.environ.get(var, "")
    reprs_env = os.environ.get("JAXREC_ITEM_REPRS", "")
    reprs = tuple(r.strip() for r in reprs_env.split(",") if r.strip()) or None
    shards = os.environ.get("JAXREC_USERS_PER_SHARD", "")
    per_shard = {"users_per_shard": int(shards)} if shards.strip() else {}
    names: list[str] = []
    for data_dir in (d for d in value.split(os.pathsep) if d):
        if not os.path.isdir(data_dir):
            log.warning("%s=%s: not a directory; no tasks registered", var, data_dir)
            continue
        names += register_reprs(
            data_dir, reprs=reprs, name=name, spm_path=os.environ.get("JAXREC_SPM_PATH") or None,
            **per_shard,
        )  # fmt: skip
    if not value:
        log.info("%s is not set; no tasks registered by it", var)
    return names


REGISTERED = register_from_env("JAXREC_DATA_DIR")

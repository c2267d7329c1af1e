"""Conventional baselines on the canonical `Dataset` and its leave-one-out split.

- `popularity`: most-interacted training items.
- `sasrec`: SASRec with cross-entropy over all items, users packed into rows (`packing`).
- `ranking`: score-based full ranking → target ranks → `jaxrec.inference.metrics` metrics.
"""

"""Where a semantic-id recommender loses the targets that a reference model finds.

For one split, take the users whose target a reference recommender ranks in its top K (for
example SASRec's recommendations, `jaxrec baseline sasrec --recommendations FILE`) and whose
target the generative model's constrained beam search does not. Each such target is classed
by where its token path left the search:

  lost at level l   its first l codes were not among the beams after step l (the first such
                    l): a prefix error, which the catalogue trie cannot recover from;
  ranked past K     its whole path survived in the final beams, ranked below K.

How the beams after step l are seen without changing the search: beam search keeps, at each
step, the best `beam` one-token extensions of the previous step's beams. The catalogue trie
truncated to its depth-l prefixes offers the same extensions up to depth l and only EOS after
it, so the same search over the truncated trie returns exactly the full search's beams after
step l. One shorter search per level, for the analysed users only.

`target_levels` and `summarise` are pure; `analyse` runs the searches.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxrec.data.dataset import DataError, Dataset
from jaxrec.indexing.trie import build_prefix_table
from jaxrec.inference import retrieval
from jaxrec.inference.recommend import item_ids, json_lines

log = logging.getLogger(__name__)


def read_reference(path: str, ds: Dataset, split: str | None = None) -> dict[int, list[int]]:
    """A recommendations file (`jaxrec recommend` / `jaxrec baseline sasrec` JSON lines:
    `{"user": KEY, "items": [item ids, best first], ...}`) as {user index: items}.

    Every user of the dataset must appear once; unknown users or items, duplicates and missing
    users stop with the file, the line and the problem. With `split`, lines that name their
    target (`jaxrec eval` rows) must name that split's: a list of the other split would
    otherwise be read against the wrong target and history."""
    targets = None if split is None else ds.targets(split)
    out: dict[int, list[int]] = {}
    for where, _, obj in json_lines(path):
        if not isinstance(obj, dict) or "user" not in obj or not isinstance(obj.get("items"), list):
            raise DataError(f'{where}: expected {{"user": KEY, "items": [item ids]}}')
        key = str(obj["user"])
        if not key.isdigit() or int(key) >= ds.num_users:
            raise DataError(f"{where}: unknown user {obj['user']!r} (the dataset has user "
                            f"keys 0..{ds.num_users - 1})")  # fmt: skip
        if int(key) in out:
            raise DataError(f"{where}: user {key} appears a second time")
        if targets is not None and "target" in obj and str(obj["target"]) != str(targets[int(key)]):
            raise DataError(f"{where}: target {obj['target']!r} is not user {key}'s {split} "
                            f"target {int(targets[int(key)])} (a list of another split? see "
                            "--split)")  # fmt: skip
        out[int(key)] = item_ids(where, obj["items"], ds)
    if len(out) != ds.num_users:
        missing = next(u for u in range(ds.num_users) if u not in out)
        raise DataError(f"{path}: has {len(out)} of the dataset's {ds.num_users} users (user "
                        f"{missing} is missing): recommend for the whole split")  # fmt: skip
    return out


def prefix_catalogue(
    item_paths: np.ndarray, depth: int, eos_id: int
) -> tuple[retrieval.Catalogue, np.ndarray]:
    """The catalogue truncated to its distinct depth-`depth` prefixes: (its prefix table, whose
    "items" are the prefixes, and the prefix id of every item [n])."""
    prefixes, item_prefix = np.unique(item_paths[:, :depth], axis=0, return_inverse=True)
    return retrieval.Catalogue(build_prefix_table(prefixes, eos_id)), item_prefix.reshape(-1)


def target_levels(
    targets: np.ndarray,
    item_prefix: Sequence[np.ndarray],
    beam_prefixes: Sequence[np.ndarray],
    final_items: np.ndarray,
) -> np.ndarray:
    """The level at which each target left the beam search (1-based), 0 if it did not.

    Args:
      targets: [n] target item ids.
      item_prefix: per depth l = 1..L-1, the prefix id of every item [num_items].
      beam_prefixes: per depth l = 1..L-1, the prefix ids in the beams after step l [n, beam]
        (-1 padded).
      final_items: [n, beam] items of the final beams (the full search), -1 padded.

    Returns:
      [n] int: l if the target's first l codes were not among the beams after step l (the
      smallest such l; L for a target whose last code was lost), 0 if its whole path is in
      the final beams.
    """
    targets = np.asarray(targets)
    level = np.zeros(len(targets), np.int64)
    for depth, (prefix_of, beams) in enumerate(zip(item_prefix, beam_prefixes, strict=True), 1):
        kept = (np.asarray(beams) == prefix_of[targets][:, None]).any(axis=1)
        level[(level == 0) & ~kept] = depth
    in_final = (np.asarray(final_items) == targets[:, None]).any(axis=1)
    level[(level == 0) & ~in_final] = len(item_prefix) + 1
    return level


def summarise(
    reference_hit: np.ndarray, model_rank: np.ndarray, level: np.ndarray, levels: int, top_k: int
) -> dict[str, Any]:
    """Counts: users, hits of each model in its top K, and the reference-only targets by cause.

    `model_rank` [n] is the 1-based rank of the target in the model's ranked list (0 if absent);
    `level` [n] is `target_levels`' (only read where the reference hits and the model does not).
    """
    model_hit = (model_rank > 0) & (model_rank <= top_k)
    only = reference_hit & ~model_hit
    causes = {f"lost_at_level_{d}": int(((level == d) & only).sum()) for d in range(1, levels + 1)}
    causes[f"ranked_past_{top_k}"] = int(((level == 0) & only).sum())
    n_only = int(only.sum())
    return {
        "users": int(len(model_rank)),
        "top_k": top_k,
        "reference_hits": int(reference_hit.sum()),
        "model_hits": int(model_hit.sum()),
        "both_hit": int((reference_hit & model_hit).sum()),
        "reference_only": n_only,
        "model_only": int((model_hit & ~reference_hit).sum()),
        "reference_only_by_cause": causes,
        "reference_only_share_by_cause": {
            k: round(v / n_only, 4) if n_only else 0.0 for k, v in causes.items()
        },
    }


def analyse(
    rec,
    params,
    ds: Dataset,
    split: str,
    reference: dict[int, list[int]],
    top_k: int = 10,
    num_beams: int = 20,
    batch_size: int = 32,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The analysis of a `SidRetrieval` (`rec`, `params`) against `reference` on `split`.

    Returns (the `summarise` report plus the model's metrics, one row per reference-only user:
    user, target, the level where it was lost (0: ranked past K) and its rank)."""
    if num_beams < top_k:
        raise DataError(f"--num-beams {num_beams} must be at least --top-k {top_k}")
    metrics, rows = rec.evaluate(params, ds, split, num_beams=num_beams, batch_size=batch_size,
                                 ks=(top_k, num_beams), with_rows=True)  # fmt: skip
    users = np.array([r["user"] for r in rows])
    targets = np.array([r["target"] for r in rows])
    model_rank = np.array([r["rank"] or 0 for r in rows])
    final = np.full((len(rows), num_beams), -1, np.int64)
    for i, r in enumerate(rows):
        final[i, : len(r["items"])] = r["items"][:num_beams]
    reference_hit = np.array(
        [t in reference[int(u)][:top_k] for u, t in zip(users, targets, strict=True)]
    )
    only = np.flatnonzero(reference_hit & ~((model_rank > 0) & (model_rank <= top_k)))
    paths = np.asarray(rec.vocab.codes)  # [num_items, L] token ids
    levels = paths.shape[1]
    histories = [ds.example(int(u), split, rec.history).history for u in users[only]]
    item_prefix, beam_prefixes = [], []
    for depth in range(1, levels):
        catalogue, prefix_of = prefix_catalogue(paths, depth, rec.vocab.eos_id)
        beams = _beams(rec, params, histories, catalogue, depth, num_beams, batch_size)
        item_prefix.append(prefix_of)
        beam_prefixes.append(beams)
    level = np.zeros(len(rows), np.int64)
    if len(only):
        level[only] = target_levels(targets[only], item_prefix, beam_prefixes, final[only])
    report = summarise(reference_hit, model_rank, level, levels, top_k)
    report.update(split=split, num_beams=num_beams, levels=levels,
                  model_metrics={k: v for k, v in metrics.items() if "@" in k})  # fmt: skip
    out_rows = [
        {"user": int(users[i]), "target": int(targets[i]), "lost_at_level": int(level[i]),
         "rank": int(model_rank[i]) or None}
        for i in only
    ]  # fmt: skip
    return report, out_rows


def _beams(rec, params, histories, catalogue, depth, num_beams, batch_size) -> np.ndarray:
    """[n, num_beams] prefix ids of the beams after step `depth` (-1 padded)."""
    from jaxrec.inference.generation import make_generate_fn

    if not histories:
        return np.zeros((0, num_beams), np.int64)
    generate = make_generate_fn(rec.model, rec.vocab.eos_id, num_beams, None, depth + 1)
    batches = retrieval.ranked_batches(
        generate, params, lambda s, e: rec.encoder_inputs(histories[s:e]), len(histories),
        catalogue, batch_size, num_beams, progress=f"beams after step {depth}",
    )  # fmt: skip
    items, _, _ = retrieval.rank_all(batches, len(histories), num_beams)
    return items.astype(np.int64)

"""Top-K recommendations from any MODEL_DIR: `jaxrec recommend`.

Who is recommended for (`requests_*`, pure functions over a `Dataset`):
  a split      every user, with the history that split's evaluation uses (the items before
               the held-out one): the rows `jaxrec eval` scores, so metrics computed from
               them are the ones it reports;
  a users file one user key of the dataset's `.inter.json` per line; the whole known history
               (what to recommend next), or the split's history with `--split`;
  a histories  JSON lines `{"user": ANY, "history": [item ids]}` (item ids as in the dataset's
  file         `.inter.json` / `.item.json`); the label is echoed back.
Unknown users or items stop with the file, the line and the id.

Models: semantic-id MODEL_DIRs (`jaxrec reproduce`, `jaxrec demo`) decode each history with
the catalogue-constrained beam search; text MODEL_DIRs (`python -m jaxrec.train`,
`python -m t5x.train`) take the registered retrieval task's prompts (splits and users only).
Scores are the beam log-probabilities of each item's token sequence (colliding items share
one), best first; for a hybrid model (`jaxrec.recipes.hybrid`) the beams' items re-scored by
the dense item head, `log p_beam + w * log p_dense`. The OUT of `jaxrec reproduce --seeds`
recommends with its members' ensemble (`jaxrec.recipes.ensemble`): their beams fused by the
variant its validation chose, the fused scores best first.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from jaxrec.data.dataset import DataError, Dataset

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Request:
    """One recommendation to make: `user` is echoed in the output; `history` are item ids;
    `dense_user` is the dataset's user index when the request is a dataset user."""

    user: Any
    history: tuple[int, ...]
    dense_user: int | None = None


def requests_for_split(ds: Dataset, split: str, history: int) -> list[Request]:
    return [
        Request(str(u), tuple(int(i) for i in ds.example(u, split, history).history), u)
        for u in range(ds.num_users)
    ]


def requests_for_users(
    ds: Dataset, path: str, split: str | None, history: int, inter_file: str
) -> list[Request]:
    """A users file: one `.inter.json` user key per line (blank lines skipped)."""
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            key = line.strip()
            if not key:
                continue
            if not key.isdigit() or int(key) >= ds.num_users:
                raise DataError(f"{path}:{lineno}: unknown user {key!r} (not a user key of "
                                f"{inter_file}, which has {ds.num_users} users)")  # fmt: skip
            u = int(key)
            seq = ds.sequences[u] if split is None else ds.example(u, split, history).history
            out.append(Request(key, tuple(int(i) for i in seq), u))
    return out


def json_lines(path: str) -> Iterator[tuple[str, int, Any]]:
    """(`path:line`, line number, parsed object) of every non-blank line of a JSON-lines file;
    a line that is not JSON stops with its file and line."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                yield where, lineno, json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: invalid JSON ({e.msg})") from None


def item_ids(where: str, items: list, ds: Dataset) -> list[int]:
    """Item ids (ints or digit strings, as in the dataset's `.inter.json`) checked against the
    catalogue; `where` names the line in errors."""
    out = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int | str):
            raise DataError(f"{where}: item {item!r} is not an item id")
        if isinstance(item, str) and not item.isdigit():
            raise DataError(f"{where}: unknown item {item!r}")
        i = int(item)
        if not 0 <= i < ds.num_items:
            raise DataError(f"{where}: unknown item {item!r} (the catalogue has item "
                            f"ids 0..{ds.num_items - 1})")  # fmt: skip
        out.append(i)
    return out


def requests_for_histories(ds: Dataset, path: str) -> list[Request]:
    """A histories file: JSON lines `{"user": ..., "history": [item ids]}`."""
    out = []
    for where, lineno, obj in json_lines(path):
        if not isinstance(obj, dict) or not isinstance(obj.get("history"), list):
            raise DataError(f'{where}: expected {{"user": ..., "history": [item ids]}}')
        items = item_ids(where, obj["history"], ds)
        if not items:
            raise DataError(f"{where}: empty history")
        out.append(Request(obj.get("user", lineno), tuple(items)))
    return out


def output_rows(
    requests: Sequence[Request], items: np.ndarray, scores: np.ndarray, ds: Dataset, top_k: int
) -> Iterator[dict[str, Any]]:
    """The JSON objects of `recommend`'s output, one per request."""
    titles = any(it.title for it in ds.items)
    for r, row, sc in zip(requests, items, scores, strict=True):
        keep = row >= 0
        ids, vals = row[keep][:top_k], sc[keep][:top_k]
        out = {"user": r.user, "items": [int(i) for i in ids],
               "scores": [round(float(s), 6) for s in vals]}  # fmt: skip
        if titles:
            out["titles"] = [ds.items[int(i)].title for i in ids]
        yield out


def recommend(
    model_dir: str,
    dataset_dir: str,
    requests_from: tuple[str, str | None],
    top_k: int = 10,
    split: str | None = None,
    checkpoint_step: int | None = None,
    num_beams: int | None = None,
    batch_size: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Streams output rows (see the module docstring); `requests_from` is ("split", None),
    ("users", FILE) or ("histories", FILE)."""
    from jaxrec import model_dir as md
    from jaxrec.data.canonical import read_dataset
    from jaxrec.recipes import seed_ensemble

    ds = read_dataset(dataset_dir)
    kind, path = requests_from
    if seed_ensemble.read_marker(model_dir) is not None:
        if checkpoint_step is not None:
            raise DataError(f"{model_dir}: an ensemble of runs; --checkpoint-step names one "
                            "run's step (recommend from a member, OUT/seed_<s>)")  # fmt: skip
        yield from _recommend_ensemble(model_dir, ds, dataset_dir, kind, path, top_k, split,
                                       num_beams, batch_size)  # fmt: skip
        return
    if md.is_sid_model_dir(model_dir):
        yield from _recommend_sid(model_dir, ds, dataset_dir, kind, path, top_k, split,
                                  checkpoint_step, num_beams, batch_size)  # fmt: skip
        return
    if kind == "histories":
        raise DataError(
            f"{model_dir}: a text model (its prompts come from the registered task's splits) "
            "recommends for --split or --users, not --histories"
        )
    requests = None
    if kind == "users":
        if split is None:
            raise DataError("--users with a text model needs --split (its prompts are the "
                            "task's validation/test prompts)")  # fmt: skip
        requests = requests_for_users(ds, path, split, 0, _inter_path(dataset_dir))
    yield from _recommend_text(model_dir, ds, dataset_dir, requests, split, top_k,
                               checkpoint_step, num_beams, batch_size)  # fmt: skip


def _inter_path(dataset_dir: str) -> str:
    from jaxrec.data.canonical import find_dataset_name

    return os.path.join(dataset_dir, f"{find_dataset_name(dataset_dir)}.inter.json")


def _sid_requests(ds, dataset_dir, kind, path, split, history):
    if kind == "split":
        return requests_for_split(ds, split, history)
    if kind == "users":
        return requests_for_users(ds, path, split, history, _inter_path(dataset_dir))
    return requests_for_histories(ds, path)


def _recommend_sid(model_dir, ds, dataset_dir, kind, path, top_k, split, step, beams, batch):
    from jaxrec import model_dir as md
    from jaxrec.indexing.binding import verify_index

    sid = md.load_sid_model(model_dir, step)
    verify_index(sid.index_path, ds, dataset_dir)
    requests = _sid_requests(ds, dataset_dir, kind, path, split, sid.rec.history)
    beams = max(beams or sid.num_beams, top_k)
    histories = [r.history for r in requests]
    batch = batch or sid.batch_size
    if sid.fusion_weight is not None:  # hybrid: the beams' items re-scored by the dense head
        from jaxrec.recipes import hybrid

        batches = hybrid.reranked_batches(sid.rec, sid.params, histories, sid.fusion_weight,
                                          beams, batch, top_k, progress="recommend")  # fmt: skip
    else:
        batches = sid.rec.ranked_batches(sid.params, histories, beams, batch, top_k,
                                         progress="recommend")  # fmt: skip
    yield from _stream(requests, batches, ds, top_k)


# Requests fused at a time: the union's [n, U, U] comparisons stay small.
_ENSEMBLE_CHUNK = 512


def _recommend_ensemble(out_dir, ds, dataset_dir, kind, path, top_k, split, beams, batch):
    """A `jaxrec reproduce --seeds` OUT: the members' beams fused by the variant its
    validation chose (OUT/ensemble.json), the fused scores best first."""
    from jaxrec.recipes import ensemble, seed_ensemble

    variant = seed_ensemble.chosen_variant(out_dir)
    sids = seed_ensemble.load_members(out_dir, ds, dataset_dir)
    requests = _sid_requests(ds, dataset_dir, kind, path, split, ensemble.history_cap(sids))
    beams = ensemble.member_beams(sids, beams, at_least=top_k)
    batch = batch or sids[0].batch_size
    log.info("recommend: %d members fused by %s", len(sids), variant)
    for start in range(0, len(requests), _ENSEMBLE_CHUNK):
        part = requests[start : start + _ENSEMBLE_CHUNK]
        _, fused = ensemble.score_members(sids, [r.history for r in part], beams, batch,
                                          what=f"recommend {start}/{len(requests)}")  # fmt: skip
        scores = fused.scores(variant)  # [n, U]
        order = np.argsort(-scores, axis=1, kind="stable")
        items = np.take_along_axis(fused.union, order, 1)
        yield from output_rows(part, items, np.take_along_axis(scores, order, 1), ds, top_k)


def _stream(requests, batches, ds, top_k):
    for b in batches:
        part = requests[b.start : b.start + len(b.items)]
        yield from output_rows(part, b.items, b.scores, ds, top_k)


def _recommend_text(model_dir, ds, dataset_dir, requests, split, top_k, step, beams, batch):
    from jaxrec.inference import evaluate
    from jaxrec.tasks import examples as ex_lib

    loaded, source, vocab, input_length, _ = evaluate.text_setup(
        model_dir, dataset_dir, "retrieval", step
    )
    users = None if requests is None else [r.dense_user for r in requests]
    exs = ex_lib.eval_examples("retrieval", source.dataset, source.renderer, split or "test",
                               source.options, users=users)  # fmt: skip
    labels = [str(e.user) for e in exs] if requests is None else [r.user for r in requests]
    inputs = evaluate.encode_prompts(vocab.encode, [e.inputs for e in exs], input_length,
                                     vocab.eos_id)  # fmt: skip
    beams = max(beams or 20, top_k)
    batches = evaluate.ranked_batches(loaded, inputs, source.catalogue(), beams, batch or 16,
                                      max_items=top_k)  # fmt: skip
    yield from _stream([Request(label, ()) for label in labels], batches, ds, top_k)

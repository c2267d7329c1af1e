"""Example builders: which items of which user go into each task, per split.

No leakage, by construction. For user u with sequence [i_0 .. i_{n-1}] the validation and test
targets are i_{n-2} and i_{n-1}. Every *train* example built from u uses only i_0 .. i_{n-3}
(its training part) plus items u never interacted with (ranking/BPR negatives), so neither
held-out target of u appears in its inputs or targets:

    retrieval, ranking, rating, bpr, fusionseqrec  one example per prefix of the training part
    mim, mlm, preference                           one example per user, over its training part
    itemsearch                                     LC-Rec train intentions avoiding i_{n-2}, i_{n-1}
    item2index, index2item                         one per catalogue item: item text <-> tokens.
        These carry no user data at all (LC-Rec trains them over the whole catalogue).

Validation/test examples are the leave-one-out examples of that split (history before the
target, capped). Item-level alignment tasks evaluate on a seeded sample of catalogue items.

Randomness (templates, negatives, masks, pair order) comes from a `random.Random` seeded by
(seed, task, split, user) (or item): any user's examples can be rebuilt on their own.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
from collections.abc import Iterator, Sequence

from jaxrec.data.dataset import Dataset
from jaxrec.tasks import preprocessors as pp
from jaxrec.tasks.items import ItemRenderer
from jaxrec.tasks.templates import pick
from jaxrec.tasks.user_info import UserInfo

log = logging.getLogger(__name__)

TASKS = (
    "retrieval",
    "ranking",
    "rating",
    "mim",
    "mlm",
    "bpr",
    "item2index",
    "index2item",
    "fusionseqrec",
    "itemsearch",
    "preference",
)
CAO_TASKS = ("retrieval", "ranking", "rating", "mim", "mlm", "bpr")
LCREC_TASKS = ("retrieval", "item2index", "index2item", "fusionseqrec", "itemsearch", "preference")
EVAL_TASKS = ("retrieval", "ranking", "rating")
ITEM_TASKS = ("item2index", "index2item")  # one example per catalogue item, no user data


@dataclasses.dataclass(frozen=True)
class TaskOptions:
    """Knobs of the example builders (defaults follow P5 / Cao et al. / LC-Rec).

    Attributes:
      history_cap: items of history shown (last 20).
      train_candidates / eval_candidates: ranking list size incl. the target (20 / 100 as P5).
      mim_rate: fraction of history items masked (at least one).
      mlm_noise_density / mlm_mean_span: T5 span corruption over words.
      eval_template: template index used for validation/test prompts.
      alignment_eval_items: catalogue items sampled for item2index/index2item eval splits.
      seed: seed of every random choice.
    """

    history_cap: int = 20
    train_candidates: int = 20
    eval_candidates: int = 100
    mim_rate: float = 0.2
    mlm_noise_density: float = 0.15
    mlm_mean_span: float = 3.0
    eval_template: int = 0
    alignment_eval_items: int = 500
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class TextExample:
    """One text example and where it came from (user -1: item-level, no user data)."""

    user: int
    inputs: str
    targets: str
    target_item: int = -1


@dataclasses.dataclass(frozen=True)
class EvalExample:
    """What an evaluator needs to decode and score one validation/test prompt."""

    user: int
    inputs: str
    target_item: int
    candidates: tuple[int, ...] | None = None
    target_rating: float | None = None


def unavailable(
    task: str, ds: Dataset, renderer: ItemRenderer, user_info: UserInfo | None
) -> str | None:
    """Why `task` cannot be built for this dataset (None if it can)."""
    if task == "rating" and not ds.has_ratings:
        return "the dataset has no ratings"
    if task == "mlm" and not renderer.has_titles:
        return "items have no titles to corrupt"
    if task in ("item2index", "index2item", "fusionseqrec"):
        if not renderer.has_semantic_ids:
            return "alignment needs semantic item ids (item_repr 'sid')"
        if not renderer.has_titles:
            return "alignment needs item titles"
    if task == "itemsearch" and (user_info is None or not user_info.intentions):
        return "the dataset has no user queries (LC-Rec user.json)"
    if task == "preference" and (user_info is None or not user_info.preferences):
        return "the dataset has no user preferences (LC-Rec user.json)"
    return None


def _rng(opts: TaskOptions, task: str, split: str, key: int) -> random.Random:
    """The seeded stream of one user's (or one item's) examples of a task and split."""
    return random.Random(f"{opts.seed}/{task}/{split}/{key}")


def _template(task: str, split: str, rng: random.Random, opts: TaskOptions):
    return pick(task, rng if split == "train" else None, opts.eval_template)


def _positions(
    ds: Dataset, task: str, split: str, opts: TaskOptions, users=None
) -> Iterator[tuple]:
    """(user, history, target, end, rng) for every train prefix or leave-one-out example.

    One random stream per user (seeding costs more than an example), shared by its prefixes.
    """
    cap = opts.history_cap
    for u in range(ds.num_users) if users is None else users:
        items = ds.sequences[u].tolist()
        n = len(items)
        ends = range(1, n - 2) if split == "train" else [n - 2 if split == "validation" else n - 1]
        rng = _rng(opts, task, split, u)
        for end in ends:
            yield u, items[max(0, end - cap) : end], items[end], end, rng


def _negatives(ds: Dataset, u: int, k: int, rng: random.Random, fixed: bool) -> list[int]:
    """k items u never interacted with: the dataset's fixed negatives when it has k of them,
    else sampled (seeded) from the rest of the catalogue."""
    if ds.negatives is not None and ds.negatives.shape[1] >= k:
        pool = ds.negatives[u].tolist()
        return pool[:k] if fixed else rng.sample(pool, k)
    seen = set(ds.sequences[u].tolist())
    k = min(k, ds.num_items - len(seen))  # tiny catalogues: as many as exist
    out: list[int] = []
    while len(out) < k:
        c = rng.randrange(ds.num_items)
        if c not in seen and c not in out:
            out.append(c)
    return out


def _ranking(ds, r, split, opts, u, hist, target, rng) -> tuple[TextExample, list[int]]:
    size = opts.train_candidates if split == "train" else opts.eval_candidates
    cands = [target, *_negatives(ds, u, size - 1, rng, fixed=split != "train")]
    rng.shuffle(cands)
    ex = pp.ranking(r.many(hist), r.many(cands), r(target), _template("ranking", split, rng, opts))
    return TextExample(u, ex["inputs"], ex["targets"], target), cands


def _rating(ds, r, split, opts, u, hist, target, end, rng) -> tuple[TextExample, float] | None:
    ratings = ds.ratings[u]
    y = float(ratings[end])
    if math.isnan(y):
        return None
    hist_r = ratings[end - len(hist) : end].tolist()
    ex = pp.rating(r.many(hist), hist_r, r(target), y, _template("rating", split, rng, opts))
    return TextExample(u, ex["inputs"], ex["targets"], target), y


def build_examples(
    task: str,
    ds: Dataset,
    r: ItemRenderer,
    split: str,
    opts: TaskOptions = TaskOptions(),
    user_info: UserInfo | None = None,
    users: Sequence[int] | None = None,
) -> Iterator[TextExample]:
    """Text examples of `task` for `split` ("train", "validation" or "test").

    `users` restricts user-level tasks to those users (their examples are identical to the
    ones a full build yields); item-level tasks ignore it.
    """
    reason = unavailable(task, ds, r, user_info)
    if reason:
        raise ValueError(f"task {task!r} is unavailable for {ds.name!r}: {reason}")
    if task in ("retrieval", "ranking", "rating", "bpr", "fusionseqrec"):
        for u, hist, target, end, rng in _positions(ds, task, split, opts, users):
            yield from _sequence_task(task, ds, r, split, opts, u, hist, target, end, rng)
    elif task in ("mim", "mlm", "preference"):
        yield from _user_task(task, ds, r, split, opts, user_info, users)
    elif task in ITEM_TASKS:
        yield from _item_task(task, ds, r, split, opts)
    elif task == "itemsearch":
        yield from _item_search(ds, r, split, opts, user_info, users)
    else:
        raise ValueError(f"unknown task {task!r}; tasks are {TASKS}")


def _sequence_task(task, ds, r, split, opts, u, hist, target, end, rng) -> Iterator[TextExample]:
    if task == "retrieval":
        ex = pp.retrieval(r.many(hist), r(target), _template(task, split, rng, opts))
        yield TextExample(u, ex["inputs"], ex["targets"], target)
    elif task == "ranking":
        yield _ranking(ds, r, split, opts, u, hist, target, rng)[0]
    elif task == "rating":
        out = _rating(ds, r, split, opts, u, hist, target, end, rng)
        if out is not None:
            yield out[0]
    elif task == "bpr":
        neg = _negatives(ds, u, 1, rng, fixed=False)[0]
        t = _template(task, split, rng, opts)
        ex = pp.bpr(r.many(hist), r(target), r(neg), rng, t)
        yield TextExample(u, ex["inputs"], ex["targets"], target)
    elif task == "fusionseqrec":
        title = r.titles[target]
        titled = [i for i in hist if r.titles[i]]
        if rng.random() < 0.5 and title:
            t = _template("fusion_title", split, rng, opts)
            ex = pp.fusion_title(r.many(hist), title, t)
        elif titled:
            t = _template("fusion_index", split, rng, opts)
            ex = pp.fusion_index([r.titles[i] for i in titled], r(target), t)
        else:
            return
        yield TextExample(u, ex["inputs"], ex["targets"], target)


def _user_history(ds: Dataset, u: int, split: str, cap: int) -> list[int]:
    if split == "train":
        return ds.train_sequence(u)[-cap:].tolist()
    return list(ds.example(u, split, cap).history)


def _user_task(task, ds, r, split, opts, user_info, users) -> Iterator[TextExample]:
    for u in range(ds.num_users) if users is None else users:
        hist = _user_history(ds, u, split, opts.history_cap)
        rng = _rng(opts, task, split, u)
        if task == "mim":
            if len(hist) < 2:
                continue
            t = _template(task, split, rng, opts)
            ex = pp.masked_items(r.many(hist), rng, t, opts.mim_rate)
        elif task == "mlm":
            text = "; ".join(r.titles[i] for i in hist if r.titles[i])
            if len(text.split()) < 2:
                continue
            t = _template(task, split, rng, opts)
            ex = pp.span_corruption(text, rng, t, opts.mlm_noise_density, opts.mlm_mean_span)
        else:
            prefs = user_info.preferences.get(u)
            if not prefs or not hist:
                continue
            t = _template(task, split, rng, opts)
            ex = pp.preference(r.many(hist), rng.choice(prefs), t)
        yield TextExample(u, ex["inputs"], ex["targets"])


def _item_task(task, ds, r, split, opts) -> Iterator[TextExample]:
    items = [i for i in range(ds.num_items) if r.titles[i]]
    if split != "train" and len(items) > opts.alignment_eval_items:
        items = sorted(
            random.Random(f"{opts.seed}/{task}/{split}").sample(items, opts.alignment_eval_items)
        )
    for i in items:
        rng = _rng(opts, task, split, i)
        t = _template(task, split, rng, opts)
        if task == "item2index":
            ex = pp.item2index(r.titles[i], r.descriptions[i], r(i), t)
        else:
            ex = pp.index2item(r(i), r.titles[i], t)
        yield TextExample(-1, ex["inputs"].strip(), ex["targets"], i)


def _item_search(ds, r, split, opts, user_info, users) -> Iterator[TextExample]:
    """LC-Rec intentions; train ones touching the user's held-out targets are dropped."""
    source = user_info.intentions.get("train" if split == "train" else "test", {})
    dropped = 0
    for u in sorted(source if users is None else set(users) & set(source)):
        it = source[u]
        if not it.queries:
            continue
        if split == "train":
            held_out = set(ds.sequences[u][-2:].tolist())
            if it.item in held_out or held_out.intersection(it.history):
                dropped += 1
                continue
        rng = _rng(opts, "itemsearch", split, u)
        t = _template("itemsearch", split, rng, opts)
        hist = list(it.history)[-opts.history_cap :]
        ex = pp.item_search(r.many(hist), rng.choice(it.queries), r(it.item), t)
        yield TextExample(u, ex["inputs"], ex["targets"], it.item)
    if dropped:
        log.info("itemsearch/%s: dropped %d intentions that reveal held-out items", split, dropped)


def eval_examples(
    task: str,
    ds: Dataset,
    r: ItemRenderer,
    split: str,
    opts: TaskOptions = TaskOptions(),
    users: Sequence[int] | None = None,
) -> list[EvalExample]:
    """(user, prompt, target, candidates/rating) per user of a validation/test split.

    Prompts are exactly the `inputs` of the registered task's split (same template, same
    candidate order), so an evaluator can decode them and score against `target_item`.
    """
    if split not in ("validation", "test"):
        raise ValueError(f"eval examples exist for 'validation' and 'test', not {split!r}")
    if task not in EVAL_TASKS:
        raise ValueError(f"eval examples exist for {EVAL_TASKS}, not {task!r}")
    out = []
    for u, hist, target, end, rng in _positions(ds, task, split, opts, users):
        if task == "retrieval":
            ex = next(_sequence_task(task, ds, r, split, opts, u, hist, target, end, rng))
            out.append(EvalExample(u, ex.inputs, target))
        elif task == "ranking":
            ex, cands = _ranking(ds, r, split, opts, u, hist, target, rng)
            out.append(EvalExample(u, ex.inputs, target, candidates=tuple(cands)))
        else:
            if not ds.has_ratings:
                return []
            res = _rating(ds, r, split, opts, u, hist, target, end, rng)
            if res is not None:
                out.append(EvalExample(u, res[0].inputs, target, target_rating=res[1]))
    return out

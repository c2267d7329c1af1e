"""Register seqio Tasks and Mixtures for a prepared dataset.

    register_dataset_tasks("/data/beauty", item_repr="sid")
      -> beauty_sid_retrieval, beauty_sid_ranking, beauty_sid_mim, beauty_sid_bpr, ...
         beauty_sid_cao    (recommendation + MIM + MLM + BPR; Cao et al.)
         beauty_sid_lcrec  (retrieval + item/index alignment + fusion [+ search, preference])

Each Task reads text examples from a `jaxrec.tasks.sources.UserShardedSource` (splits train /
validation / test, in shards of `users_per_shard` users), tokenizes `inputs`/`targets` with the
dataset's `RecVocabulary` and appends EOS, so any seqio feature converter (e.g.
`EncDecFeatureConverter`, packed or not) applies. Everything before the
`seqio.CacheDatasetPlaceholder` (building the examples, tokenizing) is deterministic, so every
Task can be cached offline by seqio's Beam pipeline (`python -m seqio.scripts.cache_tasks_main
--module_import=tasks.beauty ...`, one worker per shard) and trained from the cache
(`USE_CACHED_TASKS = True`).
Registration reads the dataset (to know which tasks exist) but builds examples and trains a
SentencePiece model (when none is given) only when a dataset is first requested. Calling it
again with the same arguments is a no-op; with different arguments it replaces the tasks.
Mixture rates default to each task's number of training examples (i.e. plain concatenation,
as both papers do); pass `mixture_rates={"mim": 0.5, ...}` to override per task.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Sequence

import seqio

from jaxrec.data.canonical import find_dataset_name, read_dataset
from jaxrec.data.dataset import DataError, Dataset
from jaxrec.indexing.binding import verify_index
from jaxrec.indexing.schemes import load_index
from jaxrec.indexing.trie import build_prefix_table
from jaxrec.inference.retrieval import Catalogue
from jaxrec.tasks import examples as ex_lib
from jaxrec.tasks.items import ItemRenderer, make_renderer
from jaxrec.tasks.metrics import task_metrics
from jaxrec.tasks.sources import USERS_PER_SHARD, UserShardedSource
from jaxrec.tasks.templates import corpus as template_corpus
from jaxrec.tasks.user_info import UserInfo, read_user_info, user_info_path
from jaxrec.tasks.vocab import NUM_EXTRA_IDS, RecVocabulary, train_sentencepiece

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
DEFAULT_SPM_VOCAB_SIZE = 4000


def sentencepiece_corpus(ds: Dataset) -> list[str]:
    """Text a local SentencePiece model is trained on: item text, templates, ids, ratings."""
    lines = []
    for i, it in enumerate(ds.items):
        lines.append(f'item_{i} "{it.title}"' if it.title else f"item_{i}")
        for text in (it.brand, ", ".join(it.categories), it.description[:500]):
            if text:
                lines.append(text)
    lines.extend(template_corpus())
    lines.append("[MASK] 1 2 3 4 5 stars 0.5 1.5 2.5 3.5 4.5")
    return lines


def default_cache_dir(dataset_dir: str) -> str:
    """`{dataset_dir}/cache` when writable, else `$JAXREC_CACHE_DIR` or ~/.cache/jaxrec."""
    env = os.environ.get("JAXREC_CACHE_DIR")
    if env:
        return env
    if os.access(dataset_dir, os.W_OK):
        return os.path.join(dataset_dir, "cache")
    return os.path.join(os.path.expanduser("~"), ".cache", "jaxrec")


class DatasetSource:
    """One prepared dataset in one item representation: lazy examples, vocabulary, eval data."""

    def __init__(
        self,
        ds: Dataset,
        renderer: ItemRenderer,
        vocabulary: RecVocabulary,
        options: ex_lib.TaskOptions,
        user_info: UserInfo | None,
    ):
        self.dataset = ds
        self.renderer = renderer
        self.vocabulary = vocabulary
        self.options = options
        self.user_info = user_info
        self._cache: dict[tuple[str, str], list[ex_lib.TextExample]] = {}
        self._lock = threading.Lock()
        self._catalogue = None

    def available(self) -> dict[str, str | None]:
        """task -> None if it can be built, else the reason it is skipped."""
        return {
            t: ex_lib.unavailable(t, self.dataset, self.renderer, self.user_info)
            for t in ex_lib.TASKS
        }

    def examples(
        self, task: str, split: str, users: Sequence[int] | None = None
    ) -> list[ex_lib.TextExample]:
        """Examples of `task` for `split`: of every user (built once, kept), or of `users`
        only (built on each call; the same examples the full build holds for them)."""
        if users is not None:
            return list(ex_lib.build_examples(
                task, self.dataset, self.renderer, split, self.options, self.user_info, users
            ))  # fmt: skip
        key = (task, split)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = list(
                    ex_lib.build_examples(
                        task, self.dataset, self.renderer, split, self.options, self.user_info
                    )
                )
                log.info(
                    "%s/%s/%s: %d examples", self.dataset.name, task, split, len(self._cache[key])
                )
            return self._cache[key]

    def eval_examples(self, task: str, split: str) -> list[ex_lib.EvalExample]:
        return ex_lib.eval_examples(task, self.dataset, self.renderer, split, self.options)

    def item_token_ids(self) -> list[list[int]]:
        """Per item id, the token ids a decoder must emit for it (prefix-table input)."""
        return self.vocabulary.item_token_ids(self.renderer.strings)

    def catalogue(self) -> Catalogue:
        """The `jaxrec.inference.retrieval.Catalogue` of every item's rendered target: what
        constrained decoding, evaluation and t5x's decode function share (built once)."""
        with self._lock:
            if self._catalogue is None:
                table = build_prefix_table(self.item_token_ids(), self.vocabulary.eos_id)
                self._catalogue = Catalogue(table)
            return self._catalogue


_SOURCES: dict[str, DatasetSource] = {}  # task or mixture name -> its source
_KEYS: dict[str, tuple] = {}  # registration prefix -> arguments it was registered with
SKIPPED: dict[str, dict[str, str]] = {}  # registration prefix -> skipped task -> reason


@functools.lru_cache(maxsize=8)
def _read(dataset_dir: str, name: str | None, mtime: float) -> Dataset:
    del mtime  # part of the cache key only: a re-prepared dataset is read again
    return read_dataset(dataset_dir, name)


def load_dataset(dataset_dir: str, dataset_name: str | None = None) -> Dataset:
    """`read_dataset`, cached per directory (re-read when its `.inter.json` changes)."""
    name = dataset_name or find_dataset_name(dataset_dir)
    mtime = os.path.getmtime(os.path.join(dataset_dir, f"{name}.inter.json"))
    return _read(os.path.abspath(dataset_dir), name, mtime)


def _local_spm(ds: Dataset, cache_dir: str, vocab_size: int) -> str:
    return train_sentencepiece(sentencepiece_corpus(ds), cache_dir, vocab_size)


def _rate_fn(source: DatasetSource, task: str, fixed: float | None):
    if fixed is not None:
        return fixed
    return lambda _task: float(max(1, len(source.examples(task, "train"))))


def register_dataset_tasks(
    dataset_dir: str,
    name: str | None = None,
    index_path: str | None = None,
    item_repr: str = "sid",
    mixture_rates: dict[str, float] | None = None,
    spm_path: str | None = None,
    extra_ids: int = NUM_EXTRA_IDS,
    options: ex_lib.TaskOptions = ex_lib.TaskOptions(),
    cache_dir: str | None = None,
    tasks: tuple[str, ...] | None = None,
    dataset_name: str | None = None,
    spm_vocab_size: int = DEFAULT_SPM_VOCAB_SIZE,
    resolve_collisions: bool = True,
    users_per_shard: int = USERS_PER_SHARD,
) -> list[str]:
    """Register `{name}_{item_repr}_{task}` Tasks and the `_cao` / `_lcrec` Mixtures.

    Args:
      dataset_dir: a prepared (canonical) dataset directory.
      name: prefix of the task names (default: the dataset name, lower-cased).
      index_path: LC-Rec `.index.json` for item_repr "sid" (default `{dir}/{dataset}.index.json`).
      item_repr: "sid", "id", "id_title" or "title" (see `jaxrec.tasks.items`).
      mixture_rates: per task short name, a fixed mixing rate (others: #train examples).
      spm_path: SentencePiece model (FLAN-T5's in TPU configs). None: train one on the
        dataset's text, cached under `cache_dir`.
      extra_ids: sentinels after the SentencePiece pieces (100 for FLAN-T5).
      options: example builder options (history cap, candidate counts, seed, ...).
      tasks: restrict to these task short names (default: every available task).
      dataset_name: which dataset of `dataset_dir` if it holds several.
      resolve_collisions: give items that share a semantic id unique ones (False keeps them;
        decoding then expands shared leaves).
      users_per_shard: users per shard of each task's source (`jaxrec.tasks.sources`): the
        unit of work of a Beam worker caching the task, and of a host reading it uncached.

    Returns:
      The registered task and mixture names.
    """
    ds = load_dataset(dataset_dir, dataset_name)
    name = (name or ds.name).lower()
    prefix = f"{name}_{item_repr}"
    index = None
    if item_repr == "sid":
        index_path = index_path or os.path.join(dataset_dir, f"{ds.name}.index.json")
        if not os.path.exists(index_path):
            raise DataError(
                f"{index_path}: no item index for item_repr 'sid' "
                "(run `jaxrec index build` or pass index_path)"
            )
        verify_index(index_path, ds, dataset_dir)  # an index of other items means nothing
        # Colliding items (e.g. LC-Rec's released Beauty index) are made unique, with a warning.
        index = load_index(index_path, num_items=ds.num_items, resolve=resolve_collisions)
    uinfo_path = user_info_path(dataset_dir, ds.name)
    key = (
        os.path.abspath(dataset_dir), ds.name, id(ds), index_path, item_repr,
        tuple(sorted((mixture_rates or {}).items())), spm_path, extra_ids, options,
        cache_dir, tasks, spm_vocab_size, os.path.exists(uinfo_path), resolve_collisions,
        users_per_shard,
    )  # fmt: skip
    if _KEYS.get(prefix) == key:
        return [n for n, s in _SOURCES.items() if n.startswith(prefix + "_")]
    _unregister(prefix)

    renderer = make_renderer(ds, item_repr, index)
    user_info = read_user_info(uinfo_path, ds) if os.path.exists(uinfo_path) else None
    if spm_path is None:  # trained lazily, on first tokenization
        cache = cache_dir or default_cache_dir(dataset_dir)
        spm_path = functools.partial(_local_spm, ds, cache, spm_vocab_size)
    vocab = RecVocabulary(spm_path, renderer.new_tokens, extra_ids=extra_ids)
    source = DatasetSource(ds, renderer, vocab, options, user_info)
    features = {
        "inputs": seqio.Feature(vocabulary=vocab, add_eos=True),
        "targets": seqio.Feature(vocabulary=vocab, add_eos=True),
    }
    registered = []
    SKIPPED[prefix] = {}
    available = source.available()
    if tasks is not None:  # asked for by name: each must exist and be buildable
        unknown = [t for t in tasks if t not in available]
        if unknown:
            raise DataError(f"{prefix}: unknown task(s) {unknown}; known: {list(available)}")
        infeasible = {t: available[t] for t in tasks if available[t]}
        if infeasible:
            t, reason = next(iter(infeasible.items()))
            raise DataError(f"{dataset_dir}: task {prefix}_{t} was requested but {reason}")
    for task, reason in available.items():
        if tasks is not None and task not in tasks:
            continue
        if reason:
            SKIPPED[prefix][task] = reason
            continue
        task_name = f"{prefix}_{task}"
        seqio.TaskRegistry.add(
            task_name,
            source=UserShardedSource(source, task, SPLITS, users_per_shard),
            preprocessors=[
                seqio.preprocessors.tokenize,
                seqio.CacheDatasetPlaceholder(),
                seqio.preprocessors.append_eos_after_trim,
            ],
            output_features=features,
            **task_metrics(task, source),
        )
        _SOURCES[task_name] = source
        registered.append(task)
    if SKIPPED[prefix]:
        log.warning(
            "%s: skipped %d task(s) that cannot be built from this data: %s",
            prefix,
            len(SKIPPED[prefix]),
            "; ".join(f"{t} ({r})" for t, r in SKIPPED[prefix].items()),
        )
    names = [f"{prefix}_{t}" for t in registered]
    rates = mixture_rates or {}
    for mixture, members in (("cao", ex_lib.CAO_TASKS), ("lcrec", ex_lib.LCREC_TASKS)):
        parts = [t for t in members if t in registered]
        if not parts:
            continue
        mix_name = f"{prefix}_{mixture}"
        seqio.MixtureRegistry.add(
            mix_name, [(f"{prefix}_{t}", _rate_fn(source, t, rates.get(t))) for t in parts]
        )
        _SOURCES[mix_name] = source
        names.append(mix_name)
    _KEYS[prefix] = key
    log.info("registered %d tasks and mixtures for %s: %s", len(names), prefix, names)
    return names


def register_reprs(dataset_dir: str, reprs: tuple[str, ...] | None = None, **kwargs) -> list[str]:
    """Register every feasible item representation of a dataset (or those in `reprs`).

    Default: "sid" when `{dir}/{dataset}.index.json` (or `index_path`) exists, "id", and
    "id_title"/"title" when every item has a title; a default representation that cannot be
    built is skipped with a WARNING saying why. A representation asked for in `reprs` that
    cannot be built is an error (DataError with the reason). Other keyword arguments go to
    `register_dataset_tasks`.
    """
    ds = load_dataset(dataset_dir, kwargs.get("dataset_name"))
    explicit = reprs is not None
    if reprs is None:
        index_path = kwargs.get("index_path") or os.path.join(dataset_dir, f"{ds.name}.index.json")
        reprs = ("sid",) if os.path.exists(index_path) else ()
        reprs += ("id",)
        if all(it.title.strip() for it in ds.items):
            reprs += ("id_title", "title")
    names = []
    for item_repr in reprs:
        try:
            names += register_dataset_tasks(dataset_dir, item_repr=item_repr, **kwargs)
        except DataError as e:
            if explicit:
                raise
            log.warning("%s: skipped item_repr %r: %s", dataset_dir, item_repr, e)
    return names


def _unregister(prefix: str) -> None:
    for n in [n for n in _SOURCES if n.startswith(prefix + "_")]:
        for registry in (seqio.MixtureRegistry, seqio.TaskRegistry):
            if n in registry.names():
                registry.remove(n)
        del _SOURCES[n]
    _KEYS.pop(prefix, None)


def source_of(task_or_mixture: str) -> DatasetSource:
    """The `DatasetSource` behind a name registered by `register_dataset_tasks`."""
    if task_or_mixture not in _SOURCES:
        raise KeyError(f"{task_or_mixture!r} was not registered by jaxrec.tasks.registry")
    return _SOURCES[task_or_mixture]


def registered_names() -> list[str]:
    return sorted(_SOURCES)


def eval_examples(task_or_mixture: str, split: str, task: str = "retrieval"):
    """Eval-time pieces of a registered dataset: (user, prompt, target item, ...) per user.

    `task` is "retrieval", "ranking" or "rating"; prompts match the registered task's inputs.
    """
    return source_of(task_or_mixture).eval_examples(task, split)

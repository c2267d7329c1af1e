"""seqio postprocessors and metric functions of the evaluation tasks (what `t5x.eval` and t5x's
in-training evaluation report), with the definitions of `jaxrec.inference.metrics` / `jaxrec eval`.

  retrieval  Recall@K, NDCG@K (K = 1, 5, 10, 20) of the decoded items against the target item
  ranking    HR@K, NDCG@K of the decoded items among the prompt's candidates
  rating     RMSE, MAE over the outputs that parse as a 1-5 rating (and how many did not)

A prediction is one decoded text or, with `return_all_decodes`, t5x's list of texts sorted by
*increasing* score. The postprocessor turns texts into a ranked item list (best first): every
text maps back to its catalogue item(s) through the item prefix table (items sharing a leaf
expand in ascending id order, repeats and non-items are skipped), exactly as
`jaxrec.inference.decoding.sequences_to_items` ranks `jaxrec eval`'s beams. Targets become item ids
(ranking: the id and the prompt's candidates).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxrec.inference import metrics as eval_metrics

KS = eval_metrics.DEFAULT_KS
METRIC_TASKS = ("retrieval", "ranking", "rating")


class ItemDecoder:
    """Decoded texts -> item ids (and ranking prompts -> candidates) of one dataset source."""

    def __init__(self, source: Any):
        self._source = source

    @functools.cached_property
    def _lookup(self) -> dict[tuple[int, ...], tuple[int, ...]]:
        return self._source.catalogue().lookup

    @functools.cached_property
    def _by_text(self) -> dict[str, tuple[int, ...]]:
        out: dict[str, tuple[int, ...]] = {}
        for i, s in enumerate(self._source.renderer.strings):
            out.setdefault(s, ())
            out[s] += (i,)
        return out

    def items(self, text: str) -> tuple[int, ...]:
        """All items whose target decodes to `text` (empty when it is no item)."""
        if text in self._by_text:
            return self._by_text[text]
        ids = tuple(int(t) for t in self._source.vocabulary.encode(text))
        return self._lookup.get(ids, ())

    @functools.cached_property
    def _candidates(self) -> dict[str, tuple[int, ...]]:
        out = {}
        for split in ("validation", "test"):
            for ex in self._source.eval_examples("ranking", split):
                out[ex.inputs] = tuple(ex.candidates)
        return out

    def candidates(self, prompt: str) -> tuple[int, ...]:
        return self._candidates.get(prompt, ())

    def ranked(self, texts: Sequence[str], max_items: int = max(KS)) -> list[int]:
        """Texts best first -> ranked distinct items."""
        out: list[int] = []
        for text in texts:
            for item in self.items(text):
                if item not in out:
                    out.append(item)
        return out[:max_items]


def postprocess(output: Any, example: Any = None, is_target: bool = False, *, decoder, task):
    """seqio `postprocess_fn` of an evaluation task (see the module docstring)."""
    if task == "rating":
        return output
    if is_target:
        items = decoder.items(output)
        item = items[0] if items else -1
        if task == "ranking":
            prompt = _text(example.get("inputs_pretokenized", b"")) if example else ""
            return item, decoder.candidates(prompt)
        return item
    texts = [output] if isinstance(output, str) else list(output)[::-1]  # t5x: best last
    return decoder.ranked(texts)


def _text(x: Any) -> str:
    return x.decode("utf-8") if isinstance(x, bytes) else str(x)


def retrieval_metric(targets: Sequence[int], predictions: Sequence[Sequence[int]]) -> dict:
    """Recall@K and NDCG@K (`jaxrec.inference.metrics.retrieval_metrics`)."""
    ranked = eval_metrics.padded_lists(predictions, max(KS))
    return eval_metrics.retrieval_metrics(ranked, np.asarray(targets, np.int64), KS)


def ranking_metric(targets: Sequence[tuple], predictions: Sequence[Sequence[int]]) -> dict:
    """HR@K and NDCG@K among each prompt's candidates (`eval_metrics.ranked_list_ranks`)."""
    items = np.asarray([t[0] for t in targets], np.int64)
    candidates = [t[1] for t in targets]
    ranked = eval_metrics.padded_lists(predictions, max(KS))
    ranks = eval_metrics.ranked_list_ranks(ranked, items, candidates)
    out = eval_metrics.metrics_from_ranks(ranks, KS)
    return {k.replace("recall@", "hr@"): v for k, v in out.items()}


def rating_metric(targets: Sequence[str], predictions: Sequence[Any]) -> dict:
    """RMSE / MAE (`jaxrec.inference.metrics.rating_metrics`) of the best decoded text."""
    texts = [p if isinstance(p, str) else (list(p)[-1] if len(p) else "") for p in predictions]
    out = eval_metrics.rating_metrics(texts, [float(t) for t in targets])
    return {k: float(v) for k, v in out.items()}


def task_metrics(task: str, source: Any) -> dict[str, Any]:
    """`postprocess_fn` and `metric_fns` keyword arguments of `seqio.Task` for `task`."""
    if task not in METRIC_TASKS:
        return {"metric_fns": []}
    decoder = ItemDecoder(source)
    metric = {"retrieval": retrieval_metric, "ranking": ranking_metric, "rating": rating_metric}
    return {
        "postprocess_fn": functools.partial(postprocess, decoder=decoder, task=task),
        "metric_fns": [metric[task]],
    }

"""Model-driven evaluation: a trained MODEL_DIR + a prepared dataset -> metrics, per-user rows.

Tasks (prompts come from `jaxrec.tasks.examples.eval_examples`, i.e. exactly the registered
task's validation/test inputs):
  retrieval  constrained beam search over the whole catalogue -> Recall/NDCG@{1,5,10,20}
  ranking    the 100 fixed candidates scored by their sequence log-likelihood -> HR/NDCG@K
  rating     greedy generation parsed as a 1-5 rating -> RMSE/MAE (+ unparsable count)

Models come from `jaxrec.model_dir` (one device, or sharded over a mesh with `mesh_shape`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.data.dataset import DataError
from jaxrec.inference import metrics as eval_metrics
from jaxrec.inference import retrieval
from jaxrec.inference.generation import make_generate_fn
from jaxrec.inference.retrieval import Catalogue, RankedBatch
from jaxrec.model_dir import LoadedModel, load_model_dir

log = logging.getLogger(__name__)


def encode_prompts(encode: Callable[[str], Sequence[int]], texts, length: int, eos_id: int):
    """[n, length] int32: token ids + EOS, trimmed like seqio (keep the start), 0-padded."""
    out = np.zeros((len(texts), length), np.int32)
    for i, text in enumerate(texts):
        ids = list(encode(text))[: length - 1] + [eos_id]
        out[i, : len(ids)] = ids
    return out


def _batches(n: int, batch_size: int, what: str):
    """Index arrays of fixed size (the last one padded with row 0) and how many are real."""
    t0 = time.perf_counter()
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(start + batch_size, n))
        real = len(idx)
        yield np.concatenate([idx, np.zeros(batch_size - real, int)]), real
        done = start + real
        rate = done / max(time.perf_counter() - t0, 1e-9)
        log.info("%s: %d/%d users (%.1f users/s)", what, done, n, rate)


def ranked_batches(
    loaded: LoadedModel,
    inputs: np.ndarray,
    catalogue: Catalogue,
    num_beams: int = 20,
    batch_size: int = 16,
    constrained: bool = True,
    max_items: int = 20,
) -> Iterator[RankedBatch]:
    """`jaxrec.inference.retrieval.ranked_batches` of a text model over encoded prompts
    `inputs [n, length]` (on one device or split over the model's mesh)."""
    table = catalogue.table
    key = ("generate", table.eos_id, num_beams, table.max_length)
    generate = loaded.function(
        key, lambda: make_generate_fn(loaded.model, table.eos_id, num_beams, None, table.max_length)
    )
    return retrieval.ranked_batches(
        generate, loaded.params, inputs, len(inputs), catalogue, loaded.batch_size(batch_size),
        max_items, constrained, place=loaded.put, context=loaded.context,
    )  # fmt: skip


def retrieve(
    loaded: LoadedModel,
    inputs: np.ndarray,
    catalogue: Catalogue,
    num_beams: int = 20,
    batch_size: int = 16,
    constrained: bool = True,
    max_items: int = 20,
) -> tuple[np.ndarray, np.ndarray, float]:
    """(items [n, max_items] -1 padded, their scores [n, max_items] -inf padded, invalid rate)
    for encoded prompts `inputs [n, length]`."""
    batches = ranked_batches(loaded, inputs, catalogue, num_beams, batch_size, constrained,
                             max_items)  # fmt: skip
    return retrieval.rank_all(batches, len(inputs), max_items)


def make_score_fn(model) -> Callable:
    """Jitted `(params, inputs [b, L], targets [b, c, T]) -> [b, c]` summed target log-probs.

    Targets end with EOS and are 0-padded; the encoder runs once per prompt.
    """

    @jax.jit
    def score(params, inputs, targets):
        b, c, t = targets.shape
        variables = {"params": params}
        encoded = model.apply(variables, inputs, enable_dropout=False, method=model.encode)
        encoded = jnp.repeat(encoded, c, axis=0)
        flat = targets.reshape(b * c, t)
        dec_in = jnp.pad(flat[:, :-1], ((0, 0), (1, 0)))  # shifted right, 0 = start token
        logits = model.apply(
            variables,
            encoded,
            jnp.repeat(inputs, c, axis=0),
            dec_in,
            flat,
            enable_dropout=False,
            method=model.decode,
        )
        logp = jax.nn.log_softmax(logits.astype(jnp.float32))
        tok = jnp.take_along_axis(logp, flat[..., None], axis=-1)[..., 0]
        return jnp.where(flat > 0, tok, 0.0).sum(-1).reshape(b, c)

    return score


def score_candidates(
    loaded: LoadedModel,
    inputs: np.ndarray,
    candidates: np.ndarray,
    item_tokens: Sequence[Sequence[int]],
    eos_id: int,
    batch_size: int = 4,
) -> np.ndarray:
    """[n, num_candidates] log-likelihood of each candidate item as the target (-1: -inf)."""
    length = max(len(item_tokens[i]) for i in np.unique(candidates) if i >= 0) + 1
    targets = np.zeros(candidates.shape + (length,), np.int32)
    for (u, k), item in np.ndenumerate(candidates):
        seq = list(item_tokens[max(item, 0)]) + [eos_id]
        targets[u, k, : len(seq)] = seq
    score = loaded.function(("score",), lambda: make_score_fn(loaded.model))
    out = []
    for idx, real in _batches(len(inputs), loaded.batch_size(batch_size), "ranking"):
        with loaded.context():
            s = score(loaded.params, loaded.put(inputs[idx]), loaded.put(targets[idx]))
        out.append(np.asarray(s)[:real])
    return np.where(candidates >= 0, np.concatenate(out), -np.inf)


def generate_text(
    loaded: LoadedModel,
    inputs: np.ndarray,
    decode: Callable[[Sequence[int]], str],
    eos_id: int,
    max_decode_len: int = 8,
    batch_size: int = 16,
) -> list[str]:
    """Greedy (1-beam) unconstrained generation, decoded to text up to EOS."""
    generate = loaded.function(
        ("generate", eos_id, 1, 1, max_decode_len),
        lambda: make_generate_fn(loaded.model, eos_id, 1, 1, max_decode_len=max_decode_len),
    )
    texts: list[str] = []
    for idx, real in _batches(len(inputs), loaded.batch_size(batch_size), "rating"):
        with loaded.context():
            seqs, _ = generate(loaded.params, loaded.put(inputs[idx]), None)
        for row in np.asarray(seqs)[:real, 0].tolist():
            row = row[: row.index(eos_id)] if eos_id in row else row
            texts.append(decode([t for t in row if t > 0]))
    return texts


def evaluate(
    loaded: LoadedModel,
    examples: Sequence[Any],
    task: str,
    source: Any,
    input_length: int,
    num_beams: int = 20,
    batch_size: int = 16,
    constrained: bool = True,
    ks: Sequence[int] = eval_metrics.DEFAULT_KS,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Metrics and per-user records for one task over `EvalExample`s of one template, with the
    task source's vocabulary and catalogue (`jaxrec.tasks.registry.DatasetSource`)."""
    if not examples:
        raise DataError(f"no {task} examples to evaluate")
    vocab = source.vocabulary
    eos_id = vocab.eos_id
    inputs = encode_prompts(vocab.encode, [e.inputs for e in examples], input_length, eos_id)
    users = [int(e.user) for e in examples]
    targets = np.array([e.target_item for e in examples], np.int64)
    if task == "retrieval":
        items, _, invalid_rate = retrieve(
            loaded, inputs, source.catalogue(), num_beams, batch_size, constrained, max(ks)
        )
        ranks = eval_metrics.target_ranks(items, targets)
        metrics = eval_metrics.metrics_from_ranks(ranks, ks)
        metrics["invalid_rate"] = invalid_rate
        rows = eval_metrics.retrieval_rows(users, targets, items, ranks)
    elif task == "ranking":
        # Tiny catalogues can give fewer than 100 candidates: pad with -1, scored -inf.
        width = max(len(e.candidates) for e in examples)
        cands = np.full((len(examples), width), -1, np.int64)
        for u, e in enumerate(examples):
            cands[u, : len(e.candidates)] = e.candidates
        scores = score_candidates(loaded, inputs, cands, source.item_token_ids(), eos_id)
        col = np.argmax(cands == targets[:, None], axis=1)
        if not np.all(cands[np.arange(len(cands)), col] == targets):
            raise DataError("ranking examples: the target is missing from its candidates")
        target_scores = scores[np.arange(len(scores)), col]
        ranks = (scores >= target_scores[:, None]).sum(axis=1)  # ties count against the target
        metrics = {
            k.replace("recall@", "hr@"): v
            for k, v in eval_metrics.metrics_from_ranks(ranks, ks).items()
        }
        order = np.argsort(-scores, axis=1, kind="stable")
        rows = [
            {"user": u, "target": int(t), "items": [int(c[j]) for j in o[: max(ks)] if c[j] >= 0],
             "rank": int(r)}
            for u, t, c, o, r in zip(users, targets, cands, order, ranks, strict=True)
        ]  # fmt: skip
    elif task == "rating":
        texts = generate_text(loaded, inputs, vocab.decode, eos_id, batch_size=batch_size)
        truth = [float(e.target_rating) for e in examples]
        metrics = eval_metrics.rating_metrics(texts, truth)
        rows = [
            {"user": u, "target_rating": r, "output": o, "parsed": eval_metrics.parse_rating(o)}
            for u, r, o in zip(users, truth, texts, strict=True)
        ]
    else:
        raise ValueError(f"task must be retrieval, ranking or rating, got {task!r}")
    metrics["num_users"] = len(examples)
    return metrics, rows


def infer_item_repr(task_name: str) -> str | None:
    """The item representation in a registered task name `{dataset}_{repr}_{task}`."""
    from jaxrec.tasks.items import ITEM_REPRS

    padded = f"_{task_name}_"
    for r in sorted(ITEM_REPRS, key=len, reverse=True):  # "id_title" before "id"
        if f"_{r}_" in padded:
            return r
    return None


def evaluate_model_dir(
    model_dir: str,
    dataset_dir: str,
    split: str = "test",
    task: str = "retrieval",
    checkpoint_step: int | None = None,
    index_path: str | None = None,
    item_repr: str | None = None,
    num_beams: int | None = None,
    batch_size: int = 16,
    templates: Sequence[int] = (0,),
    input_length: int | None = None,
    constrained: bool = True,
    max_users: int | None = None,
    mesh_shape: str | None = None,
    model_config_path: str | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Evaluate a MODEL_DIR on a prepared dataset's split; returns (metrics, per-user rows).

    MODEL_DIR is written by `jaxrec.train` or by `python -m t5x.train` (see
    `jaxrec.model_dir.load_model_dir`, also for `model_config_path`).

    Prompts, vocabulary and item strings come from the task registry, exactly as in training.
    With several templates the headline figures are their mean and each template's figures
    are under "templates".
    """
    from jaxrec import model_dir as md
    from jaxrec.recipes import seed_ensemble
    from jaxrec.tasks import examples as ex_lib

    if seed_ensemble.read_marker(model_dir) is not None:
        if task != "retrieval" or checkpoint_step is not None:
            raise DataError(f"{model_dir}: an ensemble of semantic-id runs evaluates retrieval "
                            "at its members' selected steps (evaluate a member, OUT/seed_<s>, "
                            "for another step)")  # fmt: skip
        return seed_ensemble.evaluate_dir(model_dir, dataset_dir, split, num_beams, batch_size,
                                          max_users)  # fmt: skip
    if md.is_sid_model_dir(model_dir):
        if task != "retrieval":
            raise DataError(f"{model_dir}: a semantic-id model evaluates retrieval only, not "
                            f"{task!r}")  # fmt: skip
        return evaluate_sid_model_dir(model_dir, dataset_dir, split, checkpoint_step,
                                      num_beams, batch_size, max_users,
                                      model_config_path)  # fmt: skip
    num_beams = num_beams or 20
    loaded, source, vocab, input_length, item_repr = text_setup(
        model_dir, dataset_dir, task, checkpoint_step, index_path, item_repr, input_length,
        mesh_shape, model_config_path,
    )  # fmt: skip
    per_template, rows = {}, []
    metrics: dict[str, Any] = {}
    for t in templates:
        opts = dataclasses.replace(source.options, eval_template=t)
        exs = ex_lib.eval_examples(task, source.dataset, source.renderer, split, opts)
        exs = exs[:max_users] if max_users else exs
        metrics, t_rows = evaluate(
            loaded, exs, task, source, input_length, num_beams, batch_size, constrained
        )
        per_template[str(t)] = metrics
        rows += [dict(r, template=t) for r in t_rows]
    result = eval_metrics.mean_over_templates(per_template) if len(templates) > 1 else metrics
    result = dict(result, num_users=per_template[str(templates[0])]["num_users"])
    result.update(task=task, split=split, step=loaded.step, item_repr=item_repr)
    if len(templates) > 1:
        result["templates"] = per_template
    return result, rows


def evaluate_sid_model_dir(
    model_dir: str,
    dataset_dir: str,
    split: str = "test",
    checkpoint_step: int | None = None,
    num_beams: int | None = None,
    batch_size: int | None = None,
    max_users: int | None = None,
    model_config_path: str | None = None,
    ks: Sequence[int] = eval_metrics.DEFAULT_KS,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Full-ranking retrieval of a semantic-id MODEL_DIR (`jaxrec reproduce`, `jaxrec demo`)
    on a split: the same constrained search (re-scored by the dense head for a hybrid model)
    and metrics the recipe reported."""
    from jaxrec import model_dir as md
    from jaxrec.data.canonical import read_dataset
    from jaxrec.indexing.binding import verify_index

    sid = md.load_sid_model(model_dir, checkpoint_step, model_config_path)
    dataset = read_dataset(dataset_dir)
    verify_index(sid.index_path, dataset, dataset_dir)  # the model's items are these
    users = np.arange(dataset.num_users)[:max_users] if max_users else None
    beams, batch = num_beams or sid.num_beams, batch_size or sid.batch_size
    if sid.fusion_weight is not None:  # the beams' items re-scored by the dense head
        from jaxrec.recipes import hybrid

        metrics, rows = hybrid.evaluate(sid.rec, sid.params, dataset, split, users, beams,
                                        batch, sid.fusion_weight, ks, with_rows=True)  # fmt: skip
    else:
        metrics, rows = sid.rec.evaluate(sid.params, dataset, split, users, beams, batch, ks,
                                         with_rows=True)  # fmt: skip
    metrics.update(task="retrieval", split=split, step=sid.step, item_repr="sid")
    return metrics, rows


def text_setup(
    model_dir: str,
    dataset_dir: str,
    task: str = "retrieval",
    checkpoint_step: int | None = None,
    index_path: str | None = None,
    item_repr: str | None = None,
    input_length: int | None = None,
    mesh_shape: str | None = None,
    model_config_path: str | None = None,
):
    """(loaded model, task source, vocabulary, input length, item_repr) of a text MODEL_DIR
    over a dataset: the registered task's prompts, vocabulary and item strings, checked
    against the model's vocabulary."""
    from jaxrec.tasks import registry

    loaded = load_model_dir(model_dir, checkpoint_step, mesh_shape, model_config_path)
    info = loaded.vocab_info
    item_repr = item_repr or infer_item_repr(info.get("mixture_or_task_name", "")) or "sid"
    spm = info.get("sentencepiece_model_file")
    spm = os.path.join(model_dir, spm) if spm else None
    names = registry.register_dataset_tasks(
        dataset_dir, index_path=index_path, item_repr=item_repr, spm_path=spm, tasks=(task,)
    )
    if not names:
        raise DataError(f"{dataset_dir}: task {task!r} is not available for this dataset")
    source = registry.source_of(names[0])
    vocab = source.vocabulary
    model_vocab = loaded.model.config.vocab_size
    if info.get("vocab_size") not in (None, vocab.vocab_size) or vocab.vocab_size > model_vocab:
        raise DataError(
            f"{model_dir}: the model was trained with vocab_size {info.get('vocab_size')} "
            f"(embedding {model_vocab}) but {dataset_dir} with item_repr {item_repr!r} gives "
            f"{vocab.vocab_size}; pass the training index / item_repr"
        )
    lengths = info.get("task_feature_lengths") or {}
    input_length = input_length or lengths.get("inputs") or 512

    return loaded, source, vocab, input_length, item_repr

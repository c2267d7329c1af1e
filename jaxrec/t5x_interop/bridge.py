"""What the t5x gin files (gin/t5x/) bind from jaxrec: t5x's conventions at the boundary.

`python -m t5x.train`, `t5x.infer` and `t5x.eval` run jaxrec's network (as
`jaxrec.t5x_interop.network.T5XTransformer`) inside `t5x.models.EncoderDecoderModel`. This module
holds the rest of that boundary; nothing here imports t5x.

  beam_search       jaxrec's (trie-constrained) beam search as t5x's `decode_fn`: t5x takes
                    `decodes[:, -1]` as the best sequence, so the beams come back *worst first*
                    (`jaxrec.inference.decoding.beam_search` itself returns them best first).
  task_constraint   the catalogue prefix table of a registered task, so decoding emits only
                    valid items.
  task_vocabulary / padded_vocab_size   the task's vocabulary and embedding size.
"""

from __future__ import annotations

import importlib
from typing import Any

import jax.numpy as jnp

from jaxrec.indexing.trie import PrefixTable
from jaxrec.inference import decoding


def beam_search(
    inputs: jnp.ndarray,
    cache: Any,
    tokens_to_logits: Any,
    eos_id: int,
    num_decodes: int = 4,
    alpha: float = 0.0,
    constraint: decoding.Constraint | PrefixTable | None = None,
    **kwargs: Any,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """t5x `decode_fn`: `jaxrec.inference.decoding.beam_search` with the beams in t5x's order.

    Returns:
      decodes [batch, num_decodes, max_decode_len] and scores [batch, num_decodes], sorted by
      increasing score: `decodes[:, -1]` is the best sequence. Empty slots (fewer valid items
      than beams) score -inf and come first.
    """
    seqs, scores = decoding.beam_search(
        inputs,
        cache,
        tokens_to_logits,
        eos_id,
        num_decodes=num_decodes,
        alpha=alpha,
        constraint=constraint,
        **kwargs,
    )
    return seqs[:, ::-1], scores[:, ::-1]


def task_vocabulary(mixture_or_task_name: str, module: str | None = None) -> Any:
    """The targets vocabulary of a registered seqio task or mixture."""
    import seqio

    if module:
        importlib.import_module(module)
    return seqio.get_mixture_or_task(mixture_or_task_name).output_features["targets"].vocabulary


def padded_vocab_size(
    mixture_or_task_name: str, module: str | None = None, multiple: int = 128
) -> int:
    """The task vocabulary's size rounded up to `multiple` (FLAN-T5 pads 32,100 to 32,128)."""
    size = task_vocabulary(mixture_or_task_name, module).vocab_size
    return -(-size // multiple) * multiple


def task_prefix_table(mixture_or_task_name: str, module: str | None = None) -> PrefixTable:
    """Prefix table over every catalogue item's target tokens, for a task registered by
    `jaxrec.tasks.registry` (the same table `jaxrec eval` decodes with)."""
    return _catalogue(mixture_or_task_name, module).table


def task_constraint(mixture_or_task_name: str, module: str | None = None) -> decoding.Constraint:
    """`decoding.Constraint` of `task_prefix_table`: bind as `beam_search.constraint`."""
    return _catalogue(mixture_or_task_name, module).constraint


def _catalogue(mixture_or_task_name: str, module: str | None):
    from jaxrec.tasks import registry

    if module:
        importlib.import_module(module)
    return registry.source_of(mixture_or_task_name).catalogue()

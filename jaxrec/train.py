r"""Training entry point: `python -m jaxrec.train --gin_file=... --gin.KEY=VALUE`.

Flags follow t5x: `--gin_file` (repeatable), `--gin_bindings` (repeatable) and the shorthand
`--gin.KEY=VALUE` (a binding `KEY = VALUE`; VALUE is quoted for you when it is a bare word or
path, e.g. `--gin.MODEL_DIR=/tmp/run`). t5x's macro names are used: MIXTURE_OR_TASK_NAME,
MIXTURE_OR_TASK_MODULE, TASK_FEATURE_LENGTHS, TRAIN_STEPS, BATCH_SIZE, INITIAL_CHECKPOINT_PATH,
MODEL_DIR, USE_CACHED_TASKS, DROPOUT_RATE, MESH_SHAPE (see gin/runs/finetune.gin). With
USE_CACHED_TASKS = True the tasks are read from seqio's offline cache (written by
`python -m seqio.scripts.cache_tasks_main --output_cache_dir=DIR`), found in the directories of
`--seqio_additional_cache_dirs=DIR` (t5x's flag).

Example:
  python -m jaxrec.train --gin_file=gin/runs/finetune.gin \
    --gin.MIXTURE_OR_TASK_NAME=beauty_sid_cao --gin.MIXTURE_OR_TASK_MODULE=tasks.beauty \
    --gin.MODEL_DIR=/tmp/run --gin.TRAIN_STEPS=1000 --gin.MODEL_NAME=base

gin lives only here: library functions are made configurable below with
`gin.external_configurable`. MODEL_DIR receives checkpoints, TensorBoard events
(`train/`), `train_metrics.jsonl`, and what evaluation needs to rebuild the model:
`config.gin` (operative config), `model_config.json` and `vocabulary.json`.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import tokenize
from collections.abc import Callable, Sequence
from typing import Any

from jaxrec.cli import quiet

quiet.set_verbosity("--verbose" in sys.argv)  # before TensorFlow or JAX is imported

from absl import flags

import gin
from jaxrec import model_dir as md
from jaxrec import partitioning
from jaxrec.cli import threads
from jaxrec.cli.gin_checks import rewrite_gin_args
from jaxrec.models.checkpoints import load_initial_checkpoint, resize_vocab
from jaxrec.t5x_interop import bridge as t5x_bridge
from jaxrec.training import loop as tl
from jaxrec.training import optimizers, seqio_batches
from jaxrec.training import step as train_step


class _History(tl.Hook):
    """Per-step metrics of this process (what `train()` returns)."""

    name = "history"

    def __init__(self):
        self.records: list[dict] = []

    def after_step(self, loop, step, metrics):
        self.records.append({**metrics, "step": step})


FLAGS = flags.FlagValues()
flags.DEFINE_multi_string("gin_file", [], "gin config file(s), applied in order", flag_values=FLAGS)
flags.DEFINE_multi_string(
    "gin_bindings", [], "gin bindings 'KEY = VALUE' applied after the files", flag_values=FLAGS
)
flags.DEFINE_list(
    "gin_search_paths", ["."], "directories searched for gin files and includes", flag_values=FLAGS
)
flags.DEFINE_list(
    "seqio_additional_cache_dirs",
    [],
    "directories searched for cached seqio tasks (USE_CACHED_TASKS = True), as t5x's flag",
    flag_values=FLAGS,
)
flags.DEFINE_bool("debug", False, "show tracebacks of errors", flag_values=FLAGS)
flags.DEFINE_bool(
    "verbose", False, "debug logging, TensorFlow/XLA native logs included", flag_values=FLAGS
)
flags.DEFINE_integer(
    "cpu_threads",
    None,
    "CPU compute threads of XLA and BLAS (default $JAXREC_CPU_THREADS or 1: the same numbers "
    "whatever the core count; 0 = all CPUs)",
    flag_values=FLAGS,
)
flags.DEFINE_enum(
    "multihost",
    "auto",
    ["auto", "true", "false"],
    "call jax.distributed.initialize(); auto: when JAXREC_MULTIHOST=1 or "
    "JAX_COORDINATOR_ADDRESS is set",
    flag_values=FLAGS,
)

_REPO_GIN_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "gin")


def _import_models():
    from jaxrec.models import configs, network

    return configs, network


def _metric_writer(logdir: str) -> Any:
    """clu's TensorBoard writer (process 0 writes events; others only log)."""
    import jax

    try:
        from clu import metric_writers
    except ImportError as e:  # clu's summary writer needs the `tensorboard` package
        logging.warning("no TensorBoard events (%s); metrics go to train_metrics.jsonl", e)
        return None
    return metric_writers.create_default_writer(logdir, just_logging=jax.process_index() > 0)


def _import_task_module(module: str) -> None:
    from jaxrec.data.dataset import DataError

    try:
        importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and module.startswith(e.name):
            raise DataError(f"MIXTURE_OR_TASK_MODULE {module!r}: no such module") from None
        raise


def _get_task(name: str, module: str | None) -> Any:
    """The registered seqio task/mixture, or a one-line error with the closest names."""
    import difflib

    import seqio

    from jaxrec.data.dataset import DataError

    try:
        return seqio.get_mixture_or_task(name)
    except ValueError:
        known = sorted(set(seqio.TaskRegistry.names()) | set(seqio.MixtureRegistry.names()))
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        where = f" by MIXTURE_OR_TASK_MODULE {module!r}" if module else ""
        raise DataError(
            f"MIXTURE_OR_TASK_NAME {name!r}: no task or mixture of that name is registered"
            f"{where} (see `jaxrec tasks list`){hint}"
        ) from None


def _check_cached(task: Any, module: str | None) -> None:
    """Every cacheable task of `task` (a task or mixture) is in a seqio cache directory."""
    import seqio

    from jaxrec.data.dataset import DataError

    members = task.tasks if isinstance(task, seqio.Mixture) else [task]
    missing = [t.name for t in members if t.supports_caching and not t.cache_dir]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        searched = seqio.utils.get_global_cache_dirs() or "no cache directory"
        raise DataError(
            f"USE_CACHED_TASKS: task {missing[0]!r}{more} is not cached (searched {searched}); "
            "cache it with `python -m seqio.scripts.cache_tasks_main "
            f"--module_import={module or 'MODULE'} --tasks={missing[0]} --output_cache_dir=DIR` "
            "and pass --seqio_additional_cache_dirs=DIR"
        )


@gin.configurable(denylist=["multihost", "cpu_threads"])
def train(
    *,
    model_dir: str = gin.REQUIRED,
    mixture_or_task_name: str = gin.REQUIRED,
    task_feature_lengths: dict[str, int] = gin.REQUIRED,
    train_steps: int = gin.REQUIRED,
    batch_size: int = 128,
    mixture_or_task_module: str | None = None,
    model_config: Any = None,
    initial_checkpoint_path: str | None = None,
    use_cached_tasks: bool = False,
    dropout_rate: float | None = None,
    mesh_shape: str | Sequence[int] = "auto",
    fsdp: bool = False,
    pack: bool = False,
    schedule: Callable = optimizers.make_schedule,
    optimizer: Callable = optimizers.make_optimizer,
    loss: train_step.LossConfig = train_step.LossConfig(),
    num_microbatches: int = 1,
    seed: int = 0,
    split: str = "train",
    checkpoint_every: int = 1000,
    keep_checkpoints: int = 3,
    log_every: int = 100,
    multihost: bool | None = None,
    cpu_threads: int | None = None,
) -> list[dict]:
    """Trains (or resumes) a FLAN-T5 model on a seqio task/mixture; returns per-step metrics.

    Args are t5x's macros in lower case; `model_config` is a `T5Config` (default: `tiny`),
    `schedule()`/`optimizer(learning_rate=...)` build the learning rate and optax optimizer,
    `num_microbatches` accumulates gradients over that many slices of each batch.
    """
    import jax
    import tensorflow as tf

    from jaxrec.data.dataset import DataError

    for macro, value in (("TRAIN_STEPS", train_steps), ("BATCH_SIZE", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise DataError(f"{macro} must be a non-negative integer, got {value!r}")
    partitioning.maybe_initialize_distributed(multihost)
    threads.fix_cpu_threads(cpu_threads)  # after jax.distributed, before any computation
    if mixture_or_task_module:
        _import_task_module(mixture_or_task_module)
    configs, network = _import_models()
    task = _get_task(mixture_or_task_name, mixture_or_task_module)
    if use_cached_tasks:
        _check_cached(task, mixture_or_task_module)
    task_vocab = task.output_features["targets"].vocabulary.vocab_size
    config = model_config if model_config is not None else configs.get_config("tiny")
    params = None
    if initial_checkpoint_path:
        loaded_config, params = load_initial_checkpoint(initial_checkpoint_path)
        if loaded_config is not None:
            config = loaded_config
    if dropout_rate is not None:
        config = config.replace(dropout_rate=dropout_rate)
    if config.vocab_size < task_vocab:
        # FLAN-T5 pads its vocabulary to a multiple of 128; do the same for added item tokens.
        config = config.replace(vocab_size=t5x_bridge.padded_vocab_size(mixture_or_task_name))
        logging.info("vocab_size raised to %d for the task vocabulary", config.vocab_size)
    model = network.Transformer(config)
    from jaxrec.models.adapters import EncoderDecoderModel

    tf.io.gfile.makedirs(model_dir)
    mesh = partitioning.create_mesh(mesh_shape)
    rules = partitioning.standard_logical_axis_rules(fsdp=fsdp)
    lr = schedule()

    def make_tx(learning_rate):
        return optimizer(learning_rate=learning_rate)

    lengths = dict(task_feature_lengths)
    setup = train_step.setup_state(
        model, make_tx(0.0), mesh, rules, lengths["inputs"], lengths["targets"]
    )
    logging.info("mesh %s over %d devices", dict(mesh.shape), mesh.size)

    def fresh() -> train_step.TrainState:
        with partitioning.mesh_context(mesh, rules):
            if params is None:
                return setup.init(jax.random.key(seed))
            p = params
            rows = jax.tree.leaves(p["token_embedder"])[0].shape[0]
            if rows != config.vocab_size:
                p = resize_vocab(p, config.vocab_size, jax.random.key(seed))
            return setup.from_params(p)

    step_fn = train_step.make_train_step(
        EncoderDecoderModel(model, loss),
        make_tx,
        setup.shardings,
        mesh,
        num_microbatches=num_microbatches,
        dropout_seed=seed,
        enable_dropout=config.dropout_rate > 0,
    )
    batches = seqio_batches.make_batches(
        mixture_or_task_name, lengths, batch_size, split, seed, True, pack, use_cached_tasks
    )
    vocab_extra = {"mixture_or_task_name": mixture_or_task_name,
                   "mixture_or_task_module": mixture_or_task_module,
                   "task_feature_lengths": lengths}  # fmt: skip
    md.write_text_model_dir(
        model_dir,
        config,
        task.output_features["targets"].vocabulary,
        vocab_extra,
        gin.operative_config_str(),
    )
    writer = _metric_writer(os.path.join(model_dir, "train"))
    manager = md.checkpoint_manager(model_dir)
    log_hook = tl.MetricsLog(model_dir, every=log_every, writer=writer)
    checkpoints = tl.Checkpoints(manager, every=checkpoint_every, keep=keep_checkpoints)
    history = _History()
    loop = tl.TrainLoop(
        None,
        step_fn,
        batches,
        lr,
        train_steps,
        mesh,
        rules,
        [tl.NonFiniteStop(), history, log_hook, tl.Preemption(), checkpoints],
    )
    checkpoints.restore_or_init(loop, setup.abstract_with_shardings(), fresh)
    loop.train_steps = train_steps  # TRAIN_STEPS as configured now (a restart may extend it)
    try:
        status = loop.run()
    finally:
        if writer is not None:
            writer.close()
        manager.close()
    if status == "preempted":
        logging.warning("preempted at step %d: checkpoint saved; the same command resumes",
                        loop.step)  # fmt: skip
    md.write_text_model_dir(
        model_dir,
        config,
        task.output_features["targets"].vocabulary,
        vocab_extra,
        gin.operative_config_str(),
    )
    return history.records


def _register_configurables() -> None:
    configs, network = _import_models()
    gin.external_configurable(configs.get_config, module="jaxrec.models.configs")
    gin.external_configurable(configs.T5Config, module="jaxrec.models.configs")
    gin.external_configurable(optimizers.make_schedule, module="jaxrec.training.optimizers")
    gin.external_configurable(optimizers.make_optimizer, module="jaxrec.training.optimizers")
    gin.external_configurable(train_step.LossConfig, module="jaxrec.training.step")


def _resolve_gin_file(name: str, search_paths: Sequence[str]) -> str:
    """A gin file as given, else found under a search path (the repo's gin/ last)."""
    if os.path.exists(name):
        return name
    for root in search_paths:
        candidate = os.path.join(root, name)
        if os.path.exists(candidate):
            return candidate
    raise FileNotFoundError(f"gin file {name!r} not found (searched {list(search_paths)})")


def _first_line(e: BaseException) -> str:
    """gin appends "In call to configurable ..." lines to errors raised inside configurables."""
    return (str(e).splitlines() or [type(e).__name__])[0]


def main(argv: Sequence[str] | None = None) -> int:
    """Parses flags and gin, then trains. Returns a process exit code.

    User errors (bad flags, gin typos, missing files, unknown tasks, bad data) are one line on
    stderr and exit code 2; `--debug` shows the traceback instead.
    """
    from jaxrec.cli.gin_checks import check_overrides, explain_gin_error
    from jaxrec.data.dataset import DataError

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    quiet.configure_logging("--verbose" in argv)
    if FLAGS.is_parsed():  # main() called again in one process (tests)
        logging.disable(logging.INFO)  # absl logs that it unparses
        FLAGS.unparse_flags()
        logging.disable(logging.NOTSET)
    try:
        FLAGS(["jaxrec.train"] + rewrite_gin_args(argv))
    except flags.Error as e:
        print(f"jaxrec.train: error: {e}", file=sys.stderr)
        return 2
    quiet.set_verbosity(FLAGS.verbose)
    logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every file it writes
    gin.clear_config()
    search_paths = [*FLAGS.gin_search_paths, _REPO_GIN_DIR]
    for path in search_paths:
        gin.add_config_file_search_path(path)
    try:
        gin_files = [_resolve_gin_file(f, search_paths) for f in FLAGS.gin_file]
        try:
            with quiet.gin_include_probes_dropped():
                gin.parse_config_files_and_bindings(gin_files, FLAGS.gin_bindings)
        except (ValueError, SyntaxError, tokenize.TokenError) as e:
            if debug:
                raise
            raise DataError(explain_gin_error(e)) from None
        check_overrides(FLAGS.gin_bindings)  # before any work
        if FLAGS.seqio_additional_cache_dirs:
            import seqio

            seqio.add_global_cache_dirs(FLAGS.seqio_additional_cache_dirs)
        multihost = {"auto": None, "true": True, "false": False}[FLAGS.multihost]
        train(multihost=multihost, cpu_threads=FLAGS.cpu_threads)
    except train_step.NonFiniteLossError as e:
        print(f"jaxrec.train: error: {_first_line(e)}", file=sys.stderr)
        return 1
    except (DataError, FileNotFoundError) as e:
        if debug:
            raise
        print(f"jaxrec.train: error: {_first_line(e)}", file=sys.stderr)
        return 2
    return 0


_register_configurables()  # before any gin parsing

if __name__ == "__main__":
    sys.exit(main())

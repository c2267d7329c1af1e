"""Per-device memory of the REAL sharded train step, from XLA's analysis of the compiled step.

  python -m jaxrec.bench memory --model xl --mesh 4x4 --batch 128 --inputs 512 --targets 64

Nothing is allocated: the train state comes from `jax.eval_shape`, inputs are
`ShapeDtypeStruct`s carrying their shardings, and the step is only lowered and compiled.
On CPU the bench forces as many host devices as the mesh has (XLA_FLAGS is set before JAX is
imported), so a TPU slice's mesh can be compiled on a laptop. The "peer" is the analytic
size of the sharded train state (params + optimizer state per device): the JSON line reports
the compiled peak as a ratio of it, which shows how much activations and temporaries add.

CPU compilation is an estimate of TPU memory: buffer assignment and fusion differ by backend,
and the TPU compiler can rematerialise; treat figures within ~20% of a chip's HBM as "tight".
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

# HBM per chip (GiB) of common TPU generations, for the "fits" verdicts.
HBM_GIB = {"v3": 16, "v4": 32, "v5e": 16, "v5p": 95, "v6e": 32}


def _parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m jaxrec.bench memory", description=__doc__)
    p.add_argument("--model", default="base", help="tiny, tiger, small, base, large, xl, xxl")
    p.add_argument("--mesh", default="1x1", help="DATAxMODEL, e.g. 4x4")
    p.add_argument("--batch", type=int, default=128, help="global batch (examples)")
    p.add_argument("--inputs", type=int, default=512, help="input length (tokens)")
    p.add_argument("--targets", type=int, default=64, help="target length (tokens)")
    p.add_argument("--optimizer", default="adafactor", choices=["adafactor", "adamw"])
    p.add_argument("--dtype", default="bfloat16", help="activation dtype (params stay float32)")
    p.add_argument("--microbatches", type=int, default=1, help="gradient accumulation slices")
    p.add_argument("--fsdp", action="store_true", help="also shard `embed` over `data`")
    p.add_argument("--vocab", type=int, default=None, help="override vocab size")
    p.add_argument("--layers", type=int, default=None, help="override encoder+decoder depth")
    p.add_argument(
        "--extrapolate",
        action="store_true",
        help="compile 1- and 2-layer versions of the model and extrapolate temporaries "
        "linearly to the full depth (fast on CPU); the sharded state is exact",
    )
    p.add_argument("--quick", action="store_true", help="tiny model, mesh 2x2, small batch")
    return p.parse_args(argv)


def _force_host_devices(count: int) -> None:
    """Must run before JAX initialises its backend."""
    if "jax" in sys.modules:
        import jax

        if jax.device_count() < count:
            raise SystemExit(
                f"JAX already started with {jax.device_count()} devices; mesh needs {count}. "
                "Run the bench in a fresh process."
            )
        return
    flags = os.environ.get("XLA_FLAGS", "")
    flags = " ".join(f for f in flags.split() if "xla_force_host_platform_device_count" not in f)
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")


def _sharded_bytes(abstract_tree, shardings) -> int:
    import jax
    import numpy as np

    total = 0
    for leaf, sharding in zip(
        jax.tree.leaves(abstract_tree), jax.tree.leaves(shardings), strict=True
    ):
        shard = sharding.shard_shape(leaf.shape)
        total += int(np.prod(shard, dtype=np.int64)) * np.dtype(leaf.dtype).itemsize
    return total


def measure(
    model_name: str,
    mesh_shape: tuple[int, int],
    batch: int,
    inputs: int,
    targets: int,
    optimizer: str = "adafactor",
    dtype: str = "bfloat16",
    microbatches: int = 1,
    fsdp: bool = False,
    vocab: int | None = None,
    layers: int | None = None,
) -> dict:
    """Lowers and compiles the train step for abstract inputs; returns the memory figures."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxrec import partitioning
    from jaxrec.models import configs, network
    from jaxrec.models.adapters import EncoderDecoderModel
    from jaxrec.training import optimizers
    from jaxrec.training import step as train_step

    config = configs.get_config(model_name, vocab_size=vocab, dtype=dtype, dropout_rate=0.1)
    if layers is not None:
        config = config.replace(num_encoder_layers=layers, num_decoder_layers=layers)
    data, model_par = mesh_shape
    mesh = partitioning.create_mesh((data, model_par), devices=jax.devices()[: data * model_par])
    rules = partitioning.standard_logical_axis_rules(fsdp=fsdp)

    def make_tx(learning_rate):
        return optimizers.make_optimizer(optimizer, learning_rate)

    module = network.Transformer(config)
    setup = train_step.setup_state(module, make_tx(1e-3), mesh, rules, inputs, targets)
    step = train_step.make_train_step(
        EncoderDecoderModel(module), make_tx, setup.shardings, mesh, num_microbatches=microbatches
    )
    names = ("encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens")
    shapes = {
        n: ((batch, inputs if n.startswith("encoder") else targets), jnp.int32) for n in names
    }
    shapes["decoder_loss_weights"] = ((batch, targets), jnp.float32)
    abstract_batch = partitioning.abstract_batch(shapes, mesh)
    t0 = time.perf_counter()
    with partitioning.mesh_context(mesh, rules):
        lr = jax.ShapeDtypeStruct((), jnp.float32)
        lowered = step.lower(setup.abstract_with_shardings(), abstract_batch, lr)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    mem = compiled.memory_analysis()
    params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(setup.abstract_state.params))
    state_bytes = _sharded_bytes(setup.abstract_state, setup.shardings)
    arg = int(mem.argument_size_in_bytes)
    out = int(mem.output_size_in_bytes)
    alias = int(mem.alias_size_in_bytes)
    temp = int(mem.temp_size_in_bytes)
    peak = arg + out - alias + temp  # donated state is aliased: counted once
    gib = 1024**3
    return {
        "bench": "memory",
        "model": model_name,
        "layers": config.num_encoder_layers,
        "params": params,
        "mesh": f"{data}x{model_par}",
        "devices": data * model_par,
        "batch": batch,
        "inputs": inputs,
        "targets": targets,
        "optimizer": optimizer,
        "dtype": dtype,
        "microbatches": microbatches,
        "fsdp": fsdp,
        "state_bytes_per_device": state_bytes,
        "argument_bytes": arg,
        "output_bytes": out,
        "alias_bytes": alias,
        "temp_bytes": temp,
        "peak_bytes_per_device": peak,
        "peak_gib_per_device": round(peak / gib, 3),
        "peak_over_state_ratio": round(peak / max(state_bytes, 1), 3),
        "fits": {chip: peak < hbm * gib for chip, hbm in HBM_GIB.items()},
        "lower_s": round(t1 - t0, 2),
        "compile_s": round(t2 - t1, 2),
        "backend": jax.default_backend(),
    }


def state_bytes(model_name: str, mesh_shape: tuple[int, int], optimizer: str, fsdp: bool,
                vocab: int | None = None) -> tuple[int, int]:  # fmt: skip
    """(params, sharded train-state bytes per device) of the full model, from shapes only."""
    import jax
    import numpy as np

    from jaxrec import partitioning
    from jaxrec.models import configs, network
    from jaxrec.training import optimizers
    from jaxrec.training import step as train_step

    config = configs.get_config(model_name, vocab_size=vocab)
    data, model_par = mesh_shape
    mesh = partitioning.create_mesh(mesh_shape, devices=jax.devices()[: data * model_par])
    rules = partitioning.standard_logical_axis_rules(fsdp=fsdp)
    tx = optimizers.make_optimizer(optimizer, 1e-3)
    setup = train_step.setup_state(network.Transformer(config), tx, mesh, rules, 8, 8)
    params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(setup.abstract_state.params))
    return params, _sharded_bytes(setup.abstract_state, setup.shardings)


def extrapolate(model_name: str, mesh_shape: tuple[int, int], **kwargs) -> dict:
    """Full-depth estimate from compiled 1- and 2-layer versions of the same model.

    Temporaries (activations kept for the backward pass, gradients) grow linearly with depth,
    so temp(L) = temp(1) + (L - 1) * (temp(2) - temp(1)); the train state is computed exactly.
    """
    from jaxrec.models import configs

    one = measure(model_name, mesh_shape, layers=1, **kwargs)
    two = measure(model_name, mesh_shape, layers=2, **kwargs)
    depth = configs.get_config(model_name).num_encoder_layers
    temp = one["temp_bytes"] + (depth - 1) * (two["temp_bytes"] - one["temp_bytes"])
    params, state = state_bytes(
        model_name, mesh_shape, kwargs.get("optimizer", "adafactor"), kwargs.get("fsdp", False),
        kwargs.get("vocab"),
    )  # fmt: skip
    batch_bytes = one["argument_bytes"] - one["state_bytes_per_device"]
    peak = state + batch_bytes + temp
    gib = 1024**3
    out = {k: v for k, v in one.items() if k not in ("lower_s", "compile_s")}
    out.update(
        layers=depth,
        params=params,
        method="extrapolated from 1- and 2-layer compiles",
        state_bytes_per_device=state,
        temp_bytes=temp,
        argument_bytes=state + batch_bytes,
        output_bytes=state,
        alias_bytes=state,
        peak_bytes_per_device=peak,
        peak_gib_per_device=round(peak / gib, 3),
        peak_over_state_ratio=round(peak / max(state, 1), 3),
        fits={chip: peak < hbm * gib for chip, hbm in HBM_GIB.items()},
        compile_s=round(one["compile_s"] + two["compile_s"], 2),
    )
    return out


def main(argv: list[str]) -> int:
    args = _parse_args(argv)
    if args.quick:
        args.model, args.mesh, args.batch, args.inputs, args.targets = "tiny", "2x2", 8, 64, 8
    dims = [int(d) for d in args.mesh.lower().replace(",", "x").split("x")]
    if len(dims) != 2 or min(dims) < 1:
        print(f"--mesh {args.mesh!r}: expected DATAxMODEL", file=sys.stderr)
        return 2
    if args.batch % (dims[0] * args.microbatches):
        print(f"--batch {args.batch} must divide by data×microbatches", file=sys.stderr)
        return 2
    _force_host_devices(math.prod(dims))
    kwargs = dict(
        batch=args.batch,
        inputs=args.inputs,
        targets=args.targets,
        optimizer=args.optimizer,
        dtype=args.dtype,
        microbatches=args.microbatches,
        fsdp=args.fsdp,
        vocab=args.vocab,
    )
    if args.extrapolate:
        result = extrapolate(args.model, (dims[0], dims[1]), **kwargs)
    else:
        result = measure(args.model, (dims[0], dims[1]), layers=args.layers, **kwargs)
        result["method"] = "compiled"
    print(
        f"{result['model']} ({result['params'] / 1e9:.2f}B params) mesh {result['mesh']} "
        f"batch {result['batch']} {result['inputs']}/{result['targets']}: "
        f"{result['peak_gib_per_device']:.2f} GiB/device peak "
        f"(state {result['state_bytes_per_device'] / 1024**3:.2f} GiB), "
        f"compile {result['compile_s']}s",
        file=sys.stderr,
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

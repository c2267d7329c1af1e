"""Device mesh, logical→mesh axis rules and sharded state/batch placement, in one place.

Every parameter and activation of the network carries *logical* axis names (t5x's vocabulary:
`batch`, `length`, `vocab`, `embed`, `mlp`, `heads`, `kv`, `joined_kv`, `relpos_buckets`).
This module is the only place that maps them onto the physical mesh axes `data` and `model`;
the network, the trainer and the benchmarks all ask it.

Scaling recipe (same code from one CPU to a pod):
  mesh = create_mesh("auto")                              # or (data, model), "4x2", ...
  shardings = logical_shardings(jax.eval_shape(init), mesh, rules)  # no allocation
  state = jax.jit(init, out_shardings=shardings)()        # each shard made on its device
  (`jaxrec.training.step.setup_state` does this for params + optimizer state)
  batch = shard_batch(host_local_batch, mesh)             # host slice → global array on `data`
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "model")
LogicalRules = tuple[tuple[str, str | tuple[str, ...] | None], ...]

# Env variables that mean "this process is one of several hosts" (besides an explicit flag).
_MULTIHOST_ENV = ("JAXREC_MULTIHOST", "JAX_COORDINATOR_ADDRESS")


def standard_logical_axis_rules(fsdp: bool = False) -> LogicalRules:
    """ALL logical→mesh axis rules of jaxrec (t5x's `standard_logical_axis_rules` in spirit).

    Activations are split over `data` along the batch; parameters are split over `model` along
    their wide dimensions (vocab, mlp, heads); everything else is replicated.

    Args:
      fsdp: also shard the `embed` dimension of parameters over `data` (ZeRO-3-like: params
        and optimizer state are split over all devices and gathered per layer). Only parameters
        carry `embed`; activations use `length`/`batch`, so activations are unaffected.

    Returns:
      Rules for `nn.logical_axis_rules` / `nn.logical_to_mesh_sharding`. A logical name maps to
      at most one mesh axis; names not listed are replicated.
    """
    return (
        ("batch", "data"),
        ("vocab", "model"),
        ("mlp", "model"),
        ("heads", "model"),
        ("joined_kv", "model"),
        ("kv", None),
        ("embed", "data" if fsdp else None),
        ("length", None),
        ("relpos_buckets", None),
        ("abspos_buckets", None),
        ("layers", None),
        ("stack", None),
        ("mlp_activations", None),
    )


def _dims(shape: str | Sequence[int]) -> list[int] | None:
    """The (data, model) dims as written (-1 kept), or None for "auto"."""
    if isinstance(shape, str):
        text = shape.strip().lower()
        if text == "auto":
            return None
        parts = text.replace("x", ",").split(",")
        try:
            dims = [int(p) for p in parts if p.strip()]
        except ValueError as e:
            raise ValueError(f"mesh shape {shape!r}: expected 'auto' or 'DATAxMODEL'") from e
    else:
        dims = [int(d) for d in shape]
    if len(dims) != 2:
        raise ValueError(f"mesh shape {shape!r}: expected two dims (data, model)")
    if dims.count(-1) > 1:
        raise ValueError(f"mesh shape {shape!r}: at most one dim may be -1")
    return dims


def parse_mesh_shape(shape: str | Sequence[int], num_devices: int) -> tuple[int, int]:
    """`"auto"` → (all devices, 1); `"2x4"`, `"2,4"`, `(2, 4)` → (2, 4); `-1` fills the rest."""
    dims = _dims(shape)
    if dims is None:
        return (num_devices, 1)
    if -1 in dims:
        known = math.prod(d for d in dims if d != -1)
        dims[dims.index(-1)] = num_devices // known
    if math.prod(dims) != num_devices:
        raise ValueError(
            f"mesh shape {tuple(dims)} needs {math.prod(dims)} devices, {num_devices} available"
        )
    return dims[0], dims[1]


def create_mesh(
    shape: str | Sequence[int] = "auto", devices: Sequence[jax.Device] | None = None
) -> Mesh:
    """A 2-D `Mesh` over (`data`, `model`).

    Args:
      shape: "auto" (pure data parallelism), "DATAxMODEL", or a (data, model) pair; -1 in one
        place takes the remaining devices.
      devices: defaults to all global devices (every host's). `mesh_utils` orders them so the
        `model` axis runs over the fastest interconnect on TPU.
    """
    devices = list(jax.devices() if devices is None else devices)
    data, model = parse_mesh_shape(shape, len(devices))
    try:
        from jax.experimental import mesh_utils

        grid = mesh_utils.create_device_mesh((data, model), devices=devices)
    except Exception:  # CPU / uneven topologies: a plain row-major grid is fine
        grid = np.asarray(devices, dtype=object).reshape(data, model)
    return Mesh(grid, MESH_AXES)


def leading_devices(shape: str | Sequence[int]) -> list[jax.Device]:
    """The devices a mesh of `shape` takes when it need not take them all: the first
    data × model global devices of an explicit shape ("1x1" of eight devices: the first one),
    every device for "auto" or a shape with -1. `create_mesh(shape, leading_devices(shape))`."""
    devices = jax.devices()
    dims = _dims(shape)
    if dims is None or -1 in dims:
        return devices
    return devices[: math.prod(dims)]


def maybe_initialize_distributed(multihost: bool | None = None) -> bool:
    """Calls `jax.distributed.initialize()` when launched as one of several hosts.

    Multi-host is assumed when `multihost` is True, or (when it is None) when one of the
    environment variables JAXREC_MULTIHOST=1 or JAX_COORDINATOR_ADDRESS is set. `initialize()`
    finds the coordinator, the number of processes and this process's index itself on Cloud
    TPU pods and under SLURM, Open MPI (`mpirun`) and Kubernetes; JAX_COORDINATOR_ADDRESS
    (host:port) overrides the coordinator.

    Returns:
      Whether the distributed runtime was initialised by this call.
    """
    if multihost is None:
        multihost = any(os.environ.get(k, "") not in ("", "0") for k in _MULTIHOST_ENV)
    if not multihost:
        logging.info("single-host run: %d local device(s)", jax.local_device_count())
        return False
    jax.distributed.initialize()
    logging.info(
        "multi-host run: process %d of %d, %d local / %d global devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )
    return True


def logical_shardings(boxed_tree: Any, mesh: Mesh, rules: LogicalRules) -> Any:
    """NamedShardings for a pytree of `nn.Partitioned`/`LogicallyPartitioned` boxes.

    Unannotated leaves are replicated. The result has the tree structure of `nn.unbox(tree)`.
    """
    specs = nn.get_partition_spec(boxed_tree)
    shardings = nn.logical_to_mesh_sharding(specs, mesh, rules)
    # Boxes are pytree nodes; after unboxing, the sharding sits where the array sits.
    return jax.tree.map(
        lambda s: s if isinstance(s, NamedSharding) else NamedSharding(mesh, PartitionSpec()),
        shardings,
        is_leaf=lambda x: isinstance(x, (NamedSharding, PartitionSpec)) or x is None,
    )


def _drop_axis(spec: PartitionSpec, ndim: int, axis: int) -> PartitionSpec:
    entries = list(spec) + [None] * (ndim - len(spec))
    del entries[axis]
    return PartitionSpec(*entries)


def derived_shardings(abstract_tree: Any, param_shapes: Any, param_shardings: Any, mesh: Mesh):
    """Shardings for a tree whose leaves mirror parameters (optimizer state, gradients).

    A leaf is matched to the parameter whose key path is a suffix of the leaf's path (optax
    nests parameter trees inside its states). Same shape → the parameter's sharding; one
    dimension fewer (Adafactor's factored row/column moments) → the parameter's spec with that
    dimension removed; anything else (counts, unfactored stubs) is replicated.
    """
    replicated = NamedSharding(mesh, PartitionSpec())
    table = {}
    for (path, shape), sharding in zip(
        jax.tree_util.tree_leaves_with_path(param_shapes),
        jax.tree.leaves(param_shardings, is_leaf=lambda x: isinstance(x, NamedSharding)),
        strict=True,
    ):
        table[tuple(path)] = (tuple(shape.shape), sharding)

    def pick(path, leaf) -> NamedSharding:
        shape = tuple(getattr(leaf, "shape", ()))
        for start in range(len(path)):
            hit = table.get(tuple(path[start:]))
            if hit is None:
                continue
            pshape, psharding = hit
            if shape == pshape:
                return psharding
            if len(shape) == len(pshape) - 1:
                for axis in range(len(pshape)):
                    if pshape[:axis] + pshape[axis + 1 :] == shape:
                        spec = _drop_axis(psharding.spec, len(pshape), axis)
                        return NamedSharding(mesh, spec)
            return replicated
        return replicated

    return jax.tree_util.tree_map_with_path(pick, abstract_tree)


@contextlib.contextmanager
def mesh_context(mesh: Mesh, rules: LogicalRules) -> Iterator[None]:
    """Mesh + logical axis rules in scope, so `nn.with_logical_constraint` resolves when tracing."""
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        yield


def data_sharding(mesh: Mesh) -> NamedSharding:
    """Batch arrays are split along their leading (batch) dimension over `data`."""
    return NamedSharding(mesh, PartitionSpec("data"))


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Host-local batch (this host's rows) → global arrays sharded over `data`.

    Each host passes the rows it read (global batch / process count); on one host this is the
    whole batch. The leading dimension of every host-local array must be divisible by the
    number of `data` shards this host feeds.
    """
    sharding = data_sharding(mesh)
    out = {}
    for name, value in batch.items():
        value = np.asarray(value)
        global_shape = (value.shape[0] * jax.process_count(),) + value.shape[1:]
        out[name] = jax.make_array_from_process_local_data(sharding, value, global_shape)
    return out


def abstract_batch(
    shapes: dict[str, tuple[tuple[int, ...], Any]], mesh: Mesh
) -> dict[str, jax.ShapeDtypeStruct]:
    """`{name: (shape, dtype)}` → ShapeDtypeStructs carrying the batch sharding (for lowering)."""
    sharding = data_sharding(mesh)
    return {
        k: jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)
        for k, (shape, dtype) in shapes.items()
    }

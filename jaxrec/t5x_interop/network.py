"""The network as t5x's trainer wants it: plain parameters plus a `params_axes` collection.

jaxrec's `Transformer.init` returns parameters boxed with their logical axis names
(`nn.with_logical_partitioning`). t5x predates those boxes: its train state, Adafactor factoring
rules and `PjitPartitioner` read the names from a separate `params_axes` collection, one
`AxisMetadata` per parameter under `{name}_axes` (what `flax.linen.partitioning.param_with_axes`
emits), and expect unboxed arrays under `params`. `T5XTransformer` is the same network with that
`init`; `apply`, `encode` and `decode` are unchanged. Bind it as `models.EncoderDecoderModel.module`
in t5x gin files; jaxrec's own trainer keeps using `Transformer`.

    variables = T5XTransformer(cfg).init(rng, enc, dec, dec)
    variables["params"]       # {'token_embedder': {'embedding': Array[vocab, embed]}, ...}
    variables["params_axes"]  # {'token_embedder': {'embedding_axes': AxisMetadata(('vocab',
                              #                                                     'embed'))}}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax
import flax.linen as nn
import jax.numpy as jnp
from flax.linen import partitioning as flax_partitioning

from jaxrec.models.network import Transformer

PyTree = Any


def split_params_axes(variables: Mapping[str, Any]) -> dict[str, Any]:
    """`{'params': boxed, ...}` -> `{'params': unboxed, 'params_axes': AxisMetadata tree, ...}`.

    Every parameter must carry logical axis names (t5x validates that none is missing).
    """
    out = dict(flax.core.unfreeze(variables))
    boxed = out["params"]
    flat = flax.traverse_util.flatten_dict(
        boxed, is_leaf=lambda _, x: isinstance(x, nn.meta.AxisMetadata)
    )
    axes = {}
    for path, leaf in flat.items():
        if not isinstance(leaf, nn.LogicallyPartitioned):
            raise ValueError(f"parameter {'/'.join(path)} has no logical axis names")
        names = tuple(leaf.names)
        axes[(*path[:-1], f"{path[-1]}_axes")] = flax_partitioning.AxisMetadata(names=names)
    out["params"] = nn.meta.unbox(boxed)
    out["params_axes"] = flax.traverse_util.unflatten_dict(axes)
    return out


class T5XTransformer(Transformer):
    """`Transformer` whose `init` emits t5x's `params_axes` collection (see module docstring)."""

    def init(self, rngs, *args, **kwargs):
        """`nn.Module.init`, returning `params` unboxed and `params_axes`.

        t5x may initialise from float placeholders (`get_initial_variables` without
        `input_types`, as `t5x.eval` does): token, position and segment arrays are cast to int32.
        """
        args = tuple(_as_int(a) for a in args)
        kwargs = {k: _as_int(v) for k, v in kwargs.items()}
        return split_params_axes(super().init(rngs, *args, **kwargs))


def _as_int(x: Any) -> Any:
    if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating):
        return x.astype(jnp.int32)
    return x

"""The Partitioner: device mesh, logical-axis rules, shardings, and global batches.

One mesh with axes ('data', 'model') (both `AxisType.Auto`): batches are split over 'data',
parameters with a logical axis mapped to 'model' are split over 'model' (tensor parallelism), the
rest is replicated. One rules table maps the logical axis names that models put on their params
(`nn.with_logical_partitioning`) to mesh axes.

Params are initialised abstract-first: `jax.eval_shape` gives shapes and logical axes, the rules
give shardings, then `jax.jit(init, out_shardings=...)` writes every shard directly on its device,
so an unsharded copy of the parameters never exists.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec

from mt3x.trainer.errors import ShardingError

PyTree = Any
LogicalAxisRules = Sequence[tuple[str, str | None]]

DATA_AXIS = "data"
MODEL_AXIS = "model"

STANDARD_LOGICAL_AXIS_RULES: tuple[tuple[str, str | None], ...] = (
    # t5x's standard rules (data parallel over 'data', 1-D tensor parallel over 'model').
    ("batch", DATA_AXIS),
    ("vocab", MODEL_AXIS),
    ("mlp", MODEL_AXIS),
    ("heads", MODEL_AXIS),
    ("joined_kv", MODEL_AXIS),
    ("embed", None),
    ("kv", None),
    ("length", None),
    ("relpos_buckets", None),
    ("abspos_buckets", None),
    ("layers", None),
    ("stack", None),
    ("mlp_activations", None),
    # Names the audio models use for feature, channel and time axes: replicated.
    ("mel", None),
    ("freq", None),
    ("time", None),
    ("channels", None),
    ("context", None),
)
"""The one logical-axis rules table. Extend it (never fork it) for a model with new names."""


def _logical_names(tree: PyTree) -> set[str]:
    """All logical axis names used by the boxed leaves of `tree`."""
    names: set[str] = set()
    for leaf in jax.tree.leaves(tree, is_leaf=lambda x: isinstance(x, nn.Partitioned)):
        if isinstance(leaf, nn.Partitioned):
            names.update(n for n in leaf.names if isinstance(n, str))
    return names


def _key_str(key: Any) -> str:
    """A readable form of one key of a jax key path: 'encoder' for DictKey('encoder')."""
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def path_str(path: Sequence[Any]) -> str:
    """'params/encoder/layers_0/kernel' for a jax key path."""
    return "/".join(_key_str(k) for k in path)


class Partitioner:
    """Holds the ('data', 'model') mesh and the logical-axis rules; computes shardings.

    Args:
      num_partitions: size of the 'model' axis (tensor-parallel ways); the 'data' axis takes the
        remaining devices. Must divide the device count.
      logical_axis_rules: (logical name, mesh axis or None) pairs; default the standard table.
      devices: the devices to use (default all of `jax.devices()`, across every process).
    """

    def __init__(
        self,
        *,
        num_partitions: int = 1,
        logical_axis_rules: LogicalAxisRules = STANDARD_LOGICAL_AXIS_RULES,
        devices: Sequence[jax.Device] | None = None,
    ) -> None:
        devices = list(jax.devices() if devices is None else devices)
        if num_partitions < 1 or len(devices) % num_partitions:
            raise ShardingError(
                f"num_partitions={num_partitions} must be >= 1 and divide the device count "
                f"{len(devices)} ({devices[0].platform}); choose a divisor of {len(devices)}"
            )
        self.num_partitions = num_partitions
        self.logical_axis_rules = tuple((str(a), b) for a, b in logical_axis_rules)
        self.mesh = jax.make_mesh(
            (len(devices) // num_partitions, num_partitions),
            (DATA_AXIS, MODEL_AXIS),
            axis_types=(AxisType.Auto, AxisType.Auto),
            devices=devices,
        )

    # ---- mesh facts -----------------------------------------------------------------------
    @property
    def data_size(self) -> int:
        """Number of data-parallel shards (the 'data' axis size)."""
        return int(self.mesh.shape[DATA_AXIS])

    @property
    def replicated(self) -> NamedSharding:
        """A sharding that keeps a full copy on every device of the mesh."""
        return NamedSharding(self.mesh, PartitionSpec())

    @property
    def batch_sharding(self) -> NamedSharding:
        """Splits the leading (batch) axis over 'data'."""
        return NamedSharding(self.mesh, PartitionSpec(DATA_AXIS))

    @contextlib.contextmanager
    def activate(self) -> Iterator[None]:
        """Context in which models are traced: the mesh and the rules for logical constraints."""
        with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.logical_axis_rules):
            yield

    # ---- parameters -----------------------------------------------------------------------
    def check_logical_names(self, boxed_tree: PyTree) -> None:
        """Raises ShardingError when a param uses a logical axis name the rules do not know."""
        known = {name for name, _ in self.logical_axis_rules}
        unknown = sorted(_logical_names(boxed_tree) - known)
        if unknown:
            raise ShardingError(
                f"the model uses logical axis names {unknown} that are not in the logical-axis "
                f"rules (known: {sorted(known)}); add ('name', 'model' or None) pairs to "
                "Partitioner(logical_axis_rules=STANDARD_LOGICAL_AXIS_RULES + (...))"
            )

    def shardings_for(self, boxed_tree: PyTree) -> PyTree:
        """NamedShardings (tree shaped like the unboxed params) for a possibly boxed tree."""
        self.check_logical_names(boxed_tree)
        specs = nn.get_partition_spec(boxed_tree)
        return nn.logical_to_mesh_sharding(specs, self.mesh, self.logical_axis_rules)

    def init_params(
        self, init_fn: Callable[[jax.Array, Mapping[str, jax.Array]], PyTree], rng: jax.Array,
        batch: Mapping[str, np.ndarray | jax.ShapeDtypeStruct],
    ) -> tuple[PyTree, PyTree]:
        """Initialises params sharded over the mesh, never materialising an unsharded copy.

        Args:
          init_fn: the Model's `init(rng, batch) -> boxed params`.
          rng: a PRNG key.
          batch: a batch (or shape structs) of the structure the model consumes; values unused.

        Returns:
          (unboxed params as sharded global arrays, their NamedShardings).
        """
        shapes = {k: jax.ShapeDtypeStruct(np.shape(v), v.dtype) for k, v in batch.items()}

        def init_unboxed(key: jax.Array) -> PyTree:
            zeros = {k: jnp.zeros(s.shape, s.dtype) for k, s in shapes.items()}
            return nn.unbox(init_fn(key, zeros))

        def init_boxed(key: jax.Array) -> PyTree:
            zeros = {k: jnp.zeros(s.shape, s.dtype) for k, s in shapes.items()}
            return init_fn(key, zeros)

        with self.activate():
            abstract = jax.eval_shape(init_boxed, rng)
            shardings = self.shardings_for(abstract)
            params = jax.jit(init_unboxed, out_shardings=shardings)(rng)
        return params, shardings

    def abstract_params(
        self, init_fn: Callable[[jax.Array, Mapping[str, jax.Array]], PyTree],
        batch: Mapping[str, np.ndarray | jax.ShapeDtypeStruct],
    ) -> PyTree:
        """ShapeDtypeStructs (with shardings) of the unboxed params; nothing is computed."""
        shapes = {k: jax.ShapeDtypeStruct(np.shape(v), v.dtype) for k, v in batch.items()}
        with self.activate():
            abstract = jax.eval_shape(init_fn, jax.random.key(0), shapes)
        shardings = self.shardings_for(abstract)
        return jax.tree.map(
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
            nn.unbox(abstract), shardings)

    def opt_state_shardings(self, abstract_opt_state: PyTree, param_shardings: PyTree,
                            abstract_params: PyTree) -> PyTree:
        """Shardings for optimizer state: each leaf follows the param it belongs to.

        A state leaf belongs to a param when its tree path ends with the param's path (optax
        states mirror the param tree). Same shape: the param's sharding. One axis fewer (a
        factored Adafactor row/column statistic): the param's spec with that axis dropped.
        Anything else (counts, scalars) is replicated.
        """
        by_path: dict[tuple[str, ...], tuple[tuple[int, ...], PartitionSpec]] = {}
        for (path, shard), leaf in zip(
                jax.tree_util.tree_flatten_with_path(param_shardings)[0],
                jax.tree.leaves(abstract_params)):
            by_path[tuple(_key_str(k) for k in path)] = (tuple(leaf.shape), shard.spec)
        longest = max((len(p) for p in by_path), default=0)

        def sharding_of(path: Sequence[Any], leaf: Any) -> NamedSharding:
            keys = tuple(_key_str(k) for k in path)
            shape = tuple(np.shape(leaf))
            for n in range(min(longest, len(keys)), 0, -1):
                match = by_path.get(keys[-n:])
                if match is None:
                    continue
                param_shape, spec = match
                full = tuple(spec) + (None,) * (len(param_shape) - len(tuple(spec)))
                if shape == param_shape:
                    return NamedSharding(self.mesh, PartitionSpec(*full))
                if len(shape) == len(param_shape) - 1:
                    for axis in range(len(param_shape) - 1, -1, -1):
                        if param_shape[:axis] + param_shape[axis + 1:] == shape:
                            return NamedSharding(
                                self.mesh, PartitionSpec(*(full[:axis] + full[axis + 1:])))
                break
            return self.replicated

        return jax.tree_util.tree_map_with_path(sharding_of, abstract_opt_state)

    # ---- batches --------------------------------------------------------------------------
    def _local_data_shards(self) -> int:
        """How many distinct 'data' indices this process's devices hold."""
        me = jax.process_index()
        return sum(
            any(d.process_index == me for d in np.ravel(row)) for row in self.mesh.devices)

    def check_batch_size(self, local_batch_size: int) -> None:
        """Raises ShardingError unless the per-host batch splits evenly over the data shards."""
        global_batch = local_batch_size * jax.process_count()
        local_shards = max(self._local_data_shards(), 1)
        if global_batch % self.data_size or local_batch_size % local_shards:
            raise ShardingError(
                f"batch size {global_batch} ({local_batch_size} per host x "
                f"{jax.process_count()} hosts) does not divide over {self.data_size} data-parallel "
                f"shards ({self.mesh.devices.size} devices / num_partitions="
                f"{self.num_partitions}); use a global batch size that is a multiple of "
                f"{self.data_size} (per host a multiple of {local_shards}), or change "
                "num_partitions"
            )

    def make_global_batch(self, local_batch: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
        """Assembles per-host numpy batches into global arrays sharded over 'data'.

        Args:
          local_batch: this host's share; every array's leading axis is the per-host batch.

        Returns:
          dict of global jax.Arrays with leading axis per-host batch x process count.
        """
        sizes = {k: np.shape(v)[0] if np.ndim(v) else None for k, v in local_batch.items()}
        if not sizes or None in sizes.values() or len(set(sizes.values())) != 1:
            raise ShardingError(
                f"a batch must be a non-empty dict of arrays sharing one leading batch axis; "
                f"got leading sizes {sizes}")
        self.check_batch_size(next(iter(sizes.values())))
        sharding = self.batch_sharding
        return {
            k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
            for k, v in local_batch.items()
        }

"""TrainState: everything on device that a train step reads and writes.

Created sharded over the Partitioner's mesh (abstract shapes first, then a jitted init with
`out_shardings`), so it can be donated to the jitted step and saved/restored by Orbax as is.
"""

from __future__ import annotations

from typing import Any, Mapping

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mt3x.trainer.model_api import Model
from mt3x.trainer.partitioning import Partitioner

PyTree = Any


@flax.struct.dataclass
class TrainState:
    """Fields:

    step: int32[] — train steps taken (batches consumed), including skipped non-finite steps.
    params: unboxed model params (sharded per the logical-axis rules).
    opt_state: optax state (sharded like the params it belongs to).
    rng: uint32[2] — raw key data of the base PRNG key; step k uses fold_in(key, k).
    nonfinite_steps: int32[] — steps whose update was skipped because of a NaN/Inf.
    """

    step: jax.Array
    params: PyTree
    opt_state: PyTree
    rng: jax.Array
    nonfinite_steps: jax.Array

    def step_rng(self) -> jax.Array:
        """The PRNG key for this step: fold_in(base key, step)."""
        return jax.random.fold_in(jax.random.wrap_key_data(self.rng), self.step)


def _shapes_of(batch: Mapping[str, Any]) -> dict[str, jax.ShapeDtypeStruct]:
    return {k: jax.ShapeDtypeStruct(np.shape(v), np.asarray(v).dtype if not hasattr(v, "dtype")
                                    else v.dtype) for k, v in batch.items()}


def abstract_train_state(*, model: Model, optimizer: optax.GradientTransformation,
                         partitioner: Partitioner, batch: Mapping[str, Any]) -> TrainState:
    """A TrainState of ShapeDtypeStructs carrying the target shardings; nothing is computed.

    Used to create the state, to jit the step with explicit shardings, and as the restore
    target of a checkpoint (which may have been written on a different mesh).
    """
    params = partitioner.abstract_params(model.init, _shapes_of(batch))
    param_shardings = jax.tree.map(lambda a: a.sharding, params)
    opt_state = jax.eval_shape(optimizer.init, params)
    opt_shardings = partitioner.opt_state_shardings(opt_state, param_shardings, params)
    opt_state = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), opt_state, opt_shardings)
    rep = partitioner.replicated
    return TrainState(
        step=jax.ShapeDtypeStruct((), jnp.int32, sharding=rep),
        params=params,
        opt_state=opt_state,
        rng=jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=rep),
        nonfinite_steps=jax.ShapeDtypeStruct((), jnp.int32, sharding=rep),
    )


def shardings_of(abstract: PyTree) -> PyTree:
    """The tree of shardings of an abstract (ShapeDtypeStruct) tree."""
    return jax.tree.map(lambda a: a.sharding, abstract)


def create_train_state(*, model: Model, optimizer: optax.GradientTransformation,
                       partitioner: Partitioner, batch: Mapping[str, Any], seed: int,
                       params: PyTree | None = None) -> TrainState:
    """A fresh, sharded TrainState at step 0.

    Args:
      model, optimizer, partitioner: as for `train`.
      batch: a per-host batch (or shapes) of the structure the model consumes; values unused.
      seed: seeds both the param init (key split 0) and the training key (split 1).
      params: start from these params (e.g. restored for fine-tuning) instead of `model.init`;
        they are placed on the target shardings.
    """
    abstract = abstract_train_state(model=model, optimizer=optimizer, partitioner=partitioner,
                                    batch=batch)
    shardings = shardings_of(abstract)
    init_key, train_key = jax.random.split(jax.random.key(seed))
    if params is None:
        params, _ = partitioner.init_params(model.init, init_key, _shapes_of(batch))
    else:
        params = jax.device_put(params, shardings.params)
    opt_state = jax.jit(optimizer.init, out_shardings=shardings.opt_state)(params)
    rep = partitioner.replicated
    train_key_data = np.asarray(jax.random.key_data(train_key))
    make_scalars = jax.jit(
        lambda: (jnp.zeros((), jnp.int32), jnp.asarray(train_key_data, jnp.uint32),
                 jnp.zeros((), jnp.int32)),
        out_shardings=(rep, rep, rep))
    step, rng, nonfinite = make_scalars()
    return TrainState(step=step, params=params, opt_state=opt_state, rng=rng,
                      nonfinite_steps=nonfinite)

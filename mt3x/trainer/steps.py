"""The jitted train and eval steps, and the eval loop.

Train step: loss and gradients of `model.loss`, the optimizer update, metrics; the step's PRNG
key is fold_in(base key, step), so a resumed run draws the same randomness. A step whose loss or
gradient norm is not finite leaves params and optimizer state unchanged and counts itself in
`TrainState.nonfinite_steps` (the host then skips or stops, see `NONFINITE_POLICIES`).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mt3x.trainer.errors import TrainerError
from mt3x.trainer.model_api import Model
from mt3x.trainer.partitioning import Partitioner
from mt3x.trainer.train_state import TrainState, shardings_of

NONFINITE_POLICIES = ("skip", "raise")
"""'skip': drop the update of a NaN/Inf step and go on (counted in the metrics);
'raise': drop it and stop with NonFiniteLossError."""

Metrics = dict[str, jax.Array]
TrainStep = Callable[[TrainState, Mapping[str, jax.Array]], tuple[TrainState, Metrics]]


def train_step_fn(model: Model, optimizer: optax.GradientTransformation,
                  learning_rate_fn: Callable[[jax.Array], jax.Array] | None = None) -> TrainStep:
    """The pure (un-jitted) train step: (state, global batch) -> (new state, scalar metrics).

    Metrics: 'loss', the model's metrics, 'grad_norm' (global L2), 'nonfinite' (1. when this
    step's update was skipped), 'learning_rate' when `learning_rate_fn` is given.
    """

    def step(state: TrainState, batch: Mapping[str, jax.Array]) -> tuple[TrainState, Metrics]:
        rng = state.step_rng()

        def loss_fn(params: Any) -> tuple[jax.Array, Metrics]:
            return model.loss(params, batch, rng)

        (loss, model_metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        updates, new_opt_state = optimizer.update(grads, state.opt_state, state.params)
        new_params = optax.apply_updates(state.params, updates)
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
        new_state = state.replace(
            step=state.step + 1,
            params=keep(new_params, state.params),
            opt_state=keep(new_opt_state, state.opt_state),
            nonfinite_steps=state.nonfinite_steps + (~finite).astype(jnp.int32),
        )
        metrics = {k: jnp.asarray(v, jnp.float32) for k, v in model_metrics.items()}
        metrics.update(loss=jnp.asarray(loss, jnp.float32), grad_norm=grad_norm,
                       nonfinite=(~finite).astype(jnp.float32))
        if learning_rate_fn is not None:
            metrics["learning_rate"] = jnp.asarray(learning_rate_fn(state.step), jnp.float32)
        return new_state, metrics

    return step


def jit_train_step(step: TrainStep, partitioner: Partitioner,
                   abstract_state: TrainState) -> TrainStep:
    """Jits the step with explicit shardings; the state is donated (updated in place).

    Call the result under `partitioner.activate()` (the loop does).
    """
    state_shardings = shardings_of(abstract_state)
    return jax.jit(step, in_shardings=(state_shardings, partitioner.batch_sharding),
                   out_shardings=(state_shardings, partitioner.replicated), donate_argnums=(0,))


def jit_eval_step(model: Model, partitioner: Partitioner, param_shardings: Any
                  ) -> Callable[[Any, Mapping[str, jax.Array]], Metrics]:
    """(params, global batch) -> {'loss', model metrics}; `model.loss` gets rng=None, which
    means deterministic (no dropout)."""

    def step(params: Any, batch: Mapping[str, jax.Array]) -> Metrics:
        loss, metrics = model.loss(params, batch, None)
        out = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
        out["loss"] = jnp.asarray(loss, jnp.float32)
        return out

    return jax.jit(step, in_shardings=(param_shardings, partitioner.batch_sharding),
                   out_shardings=partitioner.replicated)


def iterate_eval_batches(eval_data: Any) -> Iterable[Mapping[str, np.ndarray]]:
    """A fresh pass over the eval data: a zero-argument callable is called, anything else
    (a list, a dataset object) is iterated anew."""
    if callable(eval_data) and not hasattr(eval_data, "__iter__"):
        return eval_data()
    return eval_data


def evaluate_loss(*, eval_step: Callable[[Any, Mapping[str, jax.Array]], Metrics], params: Any,
                  eval_data: Any, partitioner: Partitioner,
                  max_batches: int | None = None) -> dict[str, float]:
    """Mean of the eval step's metrics over the eval batches (each batch weighs the same).

    Args:
      eval_step: from `jit_eval_step`.
      params: current params.
      eval_data: a re-iterable or a zero-argument callable returning an iterable of per-host
        batch dicts (every batch must divide over the data shards; pad, don't drop, examples).
      partitioner: assembles global batches.
      max_batches: stop after this many batches (None: all).

    Returns:
      {'loss': float, model metric names: float, 'num_batches': float}.

    Raises:
      TrainerError: the eval data yielded no batch (e.g. a one-shot iterator already used).
    """
    sums: dict[str, jax.Array] = {}
    count = 0
    with partitioner.activate():
        for local_batch in iterate_eval_batches(eval_data):
            if max_batches is not None and count >= max_batches:
                break
            metrics = eval_step(params, partitioner.make_global_batch(local_batch))
            sums = metrics if not sums else jax.tree.map(jnp.add, sums, metrics)
            count += 1
    if count == 0:
        raise TrainerError(
            "the eval data yielded no batches; pass a list, a re-iterable dataset, or a "
            "zero-argument function returning a fresh iterator (a generator is used up after "
            "one evaluation)")
    means = {k: float(v) / count for k, v in jax.device_get(sums).items()}
    means["num_batches"] = float(count)
    return means

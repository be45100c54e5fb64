"""Training recipes on `mt3x.trainer`: the DNN's layer-wise growth, and plain U-Net training.

`train_dnn_layerwise` follows Uhlich et al. (2015): for k = 1..K, append a layer initialised by
least squares (`grow_dnn`, closed form from statistics streamed over `ls_batches` training
batches, silent mixture frames excluded), then train all layers so far with the trainer
(`steps_per_layer` steps); finally fine-tune (`finetune_steps`). The paper's L-BFGS is replaced
by the trainer's optimizer (AdamW by default). Each stage has its own run directory under
`workdir` (`layer1/`, `layer2/`, ..., `finetune/`) with the trainer's checkpoints and TensorBoard
logs, so an interrupted run resumes stage by stage (the least-squares solves are deterministic).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mt3x import trainer
from mt3x.errors import Mt3xError
from separation import least_squares
from separation.model_objects import DNNSeparator, UNetSeparator

Batch = Mapping[str, np.ndarray]
PyTree = Any


@functools.partial(jax.jit, static_argnums=0)
def _ls_inputs(model: DNNSeparator, params: PyTree, mixture: jax.Array, sources: jax.Array):
    """Per instrument: (input of the new layer f32[B*T, dim], targets f32[B*T, F]); mask f32[B*T]."""
    _, inputs, gamma = model.features(mixture)
    targets = model.normalized_targets(sources, gamma)            # [B, I, T, F]
    mask = (gamma[..., 0] > 1e-6).reshape(-1).astype(jnp.float32)
    out = []
    for i, name in enumerate(model.instruments):
        h = model.network.apply({"params": params[name]}, inputs) if model.num_layers else inputs
        out.append((h.reshape(-1, h.shape[-1]), targets[:, i].reshape(-1, targets.shape[-1])))
    return out, mask


def grow_dnn(model: DNNSeparator, params: PyTree | None, batches: Iterable[Batch], *,
             ridge: float = 1e-6) -> tuple[DNNSeparator, PyTree]:
    """Appends one least-squares layer to every instrument's network.

    Args:
      model: the current DNNSeparator (num_layers = k >= 0).
      params: its unboxed params ({instrument: {'layer_i': ...}}; None when k = 0).
      batches: training batches {'mixture', 'sources'}; iterated once.
      ridge: relative ridge of the solve.
    Returns:
      (model with num_layers = k + 1 and `initial_params` set, the new params).
    """
    params = params or {name: {} for name in model.instruments}
    stats: dict[str, least_squares.LeastSquaresStats] = {}
    for batch in batches:
        pairs, mask = _ls_inputs(model, params, jnp.asarray(batch["mixture"]),
                                 jnp.asarray(batch["sources"]))
        for name, (h, s) in zip(model.instruments, pairs):
            if name not in stats:
                stats[name] = least_squares.LeastSquaresStats.zeros(h.shape[-1], s.shape[-1])
            stats[name] = stats[name].add(h, s, mask)
    if not stats:
        raise Mt3xError("grow_dnn: the training data yielded no batches")
    k = model.num_layers
    new_params = {}
    for name in model.instruments:
        w, b = least_squares.solve(stats[name], ridge=ridge)
        new_params[name] = {**params[name], f"layer_{k}": {
            "kernel": jnp.asarray(w.T, jnp.float32), "bias": jnp.asarray(b, jnp.float32)}}
    grown = dataclasses.replace(model, num_layers=k + 1, initial_params=new_params)
    return grown, new_params


def _host(tree: PyTree) -> PyTree:
    return jax.tree.map(np.asarray, jax.device_get(tree))


@dataclasses.dataclass
class LayerwiseResult:
    """Snapshots of a layer-wise run: (model, params) after the first least-squares layer (no
    gradient step: the 'LS-initialised' row) and after the final fine-tune."""
    ls_init: tuple[DNNSeparator, PyTree]
    trained: tuple[DNNSeparator, PyTree]
    stage_losses: dict[str, float]
    final_stage: str | None = None
    """The stage directory under the workdir holding the trained params' checkpoint (None when
    no gradient step was run)."""


def train_dnn_layerwise(model: DNNSeparator, train_data: Callable[[int], Iterable[Batch]],
                        workdir: str | Path, *, num_layers: int, ls_batches: int = 20,
                        steps_per_layer: int = 100, finetune_steps: int = 200,
                        learning_rate: float = 1e-3, seed: int = 0,
                        train_kwargs: Mapping[str, Any] | None = None) -> LayerwiseResult:
    """Grows `model` (num_layers is ignored: it starts empty) to `num_layers` layers.

    Args:
      model: the DNNSeparator settings (instruments, STFT, context, activation, loss).
      train_data: seed -> iterable of training batches (e.g. a `SeparationWindows` factory).
      workdir: root of the stage run directories.
      num_layers: K.
      ls_batches: batches streamed into each least-squares solve.
      steps_per_layer, finetune_steps: trainer steps after each growth / at the end (0: none).
      learning_rate: AdamW learning rate.
      train_kwargs: more keyword arguments of `mt3x.trainer.train` (eval_data, checkpoint, ...).
    """
    if num_layers < 1:
        raise Mt3xError(f"train_dnn_layerwise: num_layers must be >= 1, got {num_layers}")
    workdir = Path(workdir)
    kwargs = dict(show_progress=False, log_every_steps=10)
    kwargs.update(train_kwargs or {})
    current = dataclasses.replace(model, num_layers=0, initial_params=None)
    params: PyTree | None = None
    ls_init = None
    losses: dict[str, float] = {}
    final_stage: str | None = None

    def fit(stage: str, m: DNNSeparator, steps: int, stage_seed: int) -> PyTree:
        result = trainer.train(model=m, train_data=train_data, workdir=workdir / stage,
                               num_steps=steps, optimizer=optax.adamw(learning_rate,
                                                                      weight_decay=0.0),
                               seed=stage_seed, **kwargs)
        if result.losses:
            losses[stage] = result.losses[max(result.losses)]
        return _host(result.state.params)

    for k in range(num_layers):
        data = itertools.islice(iter(train_data(seed + 1000 + k)), ls_batches)
        current, params = grow_dnn(current, params, data)
        if ls_init is None:
            ls_init = (current, params)
        if steps_per_layer > 0:
            params = fit(f"layer{k + 1}", current, steps_per_layer, seed + k)
            final_stage = f"layer{k + 1}"
            current = dataclasses.replace(current, initial_params=params)
    if finetune_steps > 0:
        params = fit("finetune", current, finetune_steps, seed + num_layers)
        final_stage = "finetune"
        current = dataclasses.replace(current, initial_params=params)
    return LayerwiseResult(ls_init=ls_init, trained=(current, params), stage_losses=losses,
                           final_stage=final_stage)


def train_unet(model: UNetSeparator, train_data: Callable[[int], Iterable[Batch]],
               workdir: str | Path, *, num_steps: int, learning_rate: float = 1e-3, seed: int = 0,
               train_kwargs: Mapping[str, Any] | None = None) -> PyTree:
    """Trains the U-Net with AdamW on the trainer; returns host params."""
    kwargs = dict(show_progress=False, log_every_steps=10)
    kwargs.update(train_kwargs or {})
    result = trainer.train(model=model, train_data=train_data, workdir=Path(workdir),
                           num_steps=num_steps,
                           optimizer=optax.adamw(learning_rate, weight_decay=0.0), seed=seed,
                           **kwargs)
    return _host(result.state.params)

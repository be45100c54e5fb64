"""Training recipes on `mt3x.trainer`: the DNN's layer-wise growth, and plain U-Net training.

`train_dnn_layerwise` follows Uhlich et al. (2015): for k = 1..K, append a layer initialised by
least squares (`grow_dnn`, closed form from statistics streamed over `ls_batches` training
batches, silent mixture frames excluded), then train all layers so far with the trainer
(`steps_per_layer` steps); finally fine-tune (`finetune_steps`). The paper's L-BFGS is replaced
by the trainer's optimizer (AdamW by default). Each stage has its own run directory under
`workdir` (`layer1/`, `layer2/`, ..., `finetune/`) with the trainer's checkpoints and TensorBoard
logs, so an interrupted run resumes stage by stage (the least-squares solves are deterministic).

Progress: the trainer's bar (step/s, loss, ETA; `mt3x.trainer.reporting.progress_bar`) for every
stage, prefixed with the stage ('dnn layer 1/2', 'dnn finetune', 'unet'), and a bar over the
batches of each least-squares solve; `train_kwargs={'show_progress': False}` hides them.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mt3x import trainer
from mt3x.errors import Mt3xError
from mt3x.trainer import optimizers
from mt3x.trainer.reporting import progress_bar
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


def _counted(batches: Iterable[Batch], bar: Any) -> Iterator[Batch]:
    """`batches`, advancing `bar` by one after each."""
    for batch in batches:
        yield batch
        bar.update(1)


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
    no gradient step was run, or when the params kept by validation are not the end of a stage:
    then the caller saves them)."""
    validation: dict[str, float] = dataclasses.field(default_factory=dict)
    """With `validate`: the score of every evaluated snapshot ('ls1', 'layer1@25', ...,
    'finetune@200'), in order."""
    best: str | None = None
    """With `validate`: the snapshot returned as `trained` (the best by validation)."""


def train_dnn_layerwise(model: DNNSeparator, train_data: Callable[[int], Iterable[Batch]],
                        workdir: str | Path, *, num_layers: int, ls_batches: int = 20,
                        steps_per_layer: int = 100, finetune_steps: int = 200,
                        learning_rate: float = 1e-3, seed: int = 0,
                        train_kwargs: Mapping[str, Any] | None = None,
                        validate: Callable[[DNNSeparator, PyTree], float] | None = None,
                        validate_every: int = 0) -> LayerwiseResult:
    """Grows `model` (num_layers is ignored: it starts empty) to `num_layers` layers.

    With `validate` (model, host params -> score, higher is better, e.g. `validation_si_sdr`)
    every least-squares snapshot, every `validate_every` trainer steps (0: stage ends only) and
    every stage end is scored, and `trained` is the best of them, so gradient training never
    returns a network that validates worse than its least-squares start. Without it, `trained`
    is the last stage's params (the original recipe).

    Args:
      model: the DNNSeparator settings (instruments, STFT, context, activation, loss).
      train_data: seed -> iterable of training batches (e.g. a `SeparationWindows` factory).
      workdir: root of the stage run directories.
      num_layers: K.
      ls_batches: batches streamed into each least-squares solve.
      steps_per_layer, finetune_steps: trainer steps after each growth / at the end (0: none).
      learning_rate: AdamW learning rate.
      train_kwargs: more keyword arguments of `mt3x.trainer.train` (eval_data, checkpoint, ...).
      validate, validate_every: keep the best snapshot by this score (see above).
    """
    if num_layers < 1:
        raise Mt3xError(f"train_dnn_layerwise: num_layers must be >= 1, got {num_layers}")
    workdir = Path(workdir)
    kwargs = dict(log_every_steps=10)
    kwargs.update(train_kwargs or {})
    show = kwargs.get("show_progress", True)
    current = dataclasses.replace(model, num_layers=0, initial_params=None)
    params: PyTree | None = None
    ls_init = None
    losses: dict[str, float] = {}
    final_stage: str | None = None

    scores: dict[str, float] = {}
    best: dict[str, Any] = {}     # name, score, model, params, stage (a stage's end) or None

    def consider(name: str, m: DNNSeparator, p: PyTree, stage: str | None) -> float:
        score = float(validate(m, p))
        scores[name] = score
        if not best or score > best["score"]:
            best.update(name=name, score=score, model=m, params=p, stage=stage)
        return score

    def fit(stage: str, label: str, m: DNNSeparator, steps: int, stage_seed: int) -> PyTree:
        stage_kwargs = dict(kwargs)
        seen: set[int] = set()
        if validate is not None:
            def evaluator(p: PyTree, step: int) -> dict[str, float]:
                seen.add(int(step))
                return {"validate": consider(f"{stage}@{step}", m, _host(p),
                                             stage if step == steps else None)}
            stage_kwargs["evaluators"] = tuple(stage_kwargs.get("evaluators", ())) + (evaluator,)
            stage_kwargs["eval_every_steps"] = validate_every
        result = trainer.train(model=m, train_data=train_data, workdir=workdir / stage,
                               num_steps=steps, optimizer=optax.adamw(learning_rate,
                                                                      weight_decay=0.0),
                               seed=stage_seed, progress_label=label, **stage_kwargs)
        if result.losses:
            losses[stage] = result.losses[max(result.losses)]
        out = _host(result.state.params)
        if validate is not None and steps not in seen:   # resumed after its end: score it here
            consider(f"{stage}@{steps}", m, out, stage)
        return out

    for k in range(num_layers):
        data = itertools.islice(iter(train_data(seed + 1000 + k)), ls_batches)
        with progress_bar(ls_batches, desc=f"dnn layer {k + 1}/{num_layers} least squares",
                          unit="batch", disable=not show) as bar:
            current, params = grow_dnn(current, params, _counted(data, bar))
        if ls_init is None:
            ls_init = (current, params)
        if validate is not None:
            consider(f"ls{k + 1}", current, params, None)
        if steps_per_layer > 0:
            params = fit(f"layer{k + 1}", f"dnn layer {k + 1}/{num_layers}", current,
                         steps_per_layer, seed + k)
            final_stage = f"layer{k + 1}"
            current = dataclasses.replace(current, initial_params=params)
    if finetune_steps > 0:
        params = fit("finetune", "dnn finetune", current, finetune_steps, seed + num_layers)
        final_stage = "finetune"
        current = dataclasses.replace(current, initial_params=params)
    if validate is not None:
        current = dataclasses.replace(best["model"], initial_params=best["params"])
        return LayerwiseResult(ls_init=ls_init, trained=(current, best["params"]),
                               stage_losses=losses, final_stage=best["stage"],
                               validation=scores, best=best["name"])
    return LayerwiseResult(ls_init=ls_init, trained=(current, params), stage_losses=losses,
                           final_stage=final_stage)


def validation_si_sdr(batches: Iterable[Batch]) -> Callable[[DNNSeparator, PyTree], float]:
    """A `validate` for `train_dnn_layerwise`: mean SI-SDR (dB, the model's 'si_sdr' metric:
    Wiener reconstruction, silent references skipped) over fixed `batches` (kept in memory;
    e.g. windows of the validation tracks without remixing)."""
    batches = [{k: jnp.asarray(v) for k, v in b.items()} for b in batches]
    if not batches:
        raise Mt3xError("validation_si_sdr: no validation batches")
    jitted: dict[DNNSeparator, Any] = {}

    def score(model: DNNSeparator, params: PyTree) -> float:
        key = dataclasses.replace(model, initial_params=None)
        if key not in jitted:
            jitted[key] = jax.jit(lambda p, b: key.loss(p, b, None)[1]["si_sdr"])
        return float(np.mean([float(jitted[key](params, b)) for b in batches]))
    return score


def unet_rate_schedule(peak: float, num_steps: int, schedule: str = "constant"
                       ) -> optimizers.LearningRate:
    """The U-Net's learning rate: `peak` throughout ('constant'), or ('cosine') a linear warm-up
    over the first 5% of `num_steps` and a cosine decay to 0 at `num_steps`."""
    if schedule == "constant":
        return peak
    if schedule == "cosine":
        return optimizers.warmup_cosine_schedule(peak, max(1, num_steps // 20),
                                                 max(2, num_steps))
    raise Mt3xError(f"unet_lr_schedule: expected 'constant' or 'cosine', got {schedule!r}")


def train_unet(model: UNetSeparator, train_data: Callable[[int], Iterable[Batch]],
               workdir: str | Path, *, num_steps: int, learning_rate: float = 1e-3,
               lr_schedule: str = "constant", seed: int = 0,
               train_kwargs: Mapping[str, Any] | None = None) -> PyTree:
    """Trains the U-Net with AdamW on the trainer (`unet_rate_schedule` gives the rate at each
    step); returns host params."""
    kwargs = dict(log_every_steps=10, progress_label="unet")
    kwargs.update(train_kwargs or {})
    rate = unet_rate_schedule(learning_rate, num_steps, lr_schedule)
    result = trainer.train(model=model, train_data=train_data, workdir=Path(workdir),
                           num_steps=num_steps,
                           optimizer=optax.adamw(rate, weight_decay=0.0), seed=seed,
                           learning_rate_fn=rate if callable(rate) else None,
                           **kwargs)
    return _host(result.state.params)

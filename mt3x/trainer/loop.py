"""`train(...)`: the training loop (resume, train steps, evaluation, checkpoints, reports).

Keyword arguments only, so gin can bind them at the edges (`launch/train.py`). A run lives in
one work directory:
```
<workdir>/checkpoints/<step>/...   Orbax checkpoints (latest + best k), see checkpoints.py
<workdir>/tensorboard/{train,eval}/ TensorBoard scalars
<workdir>/operative_config.gin      the gin config the run was started with (when given)
<workdir>/loss_curve.png            train (and eval) loss against step, written at the end
```
Calling `train` again with the same workdir resumes from the latest checkpoint: params,
optimizer state, step, PRNG key and data position, so the losses continue exactly as if the run
had never stopped.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import jax
import optax

from mt3x.util.files import atomic_path
from mt3x.trainer import steps as steps_lib
from mt3x.trainer.batch_source import as_batch_source
from mt3x.trainer.checkpoints import Checkpointer, CheckpointOptions, restore_params
from mt3x.trainer.data_positions import gather_data_states, own_data_state
from mt3x.trainer.errors import NonFiniteLossError, TrainerError
from mt3x.trainer.model_api import Model
from mt3x.trainer.optimizers import adafactor_mt3
from mt3x.trainer.partitioning import Partitioner
from mt3x.trainer.reporting import LossHistory, RunReporter, plot_loss_curve
from mt3x.trainer.train_state import TrainState, abstract_train_state, create_train_state

Evaluator = Callable[[Any, int], Mapping[str, float]]
"""(params, step) -> {metric name: value}; names without '/' are written as 'eval/<name>'."""

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainResult:
    """What `train` returns.

    state: the final TrainState (sharded arrays).
    losses: train loss of every step run by this call, {step: loss}.
    eval_history: evaluation results of this call, {step: {'eval/loss': ..., ...}}.
    nonfinite_steps: steps skipped for NaN/Inf in the whole run (including before a resume).
    workdir: the run directory.
    """

    state: TrainState
    losses: dict[int, float]
    eval_history: dict[int, dict[str, float]]
    nonfinite_steps: int
    workdir: Path

    @property
    def step(self) -> int:
        return int(jax.device_get(self.state.step))


def _metric_name(key: str) -> str:
    return key if "/" in key else f"eval/{key}"


def run_evaluation(*, step: int, params: Any, eval_data: Any, eval_step: Any,
                   evaluators: Sequence[Evaluator], partitioner: Partitioner,
                   eval_max_batches: int | None) -> dict[str, float]:
    """Validation loss over `eval_data` (when given) and every evaluator's metrics at `step`."""
    results: dict[str, float] = {}
    if eval_data is not None:
        losses = steps_lib.evaluate_loss(eval_step=eval_step, params=params, eval_data=eval_data,
                                         partitioner=partitioner, max_batches=eval_max_batches)
        results.update({_metric_name(k): v for k, v in losses.items()})
    for evaluator in evaluators:
        results.update({_metric_name(k): float(v) for k, v in evaluator(params, step).items()})
    return results


@dataclasses.dataclass(frozen=True)
class _LoopSettings:
    """What the loop does at each step (the arguments of `train` it needs)."""

    num_steps: int
    batch_size: int | None
    eval_every_steps: int
    eval_max_batches: int | None
    log_every_steps: int
    nonfinite_policy: str
    checkpoint: CheckpointOptions
    gin_config: str


@dataclasses.dataclass
class _Progress:
    """The loop's mutable record: the state, what was measured, and the last timing point."""

    state: TrainState
    history: LossHistory
    eval_losses: dict[int, float]
    last_time: float
    last_step: int
    losses: dict[int, float] = dataclasses.field(default_factory=dict)
    eval_history: dict[int, dict[str, float]] = dataclasses.field(default_factory=dict)
    pending: tuple[int, Any] | None = None  # (step, device metrics) not read back yet


@dataclasses.dataclass(frozen=True)
class _Evaluation:
    """What an evaluation needs besides the params (None/empty parts are skipped)."""

    eval_data: Any
    eval_step: Any
    evaluators: Sequence[Evaluator]
    partitioner: Partitioner
    max_batches: int | None

    @property
    def enabled(self) -> bool:
        return self.eval_data is not None or bool(self.evaluators)


def train(
    *,
    model: Model,
    train_data: Any,
    workdir: str | Path,
    num_steps: int,
    batch_size: int | None = None,
    optimizer: optax.GradientTransformation | None = None,
    learning_rate_fn: Callable[[Any], Any] | None = None,
    partitioner: Partitioner | None = None,
    eval_data: Any = None,
    evaluators: Sequence[Evaluator] = (),
    eval_every_steps: int = 0,
    eval_max_batches: int | None = None,
    checkpoint: CheckpointOptions = CheckpointOptions(),
    init_params_from: str | Path | None = None,
    seed: int = 0,
    nonfinite_policy: str = "skip",
    log_every_steps: int = 50,
    gin_config: str = "",
    show_progress: bool = True,
    tensorboard: bool = True,
    progress_label: str | None = None,
    train_scalars: Callable[[], Mapping[str, float]] | None = None,
) -> TrainResult:
    """Trains `model` for `num_steps` steps in `workdir`, resuming when it holds a checkpoint.

    Args:
      model: a `Model` (init / loss / predict).
      train_data: per-host numpy batch dicts: a `BatchSource`, a callable seed -> iterable, or
        a re-iterable (see `as_batch_source`). Must yield at least `num_steps` batches.
      workdir: run directory (checkpoints, TensorBoard, loss curve).
      num_steps: train until this global step.
      batch_size: the expected global batch size (per-host batch x processes); checked.
      optimizer: an optax transformation (default: Adafactor with MT3's settings, lr 1e-3).
      learning_rate_fn: step -> lr, only to log the learning rate.
      partitioner: mesh and sharding rules (default: all devices data-parallel).
      eval_data: re-iterable or zero-argument callable of per-host eval batches; its mean loss
        is reported as 'eval/loss' (model metrics as 'eval/<name>').
      evaluators: callables (params, step) -> {name: value}, e.g. transcription F1.
      eval_every_steps: evaluate every this many steps and at the end (0: only at the end).
      eval_max_batches: evaluate on at most this many eval batches.
      checkpoint: what to save and keep (latest, best k by a metric).
      init_params_from: a checkpoint dir (or workdir) to take initial params from for
        fine-tuning (optimizer state fresh). Ignored when `workdir` already has a checkpoint.
      seed: seeds param init, the step PRNG keys and the data order of a seeded source.
      nonfinite_policy: 'skip' a NaN/Inf step (its update is dropped) or 'raise'.
      log_every_steps: write train scalars every this many steps.
      gin_config: the operative gin config text, saved with every checkpoint.
      show_progress: draw a progress bar with step/s, loss and ETA.
      progress_label: the bar's prefix (e.g. 'dnn layer 1/2'); None: none.
      train_scalars: zero-argument callable whose {name: value} are written with every train
        scalar write (e.g. the input pipeline's counters, `data/examples_too_long`).
      tensorboard: write TensorBoard scalars (else only log them; avoids importing TF).

    Returns:
      TrainResult with the final state and this call's losses and evaluations.

    Raises:
      TrainerError (and subclasses): bad arguments, data that runs out, batch sizes that do not
        divide over the devices, NaN/Inf under 'raise', unusable checkpoints.
    """
    settings = _LoopSettings(num_steps=num_steps, batch_size=batch_size,
                             eval_every_steps=eval_every_steps,
                             eval_max_batches=eval_max_batches, log_every_steps=log_every_steps,
                             nonfinite_policy=nonfinite_policy, checkpoint=checkpoint,
                             gin_config=gin_config)
    _check_settings(settings)
    workdir = Path(workdir).absolute()
    partitioner = partitioner or Partitioner()
    optimizer = optimizer if optimizer is not None else adafactor_mt3()
    _write_operative_config(workdir, gin_config)
    checkpointer = Checkpointer(workdir / "checkpoints", checkpoint)
    reporter: RunReporter | None = None
    batches: Iterator | None = None
    try:
        source = as_batch_source(train_data, seed=seed)
        # The newest step whose files all read (a damaged newer one is skipped with a warning).
        resume_step = checkpointer.resume_step()
        meta = _restore_data_position(checkpointer, source, resume_step)
        batches = iter(source)
        first = _first_batch(batches, settings, partitioner)
        abstract = abstract_train_state(model=model, optimizer=optimizer,
                                        partitioner=partitioner, batch=first)
        state, meta = _resume_or_init(
            checkpointer, abstract, meta, resume_step, model=model, optimizer=optimizer,
            partitioner=partitioner, first=first, seed=seed, init_params_from=init_params_from)
        progress = _start_progress(state, meta)
        step_fn = steps_lib.jit_train_step(
            steps_lib.train_step_fn(model, optimizer, learning_rate_fn), partitioner, abstract)
        evaluation = _Evaluation(
            eval_data=eval_data, evaluators=evaluators, partitioner=partitioner,
            max_batches=eval_max_batches,
            eval_step=(steps_lib.jit_eval_step(model, partitioner,
                                               jax.tree.map(lambda a: a.sharding,
                                                            abstract.params))
                       if eval_data is not None else None))
        start_step = progress.last_step
        reporter = RunReporter(workdir, num_steps=num_steps, start_step=start_step,
                               show_progress=show_progress, tensorboard=tensorboard,
                               progress_label=progress_label, extra_scalars=train_scalars)
        stream: Iterator = itertools.chain([first], batches)
        progress.last_time = time.perf_counter()
        with partitioner.activate():
            for step in range(start_step + 1, num_steps + 1):
                _train_step(progress, step_fn, stream, step, settings, partitioner, reporter)
                do_eval, do_save = _due(step, settings, evaluation.enabled)
                if not (do_eval or do_save):
                    continue
                _flush_report(progress, settings, reporter)
                results = _evaluate(progress, step, evaluation, reporter) if do_eval else None
                if do_save:
                    _save(checkpointer, progress, source, results, settings)
            _flush_report(progress, settings, reporter)
        checkpointer.wait()
        _plot(workdir, progress)
        return TrainResult(state=progress.state, losses=progress.losses,
                           eval_history=progress.eval_history,
                           nonfinite_steps=int(jax.device_get(progress.state.nonfinite_steps)),
                           workdir=workdir)
    finally:
        # Close the data pipeline now (a tf.data iterator left to garbage collection can hang
        # the interpreter's exit after an error), then wait for saves.
        close = getattr(batches, "close", None)
        if close is not None:
            close()
        checkpointer.close()
        if reporter is not None:
            reporter.close()


def _check_settings(settings: _LoopSettings) -> None:
    """Raises TrainerError for a policy or step counts `train` cannot use."""
    if settings.nonfinite_policy not in steps_lib.NONFINITE_POLICIES:
        raise TrainerError(f"nonfinite_policy must be one of {steps_lib.NONFINITE_POLICIES}, "
                           f"got {settings.nonfinite_policy!r}")
    if settings.num_steps < 1 or settings.eval_every_steps < 0 or settings.log_every_steps < 1:
        raise TrainerError(f"need num_steps >= 1, eval_every_steps >= 0, log_every_steps >= 1; got "
                           f"{settings.num_steps}, {settings.eval_every_steps}, "
                           f"{settings.log_every_steps}")


def _write_operative_config(workdir: Path, gin_config: str) -> None:
    """Writes `<workdir>/operative_config.gin` (process 0, when there is a config)."""
    if jax.process_index() == 0 and gin_config:
        workdir.mkdir(parents=True, exist_ok=True)
        with atomic_path(workdir / "operative_config.gin") as tmp:
            tmp.write_text(gin_config)


def _restore_data_position(checkpointer: Checkpointer, source: Any,
                           resume_step: int | None) -> dict[str, Any]:
    """Moves `source` to the data position of checkpoint `resume_step` (None: a fresh run);
    returns that checkpoint's metadata ({} for a fresh run)."""
    if resume_step is None:
        return {}
    data_state, meta = checkpointer.read_data_and_meta(resume_step)
    source.set_state(own_data_state(data_state))
    return meta


def _first_batch(batches: Iterator, settings: _LoopSettings,
                 partitioner: Partitioner) -> Mapping[str, Any]:
    """The first per-host batch (it also shapes the abstract state), checked."""
    first = next(batches, None)
    if first is None:
        raise TrainerError("the training data yielded no batches")
    _check_batch(first, settings.batch_size, partitioner)
    return first


def _resume_or_init(checkpointer: Checkpointer, abstract: TrainState, meta: dict[str, Any],
                    resume_step: int | None, *,
                    model: Model, optimizer: optax.GradientTransformation,
                    partitioner: Partitioner, first: Mapping[str, Any], seed: int,
                    init_params_from: str | Path | None) -> tuple[TrainState, dict[str, Any]]:
    """(state, metadata): restored from checkpoint `resume_step`, else (None) freshly
    initialised (with params from `init_params_from` when given)."""
    if resume_step is not None:
        state, _, meta = checkpointer.restore(abstract, resume_step)
        log.info("resumed from %s at step %d", checkpointer.directory, resume_step)
        return state, meta
    params = None
    if init_params_from is not None:
        params = restore_params(init_params_from, abstract.params)
    state = create_train_state(model=model, optimizer=optimizer, partitioner=partitioner,
                               batch=first, seed=seed, params=params)
    return state, meta


def _start_progress(state: TrainState, meta: Mapping[str, Any]) -> _Progress:
    """The loop's record at the start step: loss history and eval-loss points up to it."""
    start_step = int(jax.device_get(state.step))
    history = LossHistory.from_json(meta.get("loss_history"))
    history.truncate(start_step)
    eval_losses = {int(k): v for k, v in meta.get("eval_loss_points", {}).items()
                   if int(k) <= start_step}
    return _Progress(state=state, history=history, eval_losses=eval_losses,
                     last_time=time.perf_counter(), last_step=start_step)


def _train_step(progress: _Progress, step_fn: Any, stream: Iterator, step: int,
                settings: _LoopSettings, partitioner: Partitioner,
                reporter: RunReporter) -> None:
    """Runs step `step` on the next batch; reads back the previous step's metrics while this
    one runs (its own become `progress.pending`)."""
    local_batch = next(stream, None)
    if local_batch is None:
        raise TrainerError(
            f"the training data ran out at step {step} of {settings.num_steps}; make the "
            "source repeat (e.g. loop over epochs) or lower num_steps")
    _check_batch(local_batch, settings.batch_size, partitioner)
    progress.state, metrics = step_fn(progress.state, partitioner.make_global_batch(local_batch))
    _flush_report(progress, settings, reporter)
    progress.pending = (step, metrics)


def _due(step: int, settings: _LoopSettings, evaluate: bool) -> tuple[bool, bool]:
    """(evaluate now, save now) after step `step`: at the end, on the eval / save intervals,
    and after every evaluation when best checkpoints compete."""
    is_last = step == settings.num_steps
    every = settings.eval_every_steps
    do_eval = evaluate and (is_last or bool(every and step % every == 0))
    options = settings.checkpoint
    do_save = is_last or step % options.save_every_steps == 0 or (
        do_eval and options.keep_best > 0)
    return do_eval, do_save


def _flush_report(progress: _Progress, settings: _LoopSettings, reporter: RunReporter) -> None:
    """Reads back and reports the pending step's metrics (if any)."""
    if progress.pending is not None:
        step, device_metrics = progress.pending
        progress.pending = None
        _report(progress, step, device_metrics, settings, reporter)


def _report(progress: _Progress, step: int, device_metrics: Any, settings: _LoopSettings,
            reporter: RunReporter) -> None:
    """Records step `step`'s loss, enforces the non-finite policy, and writes the train scalars
    (with steps/s) every `log_every_steps` steps and at the end."""
    metrics = {k: float(v) for k, v in jax.device_get(device_metrics).items()}
    progress.losses[step] = metrics["loss"]
    progress.history.add(step, metrics["loss"])
    if metrics["nonfinite"] and settings.nonfinite_policy == "raise":
        raise NonFiniteLossError(
            f"step {step}: non-finite loss {metrics['loss']} or gradient norm "
            f"{metrics['grad_norm']}; the update was not applied and the run stops "
            f"(nonfinite_policy='raise'; 'skip' would drop such steps and continue)")
    write = step % settings.log_every_steps == 0 or step == settings.num_steps
    if write:
        now = time.perf_counter()
        metrics["steps_per_sec"] = (step - progress.last_step) / max(now - progress.last_time,
                                                                       1e-9)
        progress.last_time, progress.last_step = now, step
    reporter.train_step(step, metrics, write=write)


def _evaluate(progress: _Progress, step: int, evaluation: _Evaluation,
              reporter: RunReporter) -> dict[str, float]:
    """Evaluates the current params, records and reports the results."""
    results = run_evaluation(
        step=step, params=progress.state.params, eval_data=evaluation.eval_data,
        eval_step=evaluation.eval_step, evaluators=evaluation.evaluators,
        partitioner=evaluation.partitioner, eval_max_batches=evaluation.max_batches)
    progress.eval_history[step] = results
    if "eval/loss" in results:
        progress.eval_losses[step] = results["eval/loss"]
    reporter.eval_results(step, results)
    return results


def _save(checkpointer: Checkpointer, progress: _Progress, source: Any,
          results: Mapping[str, float] | None, settings: _LoopSettings) -> None:
    """Saves the state, the data position and the run's metadata (gin config, loss history,
    eval-loss points); `results` let the checkpoint compete for best."""
    data_state = gather_data_states(source.get_state())   # every process's position
    checkpointer.save(progress.state, data_state=data_state, metrics=results, meta={
        "gin_config": settings.gin_config, "loss_history": progress.history.to_json(),
        "eval_loss_points": {str(k): v for k, v in progress.eval_losses.items()}})


def _plot(workdir: Path, progress: _Progress) -> None:
    """Writes `<workdir>/loss_curve.png` (process 0, when any loss was recorded)."""
    if jax.process_index() == 0 and progress.history.steps:
        plot_loss_curve(progress.history, workdir / "loss_curve.png", progress.eval_losses)


def _check_batch(local_batch: Mapping[str, Any], batch_size: int | None,
                 partitioner: Partitioner) -> None:
    """Raises TrainerError when the batch is not a dict or its global size is not `batch_size`."""
    if not isinstance(local_batch, Mapping) or not local_batch:
        raise TrainerError(f"a training batch must be a non-empty dict of arrays, got "
                           f"{type(local_batch).__name__}")
    if batch_size is None:
        return
    local = len(next(iter(local_batch.values())))
    if local * jax.process_count() != batch_size:
        raise TrainerError(
            f"batch_size={batch_size} but the data yields {local} examples per host x "
            f"{jax.process_count()} hosts = {local * jax.process_count()}")

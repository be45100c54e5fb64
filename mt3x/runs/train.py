"""Train or fine-tune MT3 on a Slakh2100-layout dataset: `train_mt3(Mt3TrainConfig)`, the library
behind `launch/train.py` and `mt3x-demo`, as a sequence of named steps.

    >>> config = Mt3TrainConfig(workdir='runs/demo', data=DataConfig(dataset_root='data/demo'),
    ...                         schedule=ScheduleConfig(num_steps=600))
    >>> result = train_mt3(config)

A run's work directory:
```
<workdir>/checkpoints/<step>/      Orbax: params, optimizer state, step, RNG, data position,
                                    operative gin config (latest + best k by a named metric)
<workdir>/mt3x_model.json          the network configuration (for inference / fine-tuning)
<workdir>/operative_config.gin     the gin config of the run (when started through gin)
<workdir>/tensorboard/, loss_curve.png
```
Fine-tuning = `init_checkpoint` (any train_mt3 workdir; params only, fresh optimizer state) plus
optionally `schedule.freeze_patterns` (regexes of parameter names, e.g. '^encoder/').
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Iterable

import jax
import optax

from mt3x.runs.common import make_model
from mt3x.runs.config import Mt3TrainConfig, RunConfigError, ScheduleConfig
from mt3x.runs.grain_input import GrainRunInput
from mt3x.tasks.counters import pipeline_scalars
from mt3x.trainer import (Partitioner, TrainResult, make_optimizer, train,
                          warmup_cosine_schedule, warmup_rsqrt_schedule)
from mt3x.transcription.checkpoint import check_vocab, save_model_spec
from mt3x.transcription.evaluation import EvalFile, TranscriptionEvaluator

log = logging.getLogger(__name__)

Batches = Iterable[dict[str, Any]]


def train_mt3(config: Mt3TrainConfig, *, gin_config: str = "") -> TrainResult:
    """Trains (or fine-tunes) MT3 as `config` says; resumes a run in `config.workdir`.

    Args:
      config: the run (see `mt3x.runs.config`).
      gin_config: the operative gin config text, saved with every checkpoint.

    Returns:
      `mt3x.trainer.TrainResult` (state, losses, eval_history, workdir).

    Raises:
      Mt3xError subclasses: missing/empty dataset splits, a batch that does not divide over the
      devices, a model that does not fit the vocabulary or the init checkpoint, ...
    """
    model = build_model(config)
    check_run(config)
    run_input = select_input(config)
    partitioner = Partitioner(num_partitions=config.num_partitions)
    optimizer, learning_rate = build_optimizer(config.schedule)
    evaluators = build_evaluators(config, model, run_input.eval_files(), partitioner)
    workdir = prepare_workdir(config, model)
    log.info("train_mt3: %s, %s", run_input.description, json.dumps(
        {"batch_size": config.data.batch_size, "num_steps": config.schedule.num_steps,
         "optimizer": config.schedule.optimizer,
         "learning_rate": config.schedule.learning_rate,
         "freeze": list(config.schedule.freeze_patterns)}))
    evaluation, report = config.evaluation, config.report
    return train(
        model=model, train_data=run_input.train_data(),
        workdir=workdir, num_steps=config.schedule.num_steps,
        batch_size=config.data.batch_size, optimizer=optimizer,
        learning_rate_fn=learning_rate if callable(learning_rate) else None,
        partitioner=partitioner, eval_data=run_input.eval_batches(),
        evaluators=evaluators, eval_every_steps=evaluation.every_steps,
        eval_max_batches=evaluation.loss_batches or None, checkpoint=config.checkpoint,
        init_params_from=config.init_checkpoint, seed=config.seed,
        nonfinite_policy=config.nonfinite_policy, log_every_steps=report.log_every_steps,
        gin_config=gin_config, show_progress=report.show_progress,
        tensorboard=report.tensorboard, train_scalars=pipeline_scalars)


def build_model(config: Mt3TrainConfig) -> Any:
    """The `Mt3Model` of the run, checked against the vocabulary and the target length."""
    model = make_model(config.model)
    check_vocab(model, config.data.vocab)
    if config.data.target_length > model.config.max_length:
        raise RunConfigError(f"data.target_length {config.data.target_length} exceeds the "
                             f"model's max_length {model.config.max_length}")
    return model


def check_run(config: Mt3TrainConfig) -> None:
    """Checks what needs the processes and the file system: the batch divides over the
    processes, and the init checkpoint exists."""
    processes = jax.process_count()
    if config.data.batch_size % processes:
        raise RunConfigError(f"data.batch_size {config.data.batch_size} does not divide over "
                             f"{processes} processes")
    if config.init_checkpoint is not None and not Path(config.init_checkpoint).exists():
        raise RunConfigError(f"init_checkpoint {config.init_checkpoint} does not exist")


def select_input(config: Mt3TrainConfig) -> Any:
    """The run's input pipeline (`data.input_pipeline`), its data checked: a `GrainRunInput`
    (piece cache, no TensorFlow) or a `SeqioRunInput` (seqio tasks registered). Both give
    `train_data()`, `eval_batches()`, `eval_files()` and a `description`."""
    if config.data.input_pipeline == "grain":
        return GrainRunInput(config)
    # The one dispatch point to the seqio driver: imported here, only for a seqio run, so that
    # the module graph of a Grain run (mt3x.runs.train and what it imports) holds no TensorFlow.
    from mt3x.runs.seqio_input import SeqioRunInput  # noqa: PLC0415

    return SeqioRunInput(config)


def make_learning_rate(*, learning_rate: float, schedule: str = "constant",
                       warmup_steps: int = 0, decay_steps: int | None = None) -> Any:
    """A float (constant) or an optax schedule step -> lr (see `ScheduleConfig.lr_schedule`)."""
    if schedule == "rsqrt":
        return warmup_rsqrt_schedule(learning_rate, max(warmup_steps, 1))
    if schedule == "cosine":
        if decay_steps is None:
            raise RunConfigError("lr_schedule='cosine' needs decay_steps (usually num_steps)")
        return warmup_cosine_schedule(learning_rate, warmup_steps, decay_steps)
    if schedule != "constant":
        raise RunConfigError(f"lr_schedule: unknown {schedule!r}")
    if warmup_steps > 0:
        return optax.join_schedules(
            [optax.linear_schedule(0.0, learning_rate, warmup_steps),
             optax.constant_schedule(learning_rate)], [warmup_steps])
    return learning_rate


def build_optimizer(schedule: ScheduleConfig) -> tuple[optax.GradientTransformation, Any]:
    """(optax transformation, learning rate: a float or a step -> lr schedule)."""
    learning_rate = make_learning_rate(
        learning_rate=schedule.learning_rate, schedule=schedule.lr_schedule,
        warmup_steps=schedule.warmup_steps, decay_steps=schedule.num_steps)
    optimizer = make_optimizer(
        name=schedule.optimizer, learning_rate=learning_rate,
        freeze_patterns=tuple(schedule.freeze_patterns),
        grad_accum_steps=schedule.grad_accum_steps, weight_decay=schedule.weight_decay,
        max_grad_norm=schedule.max_grad_norm)
    return optimizer, learning_rate


def build_evaluators(config: Mt3TrainConfig, model: Any,
                     files: Callable[[], list[EvalFile]],
                     partitioner: Partitioner) -> list[TranscriptionEvaluator]:
    """The transcription evaluator of `evaluation.split` (none when `evaluation.transcription`
    is off); `files` (the run input's `eval_files()`) is called at the first evaluation."""
    evaluation, data = config.evaluation, config.data
    if not evaluation.transcription:
        return []
    return [TranscriptionEvaluator(
        model=model, vocab=data.vocab, partitioner=partitioner, files=files,
        batch_size=evaluation.batch_size or data.batch_size,
        max_decode_length=evaluation.decode_length or data.target_length)]


def prepare_workdir(config: Mt3TrainConfig, model: Any) -> Path:
    """Creates the work directory and writes the network's `mt3x_model.json` (process 0)."""
    workdir = Path(config.workdir)
    if jax.process_index() == 0:
        workdir.mkdir(parents=True, exist_ok=True)
        save_model_spec(workdir, model, config.data.vocab)
    return workdir

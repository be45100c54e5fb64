"""The configuration of an MT3 training run: one frozen dataclass with nested groups.

    >>> config = Mt3TrainConfig(
    ...     workdir='runs/demo', model='small_cpu',
    ...     data=DataConfig(dataset_root='data/demo', batch_size=8, target_length=192),
    ...     schedule=ScheduleConfig(num_steps=600, optimizer='adamw', learning_rate=2e-3),
    ...     evaluation=EvalConfig(every_steps=250),
    ...     checkpoint=CheckpointOptions(save_every_steps=250, keep_best=1,
    ...                                  best_metric='eval/multi_instrument_f1', best_mode='max'))
    >>> result = mt3x.runs.train.train_mt3(config)

Gin builds the same object at the edges (`configs/runs/train.gin` binds
`mt3x.runs.Mt3TrainConfig`, `mt3x.runs.DataConfig`, ...; `mt3x.runs.gin_registry`). Checks that
need only the fields run when an object is made; checks that need the model, the devices or the
dataset run in `mt3x.runs.train`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

from mt3x.errors import Mt3xError
from mt3x.trainer import CheckpointOptions

LR_SCHEDULES = ("constant", "rsqrt", "cosine")
OPTIMIZERS = ("adafactor", "adamw")
EVAL_SPLITS = ("train", "validation", "test")
INPUT_PIPELINES = ("seqio", "grain")


class RunConfigError(Mt3xError):
    """Settings of an MT3 run that do not fit together (names the field and what was expected)."""


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the examples come from and their shapes.

    dataset_root: folder with train/ (validation/ for evaluation) in Slakh2100's layout.
    dataset_name: seqio task-name prefix.
    vocab: codec vocabulary, 'mt3' (1536 ids) or 'ismir2021' (1664 ids); must fit the model.
    program_source: 'slakh_class' (MT3's instrument-class programs) or 'midi'.
    batch_size: global batch in examples (per host = batch_size / processes; must divide over
      the data shards of the mesh).
    target_length: decoder length in tokens; longer targets are skipped and counted (MT3: 1024).
    max_examples_per_mix: mixing augmentation of 1..N examples (None: off).
    in_memory_cache: keep tokenized tracks in memory after the first epoch (small datasets;
      seqio only).
    input_pipeline: 'seqio' (tf.data over the dataset folder; needs TensorFlow) or 'grain'
      (Grain over the piece cache `cache_dir`; no TensorFlow; transcription evaluation still
      reads `dataset_root`).
    cache_dir: the piece cache of `mt3x-data cache` (grain only); its manifest must match
      `dataset_name`, `vocab` and `program_source`.
    workers: Grain worker processes preparing training batches (0: in the training process).
    """

    dataset_root: str | os.PathLike
    dataset_name: str = "slakh"
    vocab: str = "mt3"
    program_source: str = "slakh_class"
    batch_size: int = 8
    target_length: int = 1024
    max_examples_per_mix: int | None = None
    in_memory_cache: bool = True
    input_pipeline: str = "seqio"
    cache_dir: str | os.PathLike | None = None
    workers: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.target_length < 1:
            raise RunConfigError(f"data: need batch_size >= 1 and target_length >= 1, got "
                                 f"{self.batch_size} and {self.target_length}")
        if self.input_pipeline not in INPUT_PIPELINES:
            raise RunConfigError(f"data.input_pipeline: expected one of {INPUT_PIPELINES}, got "
                                 f"{self.input_pipeline!r}")
        if self.input_pipeline == "grain" and self.cache_dir is None:
            raise RunConfigError("data.cache_dir: input_pipeline='grain' reads a piece cache; "
                                 "build one with `mt3x-data cache DATASET --out CACHE`")
        if self.workers < 0:
            raise RunConfigError(f"data.workers: expected >= 0, got {self.workers}")


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """How long and how the parameters move.

    num_steps: train until this global step.
    optimizer: 'adafactor' (MT3's settings) or 'adamw'.
    learning_rate: peak learning rate.
    lr_schedule: 'constant' (linear warm-up first when warmup_steps > 0), 'rsqrt' (T5: warm-up
      then lr * sqrt(warmup / step)) or 'cosine' (warm-up then cosine decay to 0 at num_steps).
    warmup_steps: linear warm-up steps.
    weight_decay, max_grad_norm: AdamW only.
    grad_accum_steps: gradient accumulation (micro-steps per update).
    freeze_patterns: regexes of parameter names that stay fixed (e.g. '^encoder/').
    """

    num_steps: int
    optimizer: str = "adafactor"
    learning_rate: float = 1e-3
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    weight_decay: float = 1e-4
    max_grad_norm: float | None = None
    grad_accum_steps: int = 1
    freeze_patterns: Sequence[str] = ()

    def __post_init__(self) -> None:
        if self.num_steps < 1:
            raise RunConfigError(f"schedule.num_steps: expected >= 1, got {self.num_steps}")
        if self.optimizer not in OPTIMIZERS:
            raise RunConfigError(f"schedule.optimizer: expected one of {OPTIMIZERS}, got "
                                 f"{self.optimizer!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise RunConfigError(f"schedule.lr_schedule: expected one of {LR_SCHEDULES}, got "
                                 f"{self.lr_schedule!r}")
        object.__setattr__(self, "freeze_patterns", tuple(self.freeze_patterns))


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """What is evaluated during training, and when.

    every_steps: evaluate every this many steps and at the end (0: only at the end).
    loss_batches: validation-loss batches (random chunks of `split`; 0: none).
    transcription: decode the `split` files and compute MT3's metrics ('eval/onset_f1',
      'eval/multi_instrument_f1', ...).
    split: 'validation' (or 'test' / 'train').
    max_files: decode at most this many files per evaluation (None: all).
    batch_size: segments per decoding batch (None: the training batch size).
    decode_length: tokens per decoded segment (None: the training target length).
    """

    every_steps: int = 0
    loss_batches: int = 2
    transcription: bool = True
    split: str = "validation"
    max_files: int | None = None
    batch_size: int | None = None
    decode_length: int | None = None

    def __post_init__(self) -> None:
        if self.every_steps < 0 or self.loss_batches < 0:
            raise RunConfigError(f"evaluation: need every_steps >= 0 and loss_batches >= 0, got "
                                 f"{self.every_steps} and {self.loss_batches}")
        if self.split not in EVAL_SPLITS:
            raise RunConfigError(f"evaluation.split: expected one of {EVAL_SPLITS}, got "
                                 f"{self.split!r}")

    @property
    def enabled(self) -> bool:
        """Whether anything is evaluated (a validation loss or transcription metrics)."""
        return self.transcription or self.loss_batches > 0


@dataclasses.dataclass(frozen=True)
class ReportConfig:
    """Progress reports: train scalars every `log_every_steps` steps, a progress bar with step/s
    and ETA (`show_progress`), TensorBoard event files (`tensorboard`; off avoids importing TF)."""

    log_every_steps: int = 50
    show_progress: bool = True
    tensorboard: bool = True


@dataclasses.dataclass(frozen=True)
class Mt3TrainConfig:
    """One MT3 training (or fine-tuning) run.

    workdir: the run directory (created; an existing run there is resumed).
    data, schedule, evaluation, report: the groups above.
    checkpoint: `mt3x.trainer.CheckpointOptions` (latest k, best k by a metric). Defaults here:
      keep the best checkpoint by 'eval/multi_instrument_f1' (max).
    model: an `Mt3Model` or a config name ('mt3', 'ismir2021', 'base', 'small_cpu', 'tiny').
    init_checkpoint: fine-tune from this run directory (params only, fresh optimizer state;
      ignored when `workdir` already holds a checkpoint, which is then resumed).
    num_partitions: 'model' mesh axis size (tensor parallelism).
    seed: parameter init, dropout and data order.
    nonfinite_policy: 'skip' or 'raise' on a NaN/Inf step.
    """

    workdir: str | os.PathLike
    data: DataConfig
    schedule: ScheduleConfig
    evaluation: EvalConfig = EvalConfig()
    checkpoint: CheckpointOptions = CheckpointOptions(
        keep_best=1, best_metric="eval/multi_instrument_f1", best_mode="max")
    report: ReportConfig = ReportConfig()
    model: Any = "small_cpu"
    init_checkpoint: str | os.PathLike | None = None
    num_partitions: int = 1
    seed: int = 0
    nonfinite_policy: str = "skip"

    def __post_init__(self) -> None:
        best = self.checkpoint
        if best.keep_best and not self.evaluation.enabled:
            raise RunConfigError("checkpoint.keep_best > 0 needs an evaluation "
                                 "(evaluation.transcription or evaluation.loss_batches > 0)")
        if best.keep_best and not self.evaluation.transcription and \
                best.best_metric != "eval/loss":
            raise RunConfigError(f"checkpoint.best_metric {best.best_metric!r} needs "
                                 "evaluation.transcription=True (without it only 'eval/loss' "
                                 "is computed)")
        if self.num_partitions < 1:
            raise RunConfigError(f"num_partitions: expected >= 1, got {self.num_partitions}")

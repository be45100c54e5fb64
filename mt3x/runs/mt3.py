"""Train, fine-tune and evaluate MT3 on a Slakh2100-layout dataset: the library behind
`launch/train.py`, `launch/eval.py` and `mt3x-demo`.

    >>> result = train_mt3(workdir='runs/demo', dataset_root='data/demo', model='small_cpu',
    ...                    num_steps=600, batch_size=8, optimizer='adamw', learning_rate=2e-3)
    >>> scores = evaluate_mt3(checkpoint='runs/demo', dataset_root='data/demo', split='test')
    >>> print(mt3x.transcription.metrics.format_table(scores))

Plain keyword arguments only; gin binds them at the edges (`configs/`, `mt3x/gin_registry.py`).
A run's work directory:
```
<workdir>/checkpoints/<step>/      Orbax: params, optimizer state, step, RNG, data position,
                                    operative gin config (latest + best k by a named metric)
<workdir>/mt3x_model.json          the network configuration (for inference / fine-tuning)
<workdir>/operative_config.gin     the gin config of the run (when started through gin)
<workdir>/tensorboard/, loss_curve.png
```
Fine-tuning = `init_checkpoint` (any train_mt3 workdir; params only, fresh optimizer state) plus
optionally `freeze_patterns` (regexes of parameter names, e.g. '^encoder/').
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import jax

from mt3x.errors import Mt3xError

log = logging.getLogger(__name__)

LR_SCHEDULES = ("constant", "rsqrt", "cosine")


class RunConfigError(Mt3xError):
    """Arguments of train_mt3 / evaluate_mt3 that do not fit together."""


def make_model(model: Any = "small_cpu") -> Any:
    """An `Mt3Model` from an instance or a config name ('mt3', 'small_cpu', 'tiny', ...)."""
    from mt3x.models import Mt3Model

    if isinstance(model, str):
        return Mt3Model(model)
    if not hasattr(model, "predict") or not hasattr(model, "config"):
        raise RunConfigError(f"model: expected an Mt3Model or a config name, got "
                             f"{type(model).__name__}")
    return model


def make_learning_rate(*, learning_rate: float, schedule: str = "constant",
                       warmup_steps: int = 0, decay_steps: int | None = None) -> Any:
    """A float (constant) or an optax schedule step -> lr.

    schedule: 'constant' (linear warm-up first when warmup_steps > 0), 'rsqrt' (T5: warm-up then
    lr * sqrt(warmup / step)) or 'cosine' (warm-up then cosine decay to 0 at `decay_steps`).
    """
    import optax

    from mt3x.trainer import warmup_cosine_schedule, warmup_rsqrt_schedule

    if schedule not in LR_SCHEDULES:
        raise RunConfigError(f"lr_schedule: expected one of {LR_SCHEDULES}, got {schedule!r}")
    if schedule == "rsqrt":
        return warmup_rsqrt_schedule(learning_rate, max(warmup_steps, 1))
    if schedule == "cosine":
        if decay_steps is None:
            raise RunConfigError("lr_schedule='cosine' needs decay_steps (usually num_steps)")
        return warmup_cosine_schedule(learning_rate, warmup_steps, decay_steps)
    if warmup_steps > 0:
        return optax.join_schedules(
            [optax.linear_schedule(0.0, learning_rate, warmup_steps),
             optax.constant_schedule(learning_rate)], [warmup_steps])
    return learning_rate


def demo_cpu_model() -> Any:
    """The network of configs/experiments/demo_cpu.gin: 2 + 2 layers, width 128, 4 heads x 32,
    MLP 256, no dropout, per-token mean loss, decoding up to 192 tokens (1.2 M parameters)."""
    from mt3x.models import Mt3Model, get_config

    config = get_config("small_cpu", emb_dim=128, num_heads=4, head_dim=32, mlp_dim=256,
                        dropout_rate=0.0)
    return Mt3Model(config, loss_normalization="mean", max_decode_length=192)


def demo_cpu_settings() -> dict[str, Any]:
    """`train_mt3` keyword arguments equal to configs/experiments/demo_cpu.gin (a test keeps them
    in step): `train_mt3(workdir=..., dataset_root=..., **demo_cpu_settings())`."""
    return dict(model=demo_cpu_model(), num_steps=500, batch_size=8, target_length=192,
                optimizer="adamw", learning_rate=3e-3, lr_schedule="constant", warmup_steps=50,
                weight_decay=0.0, in_memory_cache=True, eval_every_steps=250,
                eval_loss_batches=2, save_every_steps=250, keep_best=1,
                best_metric="eval/multi_instrument_f1", best_mode="max", log_every_steps=25)


def _check_split(root: Path, split: str) -> int:
    """Number of tracks in root/split; raises DatasetError (naming the folder) when empty."""
    from mt3x.data import read_split

    return len(read_split(root, split))


def register_dataset(dataset_root: str | os.PathLike, *, dataset_name: str = "slakh",
                     vocab: str = "mt3", program_source: str = "slakh_class",
                     in_memory_cache: bool = True, max_examples_per_mix: int | None = None,
                     program_granularity: str | None = None,
                     splits: Sequence[str] = ("train",)) -> dict[str, str]:
    """Registers the seqio tasks of a Slakh-layout folder after checking the needed splits.

    Returns: role -> task name ('train', 'validation', 'test', 'eval_train', 'eval').
    Raises: DatasetError naming the folder when a split in `splits` has no tracks.
    """
    from mt3x.tasks import registry as tasks

    root = Path(dataset_root)
    if not root.is_dir():
        raise RunConfigError(f"dataset_root {root} does not exist or is not a folder")
    for split in splits:
        _check_split(root, split)
    return tasks.register_slakh_tasks(
        root, name=dataset_name, vocab=vocab, program_source=program_source,
        in_memory_cache=in_memory_cache, max_examples_per_mix=max_examples_per_mix,
        program_granularity=program_granularity)


def train_mt3(
    *,
    workdir: str | os.PathLike,
    dataset_root: str | os.PathLike,
    num_steps: int,
    model: Any = "small_cpu",
    vocab: str = "mt3",
    dataset_name: str = "slakh",
    program_source: str = "slakh_class",
    batch_size: int = 8,
    target_length: int = 1024,
    max_examples_per_mix: int | None = None,
    in_memory_cache: bool = True,
    optimizer: str = "adafactor",
    learning_rate: float = 1e-3,
    lr_schedule: str = "constant",
    warmup_steps: int = 0,
    weight_decay: float = 1e-4,
    max_grad_norm: float | None = None,
    grad_accum_steps: int = 1,
    freeze_patterns: Sequence[str] = (),
    init_checkpoint: str | os.PathLike | None = None,
    eval_every_steps: int = 0,
    eval_loss_batches: int = 2,
    transcription_eval: bool = True,
    eval_split: str = "validation",
    eval_max_files: int | None = None,
    eval_batch_size: int | None = None,
    eval_decode_length: int | None = None,
    save_every_steps: int = 1000,
    keep_latest: int = 1,
    keep_best: int = 1,
    best_metric: str = "eval/multi_instrument_f1",
    best_mode: str = "max",
    num_partitions: int = 1,
    seed: int = 0,
    nonfinite_policy: str = "skip",
    log_every_steps: int = 50,
    show_progress: bool = True,
    tensorboard: bool = True,
    gin_config: str = "",
) -> Any:
    """Trains (or fine-tunes) MT3 on a Slakh2100-layout dataset; resumes a run in `workdir`.

    Args:
      workdir: the run directory (created; an existing run there is resumed).
      dataset_root: folder with train/ (validation/ for evaluation) in Slakh2100's layout.
      num_steps: train until this global step.
      model: an `Mt3Model` or a config name ('mt3', 'ismir2021', 'base', 'small_cpu', 'tiny').
      vocab: codec vocabulary, 'mt3' (1536 ids) or 'ismir2021' (1664 ids); must fit the model.
      dataset_name: seqio task-name prefix.
      program_source: 'slakh_class' (MT3's instrument-class programs) or 'midi'.
      batch_size: global batch (per host = batch_size / processes; must divide over the data
        shards of the mesh).
      target_length: decoder length; longer targets are skipped and counted (MT3: 1024).
      max_examples_per_mix: mixing augmentation of 1..N examples (None: off).
      in_memory_cache: keep tokenized tracks in memory after the first epoch (small datasets).
      optimizer: 'adafactor' (MT3's settings) or 'adamw'.
      learning_rate, lr_schedule, warmup_steps: see `make_learning_rate`.
      weight_decay, max_grad_norm: AdamW only.
      grad_accum_steps: gradient accumulation.
      freeze_patterns: regexes of parameter names that stay fixed (e.g. '^encoder/').
      init_checkpoint: fine-tune from this train_mt3 workdir (params only; ignored when
        `workdir` already holds a checkpoint, which is then resumed).
      eval_every_steps: evaluate every this many steps and at the end (0: only at the end).
      eval_loss_batches: validation-loss batches (random chunks of `eval_split`; 0: none).
      transcription_eval: decode the `eval_split` files and compute MT3's metrics
        ('eval/onset_f1', 'eval/multi_instrument_f1', ...).
      eval_split: 'validation' (or 'test' / 'train').
      eval_max_files: decode at most this many files per evaluation.
      eval_batch_size: segments per decoding batch (default batch_size).
      eval_decode_length: tokens per decoded segment (default target_length).
      save_every_steps, keep_latest: the latest checkpoints.
      keep_best, best_metric, best_mode: also keep the k best by this eval metric.
      num_partitions: 'model' mesh axis size (tensor parallelism).
      seed: parameter init, dropout and data order.
      nonfinite_policy: 'skip' or 'raise' on a NaN/Inf step.
      log_every_steps, show_progress, tensorboard: reporting.
      gin_config: the operative gin config text, saved with every checkpoint.

    Returns:
      `mt3x.trainer.TrainResult` (state, losses, eval_history, workdir).

    Raises:
      Mt3xError subclasses: missing/empty dataset splits, a batch that does not divide over the
      devices, a model that does not fit the vocabulary or the init checkpoint, ...
    """
    from mt3x.tasks import registry as tasks
    from mt3x.transcription.inference import check_vocab, save_model_spec, segment_frames
    from mt3x.trainer import CheckpointOptions, Partitioner, make_optimizer, train
    from mt3x.transcription.evaluation import TranscriptionEvaluator, load_eval_files

    mt3_model = make_model(model)
    check_vocab(mt3_model, vocab)
    if target_length > mt3_model.config.max_length:
        raise RunConfigError(f"target_length {target_length} exceeds the model's max_length "
                             f"{mt3_model.config.max_length}")
    processes = jax.process_count()
    if batch_size % processes:
        raise RunConfigError(f"batch_size {batch_size} does not divide over {processes} "
                             "processes")
    if init_checkpoint is not None and not Path(init_checkpoint).exists():
        raise RunConfigError(f"init_checkpoint {init_checkpoint} does not exist")
    evaluate = transcription_eval or eval_loss_batches > 0
    splits = ("train", eval_split) if evaluate else ("train",)
    names = register_dataset(dataset_root, dataset_name=dataset_name, vocab=vocab,
                             program_source=program_source, in_memory_cache=in_memory_cache,
                             max_examples_per_mix=max_examples_per_mix, splits=splits)
    partitioner = Partitioner(num_partitions=num_partitions)
    per_host = batch_size // processes
    lengths = {"inputs": segment_frames(vocab), "targets": int(target_length)}

    def train_batches(data_seed: int):
        return tasks.make_train_batches(
            names["train"], batch_size=per_host, seed=data_seed, feature_lengths=lengths,
            shard_index=jax.process_index(), num_shards=processes)

    eval_data = None
    if eval_loss_batches > 0:
        def eval_data():  # a fresh, identical pass at every evaluation
            return tasks.make_train_batches(
                names["train"], batch_size=per_host, seed=seed + 1, split=eval_split,
                feature_lengths=lengths, shard_index=jax.process_index(),
                num_shards=processes)

    evaluators = []
    if transcription_eval:
        eval_task = names["eval_train" if eval_split == "train" else eval_split]
        evaluators.append(TranscriptionEvaluator(
            model=mt3_model, vocab=vocab, partitioner=partitioner,
            files=lambda: load_eval_files(eval_task, max_files=eval_max_files,
                                          frames_per_segment=segment_frames(vocab)),
            batch_size=eval_batch_size or batch_size,
            max_decode_length=eval_decode_length or target_length))
    if keep_best and not evaluate:
        raise RunConfigError("keep_best > 0 needs an evaluation (transcription_eval or "
                             "eval_loss_batches > 0)")
    if keep_best and not transcription_eval and best_metric != "eval/loss":
        raise RunConfigError(f"best_metric {best_metric!r} needs transcription_eval=True "
                             "(without it only 'eval/loss' is computed)")

    lr = make_learning_rate(learning_rate=learning_rate, schedule=lr_schedule,
                            warmup_steps=warmup_steps, decay_steps=num_steps)
    tx = make_optimizer(name=optimizer, learning_rate=lr, freeze_patterns=tuple(freeze_patterns),
                        grad_accum_steps=grad_accum_steps, weight_decay=weight_decay,
                        max_grad_norm=max_grad_norm)
    workdir = Path(workdir)
    if jax.process_index() == 0:
        workdir.mkdir(parents=True, exist_ok=True)
        save_model_spec(workdir, mt3_model, vocab)
    checkpoint = CheckpointOptions(save_every_steps=save_every_steps, keep_latest=keep_latest,
                                   keep_best=keep_best, best_metric=best_metric,
                                   best_mode=best_mode)
    log.info("train_mt3: tasks %s, %s", names["train"], json.dumps(
        {"batch_size": batch_size, "num_steps": num_steps, "optimizer": optimizer,
         "learning_rate": learning_rate, "freeze": list(freeze_patterns)}))
    return train(
        model=mt3_model, train_data=train_batches, workdir=workdir, num_steps=num_steps,
        batch_size=batch_size, optimizer=tx,
        learning_rate_fn=lr if callable(lr) else None, partitioner=partitioner,
        eval_data=eval_data, evaluators=evaluators, eval_every_steps=eval_every_steps,
        eval_max_batches=eval_loss_batches if eval_loss_batches > 0 else None,
        checkpoint=checkpoint, init_params_from=init_checkpoint, seed=seed,
        nonfinite_policy=nonfinite_policy, log_every_steps=log_every_steps,
        gin_config=gin_config, show_progress=show_progress, tensorboard=tensorboard)


def evaluate_mt3(
    *,
    checkpoint: str | os.PathLike,
    dataset_root: str | os.PathLike,
    split: str = "test",
    model: Any = None,
    vocab: str | None = None,
    dataset_name: str = "slakh",
    program_source: str = "slakh_class",
    step: int | None = None,
    batch_size: int = 8,
    max_decode_length: int | None = None,
    max_files: int | None = None,
    num_partitions: int = 1,
    output_dir: str | os.PathLike | None = None,
    write_midi: bool = False,
    gin_config: str = "",
) -> dict[str, float]:
    """Transcribes every file of a split with a checkpoint and returns MT3's metrics.

    Args:
      checkpoint: a train_mt3 workdir (or its checkpoints/ or checkpoints/<step> folder).
      dataset_root: Slakh2100-layout folder.
      split: 'test', 'validation' or 'train'.
      model: an Mt3Model or config name (default: from the workdir's mt3x_model.json).
      vocab: default from the checkpoint's model spec ('mt3').
      step: checkpoint step (default: the latest).
      batch_size: segments per decoding batch.
      max_decode_length: tokens per segment (default: the model's, 1024 for MT3).
      max_files: evaluate the first N files only.
      output_dir: when given, writes metrics.json (averages and per file) and, with
        `write_midi`, one .mid and one piano-roll .png (TP/FP/FN) per file.

    Returns:
      {MT3 metric name: value averaged over files} (`mt3x.transcription.metrics.format_table` prints it),
      plus 'Invalid events', 'Dropped events', 'Estimated notes' (per file) and 'Files'.
    """
    from mt3x.util.files import atomic_path
    from mt3x.transcription.inference import load_model_and_params, segment_frames
    from mt3x.trainer import Partitioner
    from mt3x.transcription.evaluation import TranscriptionEvaluator, load_eval_files

    partitioner = Partitioner(num_partitions=num_partitions)
    mt3_model = make_model(model) if model is not None else None
    mt3_model, params, vocab, step = load_model_and_params(
        checkpoint, model=mt3_model, vocab=vocab, step=step, partitioner=partitioner,
        max_decode_length=max_decode_length)
    names = register_dataset(dataset_root, dataset_name=dataset_name, vocab=vocab,
                             program_source=program_source, in_memory_cache=False,
                             splits=(split,))
    task = names["eval_train" if split == "train" else split]
    evaluator = TranscriptionEvaluator(
        model=mt3_model, vocab=vocab, partitioner=partitioner, batch_size=batch_size,
        files=load_eval_files(task, max_files=max_files,
                              frames_per_segment=segment_frames(vocab)))
    scores = evaluator.scores(params)
    scores["Files"] = float(len(evaluator.last_results))
    if output_dir is not None and jax.process_index() == 0:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        report = {"checkpoint": str(checkpoint), "step": step, "split": split,
                  "averages": scores, "gin_config": gin_config,
                  "files": {r.file.file_id: r.metrics for r in evaluator.last_results}}
        with atomic_path(out / "metrics.json") as tmp:
            tmp.write_text(json.dumps(report, indent=1) + "\n")
        if write_midi:
            from mt3x.transcription.midi_output import write_midi as write_midi_file
            from mt3x.transcription.pianoroll import plot_transcription

            for r in evaluator.last_results:
                stem = r.file.file_id.replace("/", "_")
                write_midi_file(r.estimate, out / f"{stem}.mid")
                plot_transcription(r.file.reference, r.estimate, out / f"{stem}.png",
                                   title=f"{r.file.file_id} (step {step})")
    return scores

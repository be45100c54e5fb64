"""The seqio / tf.data input of an MT3 run (`DataConfig.input_pipeline = 'seqio'`).

Registers the dataset's seqio tasks and gives the run its training batches (replayed from a
seed to resume), validation-loss batches and transcription-evaluation files. Imports TensorFlow
and seqio; `mt3x.runs.train.select_input` imports this module only for a seqio run, and a Grain
run uses `mt3x.runs.grain_input` instead.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import jax

from mt3x.audio.mt3_config import MT3_SPECTROGRAM_CONFIG
from mt3x.data import read_split
from mt3x.runs.config import DataConfig, Mt3TrainConfig, RunConfigError
from mt3x.tasks import registry as tasks
from mt3x.transcription.evaluation import EvalFile, EvaluationError, group_segments
from mt3x.transcription.segments import segment_frames

Batches = Iterable[dict[str, Any]]


def register_dataset(dataset_root: str | os.PathLike, *, dataset_name: str = "slakh",
                     vocab: str = "mt3", program_source: str = "slakh_class",
                     in_memory_cache: bool = True, max_examples_per_mix: int | None = None,
                     program_granularity: str | None = None,
                     splits: Sequence[str] = ("train",)) -> dict[str, str]:
    """Registers the seqio tasks of a Slakh-layout folder after checking the needed splits.

    Returns: role -> task name ('train', 'validation', 'test', 'eval_train', 'eval').
    Raises: RunConfigError when the folder is missing; DatasetError naming the folder when a
      split in `splits` has no tracks.
    """
    root = Path(dataset_root)
    if not root.is_dir():
        raise RunConfigError(f"dataset_root {root} does not exist or is not a folder")
    for split in splits:
        read_split(root, split)  # raises DatasetError naming the folder when empty
    return tasks.register_slakh_tasks(
        root, name=dataset_name, vocab=vocab, program_source=program_source,
        in_memory_cache=in_memory_cache, max_examples_per_mix=max_examples_per_mix,
        program_granularity=program_granularity)


def eval_task_name(names: dict[str, str], split: str) -> str:
    """The inference-evaluation task of `split` among `register_dataset`'s names."""
    return names["eval_train" if split == "train" else split]


def load_eval_files(task_name: str, *, split: str = "eval", max_files: int | None = None,
                    frames_per_segment: int = MT3_SPECTROGRAM_CONFIG.frames_per_segment
                    ) -> list[EvalFile]:
    """The files of a registered seqio inference-evaluation task (see `group_segments`).

    Raises:
      EvaluationError: the task yields no files.
    """
    files = group_segments(tasks.eval_segments(task_name, split), max_files=max_files,
                           frames_per_segment=frames_per_segment)
    if not files:
        raise EvaluationError(f"eval task {task_name!r} (split {split!r}) has no files")
    return files


def train_batches(data: DataConfig, task: str, seed: int, *, split: str = "train") -> Batches:
    """This host's share of the batches of `task`'s `split` in a seeded order: dicts of numpy
    arrays (raw audio frames float32[batch / processes, frames, 128], target tokens
    int32[batch / processes, target_length], ...)."""
    processes = jax.process_count()
    lengths = {"inputs": segment_frames(data.vocab), "targets": int(data.target_length)}
    return tasks.make_train_batches(
        task, batch_size=data.batch_size // processes, seed=seed, split=split,
        feature_lengths=lengths, shard_index=jax.process_index(), num_shards=processes)


class SeqioRunInput:
    """The seqio tasks of `config.data.dataset_root` (registered when made).

    Attributes:
      names: role -> task name ('train', 'validation', 'eval_train', ...).
    """

    kind = "seqio"

    def __init__(self, config: Mt3TrainConfig) -> None:
        self.config = config
        data = config.data
        splits = ("train", config.evaluation.split) if config.evaluation.enabled else ("train",)
        self.names = register_dataset(
            data.dataset_root, dataset_name=data.dataset_name, vocab=data.vocab,
            program_source=data.program_source, in_memory_cache=data.in_memory_cache,
            max_examples_per_mix=data.max_examples_per_mix, splits=splits)

    @property
    def description(self) -> str:
        return f"seqio task {self.names['train']}"

    def train_data(self) -> Callable[[int], Batches]:
        """seed -> this host's training batches (the trainer replays it to resume)."""
        return functools.partial(train_batches, self.config.data, self.names["train"])

    def eval_batches(self) -> Callable[[], Batches] | None:
        """A fresh, identical pass of validation-loss batches per call (None when
        `evaluation.loss_batches` is 0)."""
        if self.config.evaluation.loss_batches <= 0:
            return None
        return functools.partial(train_batches, self.config.data, self.names["train"],
                                 self.config.seed + 1, split=self.config.evaluation.split)

    def eval_files(self) -> Callable[[], list[EvalFile]]:
        """Loads the files of `evaluation.split` for transcription metrics (when called)."""
        evaluation = self.config.evaluation
        return functools.partial(load_eval_files, eval_task_name(self.names, evaluation.split),
                                 max_files=evaluation.max_files,
                                 frames_per_segment=segment_frames(self.config.data.vocab))

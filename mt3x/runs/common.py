"""The steps MT3 training and evaluation share: the model from a name, and the dataset's seqio
tasks after checking that the needed splits hold tracks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from mt3x.data import read_split
from mt3x.models import Mt3Model
from mt3x.runs.config import RunConfigError
from mt3x.tasks import registry as tasks


def make_model(model: Any = "small_cpu") -> Any:
    """An `Mt3Model` from an instance or a config name ('mt3', 'small_cpu', 'tiny', ...)."""
    if isinstance(model, str):
        return Mt3Model(model)
    if not hasattr(model, "predict") or not hasattr(model, "config"):
        raise RunConfigError(f"model: expected an Mt3Model or a config name, got "
                             f"{type(model).__name__}")
    return model


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

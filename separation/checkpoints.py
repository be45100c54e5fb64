"""What a separator checkpoint carries to rebuild its model: `separator.json` beside the trainer's
`checkpoints/` folder, and loading (settings + Orbax params) from such a directory.

A separator run directory (one `mt3x.trainer.train` workdir) looks like
```
<dir>/separator.json        {"format": 1, "kind": "dnn" | "unet", "settings": {...Model fields},
                             "instrument_groups": [{name, programs, classes, stem_names, drums}]}
<dir>/checkpoints/<step>/   Orbax checkpoints written by mt3x.trainer (params used here)
<dir>/operative_config.gin  when the run was started from gin (launch/separation_train.py)
```
`save_params_checkpoint` writes a step-0 checkpoint of given params (the least-squares-initialised
DNN, which has no gradient step and so no trainer run) in the same layout.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Sequence

import jax
import numpy as np
import optax

from mt3x import trainer
from mt3x.data.instrument_groups import InstrumentGroup, groups_from_json, groups_to_json
from mt3x.errors import Mt3xError
from mt3x.util.files import atomic_path
from separation.model_objects import DNNSeparator, UNetSeparator

SEPARATOR_FILE = "separator.json"
FORMAT_VERSION = 1
_KINDS = {"dnn": DNNSeparator, "unet": UNetSeparator}

Separator = DNNSeparator | UNetSeparator


class SeparatorCheckpointError(Mt3xError):
    """A separator checkpoint directory is missing, partial or does not describe a separator."""


def model_kind(model: Separator) -> str:
    for kind, cls in _KINDS.items():
        if isinstance(model, cls):
            return kind
    raise Mt3xError(f"not a separator Model: {type(model).__name__}")


def model_settings(model: Separator) -> dict[str, Any]:
    """The model's dataclass fields as JSON values (`initial_params` left out)."""
    out = {}
    for field in dataclasses.fields(model):
        if field.name == "initial_params":
            continue
        value = getattr(model, field.name)
        out[field.name] = list(value) if isinstance(value, tuple) else value
    return out


def write_separator_json(directory: str | os.PathLike, model: Separator,
                         groups: Sequence[InstrumentGroup] | None = None) -> Path:
    """Writes `<directory>/separator.json` atomically; returns its path."""
    doc = {"format": FORMAT_VERSION, "kind": model_kind(model), "settings": model_settings(model)}
    if groups is not None:
        doc["instrument_groups"] = groups_to_json(groups)
    path = Path(directory) / SEPARATOR_FILE
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
    return path


@dataclasses.dataclass(frozen=True)
class SeparatorInfo:
    """Parsed `separator.json`: the model (without params) and its instrument groups (or None)."""
    model: Separator
    groups: tuple[InstrumentGroup, ...] | None
    path: Path


def read_separator_json(directory: str | os.PathLike) -> SeparatorInfo:
    """Parses `<directory>/separator.json`. Raises SeparatorCheckpointError naming the file."""
    directory = Path(directory)
    path = directory / SEPARATOR_FILE
    if not directory.is_dir():
        raise SeparatorCheckpointError(f"checkpoint directory {directory} does not exist")
    if not path.is_file():
        raise SeparatorCheckpointError(
            f"{path} not found: --checkpoint must be a separator run directory written by "
            "separation training (launch/separation_train.py), holding separator.json and "
            "checkpoints/")
    try:
        doc = json.loads(path.read_text())
        kind, settings = doc["kind"], dict(doc["settings"])
    except (ValueError, KeyError, TypeError) as err:
        raise SeparatorCheckpointError(f"{path}: not a separator description ({err}); expected "
                                       "JSON with 'kind' and 'settings'") from None
    if kind not in _KINDS:
        raise SeparatorCheckpointError(f"{path}: field 'kind' is {kind!r}; expected one of "
                                       f"{sorted(_KINDS)}")
    cls = _KINDS[kind]
    known = {f.name for f in dataclasses.fields(cls)} - {"initial_params"}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise SeparatorCheckpointError(f"{path}: unknown settings {unknown} for a {kind} separator")
    for key in ("instruments", "channels"):
        if key in settings:
            settings[key] = tuple(settings[key])
    return SeparatorInfo(cls(**settings), groups_from_json(doc.get("instrument_groups")), path)


def _example_batch(model: Separator, seconds: float = 1.0) -> dict[str, np.ndarray]:
    samples = int(seconds * model.sample_rate)
    return {"mixture": np.zeros((1, samples), np.float32),
            "sources": np.zeros((1, len(model.instruments), samples), np.float32)}


def load_separator(directory: str | os.PathLike, step: int | None = None
                   ) -> tuple[Separator, Any, SeparatorInfo]:
    """(model, host params, info) from a separator run directory (latest committed step).

    Raises SeparatorCheckpointError (missing/partial checkpoint, or one that does not fit the
    settings in separator.json).
    """
    info = read_separator_json(directory)
    model = info.model
    partitioner = trainer.Partitioner()
    abstract = partitioner.abstract_params(model.init, _example_batch(model))
    try:
        params = trainer.restore_params(Path(directory), abstract, step)
    except trainer.TrainerError as err:
        raise SeparatorCheckpointError(f"cannot restore separator params: {err}") from None
    return model, jax.tree.map(np.asarray, jax.device_get(params)), info


def save_params_checkpoint(directory: str | os.PathLike, model: Separator, params: Any, *,
                           groups: Sequence[InstrumentGroup] | None = None, seed: int = 0
                           ) -> Path:
    """Writes `params` as a committed step-0 trainer checkpoint plus separator.json."""
    directory = Path(directory)
    partitioner = trainer.Partitioner()
    bare = dataclasses.replace(model, initial_params=None) if isinstance(model, DNNSeparator) \
        else model
    state = trainer.create_train_state(model=bare, optimizer=optax.identity(),
                                       partitioner=partitioner, batch=_example_batch(bare),
                                       seed=seed, params=params)
    checkpointer = trainer.Checkpointer(directory / "checkpoints",
                                        trainer.CheckpointOptions(async_save=False))
    try:
        checkpointer.save(state, data_state={}, meta={"note": "parameters saved without training"})
        checkpointer.wait()
    finally:
        checkpointer.close()
    write_separator_json(directory, bare, groups)
    return directory

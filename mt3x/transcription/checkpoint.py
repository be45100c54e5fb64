"""Which network a checkpoint holds, and its params restored for inference.

    >>> model, params, vocab, step = load_model_and_params('runs/demo')   # a train_mt3 workdir

A checkpoint is a `train_mt3` work directory (or its `checkpoints/` folder, or one
`checkpoints/<step>` folder): the model's configuration is read from `mt3x_model.json` beside
the checkpoints (written by `save_model_spec`), the params are restored by the trainer's Orbax
`Checkpointer` onto a `Partitioner`'s mesh. This is the checkpoint side of transcription: it
imports the model code and the trainer, which the bundle runtime (`mt3x.bundles.mt3_runtime`)
never imports.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

from mt3x import codec
from mt3x.audio.mt3_config import MT3_SPECTROGRAM_CONFIG
from mt3x.models import Mt3Model, T5Config
from mt3x.plugins import KNOWN_BUNDLE_KINDS
from mt3x.trainer import Partitioner
from mt3x.trainer.checkpoints import Checkpointer
from mt3x.transcription.errors import TranscriptionError
from mt3x.transcription.segments import segment_frames
from mt3x.util.files import atomic_path

MODEL_SPEC_FILE = "mt3x_model.json"
MODEL_SPEC_FORMAT = "mt3x-model/1"


def model_spec(model: Any, vocab: str) -> dict[str, Any]:
    """The JSON-able description of an `Mt3Model` that `model_from_spec` rebuilds."""
    return {"format": MODEL_SPEC_FORMAT, "vocab": vocab,
            "config": dataclasses.asdict(model.config), "inputs": model.inputs,
            "z_loss": model.z_loss, "label_smoothing": model.label_smoothing,
            "loss_normalization": model.loss_normalization,
            "max_decode_length": model.max_decode_length}


def save_model_spec(workdir: str | os.PathLike, model: Any, vocab: str) -> Path:
    """Writes `<workdir>/mt3x_model.json` (atomically); returns its path."""
    path = Path(workdir) / MODEL_SPEC_FILE
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(model_spec(model, vocab), indent=1) + "\n")
    return path


def model_from_spec(spec: dict[str, Any], *, max_decode_length: int | None = None,
                    source: str = "model spec") -> tuple[Mt3Model, str]:
    """(Mt3Model, vocab name) from a `model_spec` dict; `source` names the file in errors."""
    if not isinstance(spec, dict) or spec.get("format") != MODEL_SPEC_FORMAT:
        raise TranscriptionError(f"{source}: not an mt3x model spec (expected 'format': "
                                 f"{MODEL_SPEC_FORMAT!r})")
    try:
        config = T5Config(**spec["config"])
        model = Mt3Model(config, inputs=spec["inputs"], z_loss=spec["z_loss"],
                         label_smoothing=spec["label_smoothing"],
                         loss_normalization=spec["loss_normalization"],
                         max_decode_length=max_decode_length or spec["max_decode_length"])
    except (KeyError, TypeError) as err:
        raise TranscriptionError(f"{source}: malformed model spec ({err!r})") from err
    return model, str(spec["vocab"])


def check_vocab(model: Any, vocab: str) -> None:
    """Raises TranscriptionError unless the model's logit width fits the codec vocabulary."""
    try:
        width = codec.get_config(vocab).vocabulary.num_embeddings
    except (KeyError, ValueError) as err:
        raise TranscriptionError(f"vocab {vocab!r} is unknown: {err}") from err
    if model.config.vocab_size != width:
        raise TranscriptionError(
            f"model vocab_size {model.config.vocab_size} does not match the {vocab!r} "
            f"vocabulary ({width} ids); use vocab='ismir2021' with 1664 or 'mt3' with 1536")


def resolve_checkpoint(checkpoint: str | os.PathLike) -> tuple[Path, Path, int | None]:
    """(run workdir, checkpoints dir, step or None for the latest) of a checkpoint path.

    Accepts a `train_mt3` workdir, its `checkpoints/` folder or one `checkpoints/<step>` folder.
    """
    path = Path(checkpoint).absolute()
    if not path.exists():
        raise TranscriptionError(f"checkpoint {path} does not exist")
    if not path.is_dir():
        raise TranscriptionError(f"checkpoint {path} is a file; expected a train_mt3 work "
                                 "directory (holding checkpoints/ and mt3x_model.json)")
    if (path / "checkpoints").is_dir():
        return _refuse_other_kind(path), path / "checkpoints", None
    if path.name.isdigit() and (path / "state").exists():
        return _refuse_other_kind(path.parent.parent), path.parent, int(path.name)
    if any(child.name.isdigit() for child in path.iterdir()):
        return _refuse_other_kind(path.parent), path, None
    raise TranscriptionError(
        f"checkpoint {path} holds no checkpoints (expected checkpoints/<step>/ as written by "
        "train_mt3 / launch/train.py)")


def _refuse_other_kind(workdir: Path) -> Path:
    """`workdir`, unless it is the run of another model family (e.g. a separator run, which
    holds separator.json): then a TranscriptionError that says so."""
    for known in KNOWN_BUNDLE_KINDS:
        marker = workdir / known.marker
        if known.marker and marker.is_file():
            raise TranscriptionError(
                f"{workdir}: this is a {known.name} run (it holds {known.marker}), not an MT3 "
                f"transcription checkpoint; use it with mt3x-separate --checkpoint {workdir}, "
                "or pass a train_mt3 work directory")
    return workdir


def load_model_and_params(checkpoint: str | os.PathLike, *, model: Any = None,
                          vocab: str | None = None, step: int | None = None,
                          partitioner: Partitioner | None = None,
                          max_decode_length: int | None = None
                          ) -> tuple[Mt3Model, Any, str, int]:
    """Restores a checkpoint's params for inference.

    Args:
      checkpoint: a train_mt3 workdir, its checkpoints/ folder, or one checkpoints/<step>.
      model: an `Mt3Model` (default: rebuilt from `mt3x_model.json` in the workdir).
      vocab: 'mt3' or 'ismir2021' (default: from the spec, else 'mt3').
      step: a committed step (default: the latest, or the step of a step folder).
      partitioner: mesh for the params (default: all devices, data parallel).
      max_decode_length: overrides the model's decode length.

    Returns:
      (model, params (sharded, unboxed), vocab, step).

    Raises:
      TranscriptionError / CheckpointError: missing, partial or mismatching checkpoint.
    """
    workdir, ckpt_dir, step_in_path = resolve_checkpoint(checkpoint)
    step = step if step is not None else step_in_path
    spec_path = workdir / MODEL_SPEC_FILE
    if model is None:
        if not spec_path.is_file():
            raise TranscriptionError(
                f"checkpoint {workdir} has no {MODEL_SPEC_FILE}, so its model configuration is "
                "unknown; pass the model explicitly (e.g. --model_config small_cpu)")
        try:
            spec = json.loads(spec_path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise TranscriptionError(f"{spec_path}: unreadable model spec ({err})") from err
        model, spec_vocab = model_from_spec(spec, max_decode_length=max_decode_length,
                                            source=str(spec_path))
        vocab = vocab or spec_vocab
    elif max_decode_length:
        model = replace_model(model, max_decode_length=max_decode_length)
    vocab = vocab or "mt3"
    check_vocab(model, vocab)
    partitioner = partitioner or Partitioner()
    frames = (partitioner.data_size, segment_frames(vocab), MT3_SPECTROGRAM_CONFIG.hop_width)
    shapes = {"encoder_input_tokens": jax.ShapeDtypeStruct(frames, np.float32)}
    abstract = partitioner.abstract_params(model.init, shapes)
    checkpointer = Checkpointer(ckpt_dir, read_only=True)
    try:
        # Clear errors: empty, partial, shape; the newest intact step when `step` is None.
        params, step = checkpointer.restore_params_and_step(abstract, step)
    finally:
        checkpointer.close()
    return model, params, vocab, step


def replace_model(model: Mt3Model, **changes: Any) -> Mt3Model:
    """A copy of an `Mt3Model` with constructor arguments replaced (e.g. max_decode_length)."""
    kwargs = dict(inputs=model.inputs, z_loss=model.z_loss,
                  label_smoothing=model.label_smoothing,
                  loss_normalization=model.loss_normalization,
                  max_decode_length=model.max_decode_length, decoder=model.decoder,
                  logical_axis_rules=model.logical_axis_rules)
    kwargs.update(changes)
    return Mt3Model(model.config, **kwargs)

"""What MT3 training and evaluation share: the model from a name (no TensorFlow; the seqio
tasks of a dataset are registered by `mt3x.runs.seqio_input`)."""

from __future__ import annotations

from typing import Any

from mt3x.models import Mt3Model
from mt3x.runs.config import RunConfigError


def make_model(model: Any = "small_cpu") -> Any:
    """An `Mt3Model` from an instance or a config name ('mt3', 'small_cpu', 'tiny', ...)."""
    if isinstance(model, str):
        return Mt3Model(model)
    if not hasattr(model, "predict") or not hasattr(model, "config"):
        raise RunConfigError(f"model: expected an Mt3Model or a config name, got "
                             f"{type(model).__name__}")
    return model

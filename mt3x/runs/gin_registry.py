"""The gin names of mt3x's library functions and classes (gin at the edges only).

Gin files (`configs/`) start with `import mt3x.runs.gin_registry`, which registers the configurables
below under their module's name, e.g. `mt3x.train_mt3.batch_size = 8` or
`mt3x.models.Mt3Model.z_loss = 1e-4`. Library code never imports gin; entry points (`launch/`,
`mt3x/cli/`) call the configured versions exported here (`train_mt3`, `evaluate_mt3`,
`transcribe_files`), which read their arguments from the parsed config.
"""

from __future__ import annotations

import gin

from mt3x.transcription import inference

from mt3x.runs import mt3 as run_training
from mt3x import models as _models
from mt3x import trainer as _trainer


def _register(fn, name: str, module: str):
    """Registers `fn` as `module.name` unless an earlier import already did."""
    try:
        return gin.external_configurable(fn, name, module=module)
    except ValueError:  # re-import (e.g. importlib.reload): reuse the registration
        return gin.get_configurable(f"{module}.{name}")


# Models.
Mt3Model = _register(_models.Mt3Model, "Mt3Model", "mt3x.models")
get_config = _register(_models.get_config, "get_config", "mt3x.models")

# Trainer pieces (for configs that build an optimizer or partitioner explicitly).
make_optimizer = _register(_trainer.make_optimizer, "make_optimizer", "mt3x.trainer")
Partitioner = _register(_trainer.Partitioner, "Partitioner", "mt3x.trainer")
CheckpointOptions = _register(_trainer.CheckpointOptions, "CheckpointOptions", "mt3x.trainer")

# Runs.
train_mt3 = _register(run_training.train_mt3, "train_mt3", "mt3x")
evaluate_mt3 = _register(run_training.evaluate_mt3, "evaluate_mt3", "mt3x")
transcribe_files = _register(inference.transcribe_files, "transcribe_files", "mt3x")

__all__ = ["CheckpointOptions", "Mt3Model", "Partitioner", "evaluate_mt3", "get_config",
           "make_optimizer", "train_mt3", "transcribe_files"]

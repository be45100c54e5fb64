"""The gin names of mt3x's library functions and classes (gin at the edges only).

Gin files (`configs/`) start with `import mt3x.runs.gin_registry`, which registers the configurables
below under their module's name, e.g. `mt3x.runs.DataConfig.batch_size = 8` or
`mt3x.models.Mt3Model.z_loss = 1e-4`. Library code never imports gin; entry points (`launch/`,
`mt3x/cli/`) call the configured versions exported here (`train_mt3`, `evaluate_mt3`,
`transcribe_files`), which read their arguments from the parsed config, or
`load_train_config` for the `Mt3TrainConfig` a gin file describes.
"""

from __future__ import annotations

import os
from typing import Sequence

import gin

from mt3x import models as _models
from mt3x import trainer as _trainer
from mt3x.runs import config as _config
from mt3x.runs import evaluate as _evaluate
from mt3x.runs import train as _train
from mt3x.runs.gin_utils import parse_gin
from mt3x.transcription import decoder as _decoder
from mt3x.transcription import files as _files


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

# The MT3 training configuration (configs/runs/train.gin).
Mt3TrainConfig = _register(_config.Mt3TrainConfig, "Mt3TrainConfig", "mt3x.runs")
DataConfig = _register(_config.DataConfig, "DataConfig", "mt3x.runs")
ScheduleConfig = _register(_config.ScheduleConfig, "ScheduleConfig", "mt3x.runs")
EvalConfig = _register(_config.EvalConfig, "EvalConfig", "mt3x.runs")
ReportConfig = _register(_config.ReportConfig, "ReportConfig", "mt3x.runs")

# Runs.
train_mt3 = _register(_train.train_mt3, "train_mt3", "mt3x")
evaluate_mt3 = _register(_evaluate.evaluate_mt3, "evaluate_mt3", "mt3x")
transcribe_files = _register(_files.transcribe_files, "transcribe_files", "mt3x")
load_transcriber = _register(_decoder.load_transcriber, "load_transcriber", "mt3x")


def load_train_config(gin_files: Sequence[str | os.PathLike],
                      bindings: Sequence[str] = ()) -> tuple[_config.Mt3TrainConfig, str]:
    """(the `Mt3TrainConfig` the gin files bind, the operative config text) after clearing gin and
    parsing `gin_files` then `bindings` (`configs/runs/train.gin` and what includes it).

    Raises:
      GinConfigError: a file or binding gin rejects. RunConfigError: settings that do not fit.
    """
    gin.clear_config()
    text = parse_gin(gin_files, bindings)
    return Mt3TrainConfig(), text


__all__ = ["CheckpointOptions", "DataConfig", "EvalConfig", "Mt3Model", "Mt3TrainConfig",
           "Partitioner", "ReportConfig", "ScheduleConfig", "evaluate_mt3", "get_config",
           "load_train_config", "load_transcriber", "make_optimizer", "train_mt3",
           "transcribe_files"]

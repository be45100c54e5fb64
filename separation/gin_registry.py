"""The gin names of the separation library (gin at the edges only).

Gin files under `configs/separation/` start with `import separation.gin_registry`, which registers
`separation.ExperimentConfig` (all training/evaluation settings) and `separation.train_separators`
(training, bound by `launch/separation_train.py`). Library code never imports gin.
"""

from __future__ import annotations

import gin

from separation import experiment


def _register(fn, name: str, module: str):
    """Registers `fn` as `module.name` unless an earlier import already did."""
    try:
        return gin.external_configurable(fn, name, module=module)
    except ValueError:  # re-import: reuse the registration
        return gin.get_configurable(f"{module}.{name}")


ExperimentConfig = _register(experiment.ExperimentConfig, "ExperimentConfig", "separation")
train_separators = _register(experiment.train_separators, "train_separators", "separation")

__all__ = ["ExperimentConfig", "train_separators"]

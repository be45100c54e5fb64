"""Errors the trainer raises for problems a user can cause (bad configs, data, checkpoints)."""

from __future__ import annotations

from mt3x.errors import Mt3xError


class TrainerError(Mt3xError):
    """A training run cannot start or continue because of its configuration or inputs."""


class ShardingError(TrainerError):
    """The device count, mesh shape and batch size do not fit together."""


class NonFiniteLossError(TrainerError):
    """A train step produced a NaN or Inf loss or gradient and the policy is 'raise'."""


class CheckpointError(TrainerError):
    """A checkpoint directory is missing, partial (never committed), or holds another model."""

"""Fixtures of the launcher tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from launch_helpers import SHOW_ENV


@pytest.fixture
def show_env(tmp_path) -> Path:
    """A script printing the JAX_* / XLA_FLAGS / CUDA_VISIBLE* variables it sees, as JSON."""
    path = tmp_path / "show_env.py"
    path.write_text(SHOW_ENV)
    return path

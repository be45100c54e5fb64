"""Shared by the launcher tests: paths, a script that reports its JAX environment, and
subprocess helpers."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LAUNCH = REPO / "launch"
# A script that reports what a launched process sees.
SHOW_ENV = ("import json, os\nprint(json.dumps({k: v for k, v in os.environ.items() "
            "if k.startswith(('JAX_', 'XLA_FLAGS', 'CUDA_VISIBLE'))}))\n")


def run(argv, **kwargs) -> subprocess.CompletedProcess:
    """Runs `argv` in the repository with a 120 s limit, capturing text output."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=REPO, **kwargs)


def executable(path: Path, text: str) -> Path:
    """Writes `text` to `path` and makes it executable."""
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path

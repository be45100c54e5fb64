"""Gin at the edges: parsing config files and command-line bindings with clear errors.

Only entry points (`launch/`, `mt3x/cli/`) call this; library code takes keyword arguments.
"""

from __future__ import annotations

import importlib.util  # noqa: F401  (gin-config 0.5 on Python 3.11 needs it imported before parsing)
import os
from pathlib import Path
from typing import Sequence

import gin

from mt3x.errors import Mt3xError

CONFIG_ROOT = Path(__file__).resolve().parent.parent / "configs"


class GinConfigError(Mt3xError):
    """A gin file or binding names something that does not exist, or does not parse."""


def resolve_gin_file(name: str | os.PathLike) -> Path:
    """Finds a gin file given as a path, or relative to the repository's `configs/` folder."""
    path = Path(name)
    for candidate in (path, CONFIG_ROOT / path, CONFIG_ROOT / f"{path}.gin"):
        if candidate.is_file():
            return candidate
    raise GinConfigError(f"gin file not found: {name} (looked in . and {CONFIG_ROOT})")


def parse_gin(gin_files: Sequence[str | os.PathLike], bindings: Sequence[str] = ()) -> str:
    """Parses gin files then bindings (later ones win); returns the config text as parsed.

    Raises:
      GinConfigError: naming the file (or binding) and line when gin rejects it, e.g. a typo in a
        parameter name or an unknown configurable.
    """
    gin.add_config_file_search_path(str(CONFIG_ROOT))
    files = [str(resolve_gin_file(f)) for f in gin_files]
    try:
        gin.parse_config_files_and_bindings(files, list(bindings), finalize_config=False)
    except (ValueError, SyntaxError, KeyError, ImportError) as err:
        raise GinConfigError(f"invalid gin configuration: {err}") from err
    return gin.config_str()

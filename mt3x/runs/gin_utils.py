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

CONFIG_ROOT = Path(__file__).resolve().parents[2] / "configs"  # the repository's configs/


class GinConfigError(Mt3xError):
    """A gin file or binding names something that does not exist, or does not parse."""


def resolve_gin_file(name: str | os.PathLike) -> Path:
    """Finds a gin file given as a path, or relative to the repository's `configs/` folder."""
    path = Path(name)
    for candidate in (path, CONFIG_ROOT / path, CONFIG_ROOT / f"{path}.gin"):
        if candidate.is_file():
            return candidate.absolute()
    raise GinConfigError(f"gin file not found: {name} (looked in . and {CONFIG_ROOT})")


def _search_configs_first() -> None:
    """Makes gin look for `include`d files in `configs/` before anywhere else.

    gin tries each search prefix ('' first) with each file reader; its package-resource reader
    fails with a TypeError (instead of answering "not found") when the include's first folder
    is importable as a namespace package, e.g. a `runs/` work directory in the current folder
    for `include 'runs/train.gin'`. Searching configs/ first finds the file before that reader
    is asked. gin has no public way to order the prefixes, hence its module-level list.
    """
    prefixes = gin.config._LOCATION_PREFIXES
    if prefixes[:1] != [str(CONFIG_ROOT)]:
        if str(CONFIG_ROOT) in prefixes:
            prefixes.remove(str(CONFIG_ROOT))
        prefixes.insert(0, str(CONFIG_ROOT))


def parse_gin(gin_files: Sequence[str | os.PathLike], bindings: Sequence[str] = ()) -> str:
    """Parses gin files then bindings (later ones win); returns the config text as parsed.

    Raises:
      GinConfigError: naming the file (or binding) and line when gin rejects it, e.g. a typo in a
        parameter name or an unknown configurable.
    """
    _search_configs_first()
    files = [str(resolve_gin_file(f)) for f in gin_files]
    try:
        gin.parse_config_files_and_bindings(files, list(bindings), finalize_config=False)
    except (ValueError, SyntaxError, KeyError, ImportError) as err:
        raise GinConfigError(f"invalid gin configuration: {err}") from err
    return gin.config_str()

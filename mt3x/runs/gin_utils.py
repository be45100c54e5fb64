"""Gin at the edges: parsing config files and command-line bindings with clear errors.

Only entry points (`launch/`, `mt3x/cli/`) call this; library code takes keyword arguments.
"""

from __future__ import annotations

import difflib
import importlib.util  # noqa: F401  (gin-config 0.5 on Python 3.11 needs it imported before parsing)
import inspect
import os
import re
from pathlib import Path
from typing import Iterable, Sequence

import gin
from gin import config_parser

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
    where = ", ".join(files) or "the command line"
    try:
        gin.parse_config_files_and_bindings(files, [], finalize_config=False)
    except (ValueError, SyntaxError, KeyError, ImportError) as err:
        raise GinConfigError(f"invalid gin configuration: {err}") from err
    check_macro_bindings(bindings, defined_macros(), where=where)
    try:
        gin.parse_config_files_and_bindings([], list(bindings), finalize_config=False)
    except (ValueError, SyntaxError, KeyError, ImportError) as err:
        raise GinConfigError(f"invalid gin configuration: {err}{_suggestion(str(err))}") from err
    return gin.config_str()


def defined_macros() -> set[str]:
    """Names of the macros bound so far (`NAME = value` in the parsed files)."""
    return {scope for scope, selector in gin.config._CONFIG if selector == "gin.macro"}


def check_macro_bindings(bindings: Iterable[str], known: set[str], *, where: str) -> None:
    """Refuses a binding of a macro that no parsed gin file defines (`--gin.TRAIN_STEPZ=2`
    would otherwise define a new, unused macro and run the default), naming the closest ones.

    Raises:
      GinConfigError: '<gin files>: unknown macro NAME (binding ...); did you mean ...?'.
    """
    for binding in bindings:
        try:
            statement = next(iter(config_parser.ConfigParser(binding,
                                                             gin.config.ParserDelegate())))
        except (ValueError, SyntaxError, StopIteration):
            continue  # not parseable: gin reports it, naming the binding
        if not isinstance(statement, config_parser.BindingStatement) or statement.arg_name:
            continue  # a configurable's parameter: gin checks those against the signature
        name = statement.selector
        if statement.scope or name in known:
            continue
        raise GinConfigError(
            f"{where}: unknown macro {name!r} (binding {binding.strip()!r}): no gin file defines "
            f"it, so it would change nothing{_closest(name, known)}")


def _closest(name: str, candidates: Iterable[str]) -> str:
    """'; did you mean A or B?' for the closest candidate names ('' when none is close)."""
    close = difflib.get_close_matches(name, sorted(candidates), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(close)}?" if close else ""


def _suggestion(message: str) -> str:
    """Closest known names for gin's 'No configurable matching' / 'doesn't have a parameter'."""
    match = re.search(r"No configurable matching '([^']+)'", message)
    if match:
        names = [selector for selector, _ in gin.config._REGISTRY.items()]
        return _closest(match.group(1), names)
    match = re.search(r"Configurable '([^']+)' doesn't have a parameter named '([^']+)'", message)
    if match:
        try:
            target = gin.config._REGISTRY.get_match(match.group(1)).wrapped
            params = inspect.signature(target).parameters
        except (KeyError, TypeError, ValueError, AttributeError):
            return ""
        return _closest(match.group(2), params)
    if "malformed node or string" in message:
        return ("; a string value needs quotes inside the binding, e.g. --gin_bindings "
                "\"INSTRUMENTS = 'piano,guitar'\" (--gin.NAME=VALUE takes the text bare)")
    return ""

"""JAX's persistent compilation cache, on by default for mt3x entry points.

Compiling MT3's train step takes 1-2 minutes on a GPU (and tens of seconds on CPU) on every
launch and every resume. With the persistent cache, XLA executables are written to disk keyed by
the computation, its compile options and the backend, so a relaunch of the same configuration
loads them instead of compiling.

    from mt3x.util.compilation_cache import enable_compilation_cache
    enable_compilation_cache(workdir)          # -> <workdir>/jax_cache

Where the cache lives, in order:
1. `MT3X_COMPILATION_CACHE` in the environment: a directory, or 'off' (also '0', 'false',
   'none', '') to leave the cache disabled;
2. `<workdir>/jax_cache` when a work directory is given;
3. `$XDG_CACHE_HOME/mt3x/jax` (default `~/.cache/mt3x/jax`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import jax
from jax.experimental.compilation_cache import compilation_cache as jax_compilation_cache

#: Environment variable that overrides the cache directory ('off' disables the cache).
ENV_VAR = "MT3X_COMPILATION_CACHE"
#: Values of `ENV_VAR` that disable the cache.
OFF_VALUES = ("off", "0", "false", "none", "no", "")
#: Name of the cache directory under a work directory.
WORKDIR_SUBDIR = "jax_cache"
#: Executables that compile faster than this (seconds) are not written (JAX's default is 1 s).
MIN_COMPILE_TIME_SECS = 0.5

# Option names differ across JAX releases; each is set only where it exists.
_OPTIONS: dict[str, object] = {
    "jax_enable_compilation_cache": True,
    "jax_persistent_cache_min_compile_time_secs": MIN_COMPILE_TIME_SECS,
    "jax_persistent_cache_min_entry_size_bytes": 0,
}

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/mt3x/jax`, else `~/.cache/mt3x/jax`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mt3x" / "jax"


def resolve_cache_dir(workdir: str | os.PathLike | None = None) -> Path | None:
    """The directory `enable_compilation_cache(workdir)` would use, or None when disabled."""
    override = os.environ.get(ENV_VAR)
    if override is not None:
        if override.strip().lower() in OFF_VALUES:
            return None
        return Path(override).expanduser()
    if workdir is not None and str(workdir) and "://" not in str(workdir):
        return Path(workdir).expanduser() / WORKDIR_SUBDIR
    return default_cache_dir()


def _uncreatable(path: Path) -> str | None:
    """Why `path` can be neither used nor created as a directory by this user, or None."""
    if path.is_dir():
        return None if os.access(path, os.W_OK | os.X_OK) else "not writable"
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                return f"{parent} is not a directory"
            return None if os.access(parent, os.W_OK | os.X_OK) else f"{parent} is not writable"
    return "no existing parent directory"


def _set_if_present(name: str, value: object) -> bool:
    """`jax.config.update(name, value)` when this JAX release has the option."""
    if name not in jax.config.values:
        return False
    jax.config.update(name, value)
    return True


def enable_compilation_cache(workdir: str | os.PathLike | None = None) -> Path | None:
    """Turns on JAX's persistent compilation cache; idempotent.

    Args:
      workdir: a run's work directory; the cache goes to `<workdir>/jax_cache`. Remote
        work directories (a '://' URL) fall back to the user cache directory.

    Returns:
      The cache directory, or None when `MT3X_COMPILATION_CACHE` is 'off' or the directory
      cannot be created (a warning says why; the run goes on, compiling as usual). JAX creates
      the directory at the first compilation, so a run refused before it leaves nothing behind.

    Calling it again with the same directory changes nothing (options the caller changed since
    stay as they are); with another directory the cache moves there (JAX's cache object is reset so that the next compilation opens the new one).
    """
    cache_dir = resolve_cache_dir(workdir)
    if cache_dir is None:
        return None
    cache_dir = cache_dir.resolve()
    problem = _uncreatable(cache_dir)
    if problem:
        log.warning("compilation cache off: %s: %s; set %s to another directory or 'off'",
                    cache_dir, problem, ENV_VAR)
        return None
    current = jax.config.values.get("jax_compilation_cache_dir")
    if current == str(cache_dir):
        return cache_dir  # already on here; options changed since by the caller stay
    for name, value in _OPTIONS.items():
        _set_if_present(name, value)
    jax.config.update("jax_compilation_cache_dir", str(cache_dir))
    if current:  # the cache was already opened elsewhere: reopen it at the new place
        jax_compilation_cache.reset_cache()
    return cache_dir

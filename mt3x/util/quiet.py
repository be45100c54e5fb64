"""Quiet start-up for mt3x's command-line tools; `--verbose` (or MT3X_VERBOSE=1) keeps it all.

Loading TensorFlow, pydub and Orbax prints lines that read as failures but are not:
`failed call to cuInit`, `Could not find cuda drivers on your machine`, oneDNN and CPU-feature
notices, absl's `All log messages before absl::InitializeLog()`, pydub's `Couldn't find ffmpeg`
RuntimeWarning, Orbax's `... is read only` warnings when a checkpoint is opened for reading.
Every entry point calls, first thing, before its other imports:

    from mt3x.util.quiet import cli_args, quiet_startup
    quiet_startup()                      # reads sys.argv for --verbose
    ...
    args = parser.parse_args(cli_args(argv))   # drops --verbose before argparse sees it

What it does (only without --verbose; stdlib only, so it runs before any heavy import):
- `TF_CPP_MIN_LOG_LEVEL=3` (raised, never lowered) for TensorFlow's C++ logging after start-up;
- TensorFlow >= 2.19 logs its start-up lines through absl before absl is initialised, which
  ignores that variable (tensorflow/tensorflow#100442), so the first `import tensorflow` runs
  with file descriptor 2 captured; TensorFlow's device list is read there too (that is where
  `failed call to cuInit` is logged); captured lines that are not known noise (`NOISE`) are
  written back to stderr, so real errors still show;
- a warnings filter for pydub's ffmpeg warning and a logging filter for Orbax's read-only notes.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import re
import sys
import tempfile
import warnings
from types import ModuleType
from typing import Iterator, Sequence

VERBOSE_FLAG = "--verbose"
#: Environment variable that turns quiet start-up off ('1', 'true', 'yes').
ENV_VAR = "MT3X_VERBOSE"
#: TensorFlow's C++ log threshold in quiet mode (3: errors hidden too; its start-up errors are
#: harmless probes for GPUs).
TF_LOG_LEVEL = 3
#: Lines of start-up noise (matched anywhere in a line).
NOISE = re.compile("|".join([
    r"failed call to cuInit",
    r"Could not find cuda drivers",
    r"oneDNN custom operations are on",
    r"All log messages before absl::InitializeLog\(\) is called",
    r"This TensorFlow binary is optimized to use available CPU instructions",
    r"rebuild TensorFlow with the appropriate compiler flags",
    r"Unable to register cu(DNN|FFT|BLAS) factory",
    r"computation placer already registered",
    r"TF-TRT Warning: Could not find TensorRT",
    r"cuda_diagnostics\.cc",
    r"Couldn't find ffmpeg or avconv",
    r"Given directory is read only", r"is read only, (save|delete) will be skipped",
]))
_PYDUB_WARNING = r"Couldn't find ffmpeg or avconv"
_state: dict[str, object] = {}


def wants_verbose(argv: Sequence[str] | None = None) -> bool:
    """True when `argv` (default sys.argv[1:]) has --verbose or MT3X_VERBOSE is set true."""
    argv = sys.argv[1:] if argv is None else argv
    env = os.environ.get(ENV_VAR, "").strip().lower() in ("1", "true", "yes", "on")
    return env or VERBOSE_FLAG in argv


class _DropNoise(logging.Filter):
    """Drops log records whose message is known start-up noise (Orbax's read-only notes)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            return not NOISE.search(record.getMessage())
        except (TypeError, ValueError):  # a malformed record is someone else's to report
            return True


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Captures file descriptor 2 (C++ and Python writes alike) for the block; on exit writes
    back every captured line that `NOISE` does not match."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines(keepends=True) if not NOISE.search(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


class _QuietLoader(importlib.abc.Loader):
    """Runs TensorFlow's own loader under `filtered_stderr`, then reads its device list."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        with filtered_stderr():
            self._loader.exec_module(module)
            with contextlib.suppress(Exception):  # only to trigger (and hide) the CUDA probe
                module.config.list_physical_devices()


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Finds the top-level `tensorflow` package once and wraps its loader in `_QuietLoader`."""

    def find_spec(self, name: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if name != "tensorflow":
            return None
        _remove_hook()  # once; the finders after this one (import blockers included) decide
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _QuietLoader(spec.loader)
        return spec


def _remove_hook() -> None:
    hook = _state.pop("hook", None)
    if hook is not None and hook in sys.meta_path:
        sys.meta_path.remove(hook)


def quiet_startup(argv: Sequence[str] | None = None) -> bool:
    """Hides the start-up noise unless `argv` (default sys.argv[1:]) asks for --verbose.

    Call it before TensorFlow, pydub (through note_seq) or Orbax are imported. Idempotent.
    Returns whether quiet mode is on.
    """
    if wants_verbose(argv):
        return False
    if _state.get("on"):
        return True
    level = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "")
    if not level.isdigit() or int(level) < TF_LOG_LEVEL:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = str(TF_LOG_LEVEL)
    warnings.filterwarnings("ignore", message=_PYDUB_WARNING, category=RuntimeWarning)
    noise_filter = _DropNoise()
    logging.getLogger("absl").addFilter(noise_filter)
    if "tensorflow" not in sys.modules:
        hook = _QuietTensorFlowImport()
        sys.meta_path.insert(0, hook)
        _state["hook"] = hook
    _state.update(on=True, filter=noise_filter)
    return True


def show_startup_noise() -> None:
    """Undoes `quiet_startup` where it still can (the Python-side filters and the import hook;
    an environment variable TensorFlow has already read stays read)."""
    _remove_hook()
    noise_filter = _state.pop("filter", None)
    if noise_filter is not None:
        logging.getLogger("absl").removeFilter(noise_filter)
    warnings.filters[:] = [f for f in warnings.filters
                           if not (f[0] == "ignore" and f[1] is not None
                                   and f[1].pattern == _PYDUB_WARNING)]
    _state.pop("on", None)


def cli_args(argv: Sequence[str] | None = None) -> list[str]:
    """`argv` (default sys.argv[1:]) without --verbose, for argparse; given --verbose, start-up
    noise is shown from here on (for a `main(argv)` called in-process)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if VERBOSE_FLAG in argv:
        show_startup_noise()
    return [arg for arg in argv if arg != VERBOSE_FLAG]

"""Output and input paths, one home for each rule every CLI applies:

- atomic writes: everything other code reads is written under a temporary name, then renamed
  (`atomic_path`), with the user's umask (`apply_umask`: tempfile creates 0600 / 0700);
- `check_output_path`: an `--out` that cannot be written is refused before any work;
- `resolve_inside`: a name read from a file (a stem in metadata.yaml, a function file in
  bundle.json, a tagger's model_file) that resolves outside its root is refused.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from mt3x.errors import Mt3xError


class OutputPathError(Mt3xError):
    """An output path cannot be created or written (it is under a file, or read-only)."""


class PathEscapeError(Mt3xError):
    """A name read from a file resolves outside the folder it must stay in."""


def current_umask() -> int:
    """The process's umask (read without changing it where /proc allows)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(path: str | os.PathLike, *, recursive: bool = False) -> None:
    """Gives `path` the mode a plain create would (0o666 files, 0o777 folders, less the umask);
    `recursive` applies it to everything below a folder too."""
    mask = current_umask()
    root = Path(path)
    paths = [root] + (sorted(root.rglob("*")) if recursive and root.is_dir() else [])
    for item in paths:
        if item.is_symlink():
            continue
        os.chmod(item, (0o777 if item.is_dir() else 0o666) & ~mask)


def check_output_path(path: str | os.PathLike, *, is_dir: bool = True,
                      what: str = "--out") -> Path:
    """Refuses an output that cannot be written, before any work is done; returns it.

    Nothing is created: the nearest existing ancestor must be a writable folder (checked by
    creating and removing a probe file there), and `path` itself, when it exists, must be a
    folder (`is_dir`) or a file.

    Raises:
      OutputPathError: '<path>: <what> ...' naming the file in the way.
    """
    path = Path(path)
    if is_dir and path.exists() and not path.is_dir():
        raise OutputPathError(f"{path}: {what} exists and is a file; expected a folder")
    if not is_dir and path.is_dir():
        raise OutputPathError(f"{path}: {what} is a folder; expected a file name")
    ancestor = path if path.is_dir() else path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputPathError(f"{path}: {what} cannot be created: {ancestor} is a file, not a "
                              "folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".mt3x-write-probe-", dir=ancestor)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OutputPathError(f"{path}: {what} cannot be written: {ancestor} is not writable "
                              f"({err.strerror or err})") from None
    return path


def resolve_inside(root: str | os.PathLike, name: str | os.PathLike, *, source: str,
                   field: str) -> Path:
    """`root / name`, refused when it resolves (symlinks and '..' followed) outside `root`.

    Args:
      root: the folder the name must stay in.
      name: a relative name read from a file.
      source: the file the name was read from (for the message).
      field: the field that holds it (e.g. "stems: S01", "functions.encode.file").

    Raises:
      PathEscapeError: '<source>: <field> = <name> resolves outside <root>'.
    """
    root_path = Path(root)
    text = os.fspath(name)
    candidate = root_path / text
    base = root_path.resolve()
    if (not text or "\0" in text or Path(text).is_absolute()
            or not candidate.resolve().is_relative_to(base)):
        raise PathEscapeError(f"{source}: {field} = {text!r} resolves outside {root_path}; "
                              "names must stay inside it")
    return candidate


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, is_dir: bool = False) -> Iterator[Path]:
    """Yields a temporary path beside `path`; renames it to `path` when the block succeeds.

    On an exception the temporary file or directory is removed and `path` is left untouched, so a
    reader never sees a half-written file. For directories, an existing `path` is replaced.

    Args:
      path: final destination.
      is_dir: the caller writes a directory (created empty) instead of a file.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{final.name}.tmp-"
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=final.parent))
        apply_umask(tmp)
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=final.suffix, dir=final.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if is_dir:
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        else:
            apply_umask(tmp)
            os.replace(tmp, final)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        raise

"""Orbax PyTree checkpoints: newer t5x's `checkpoint_<step>/state/` and our own `<step>/state/`.

t5x's Orbax manager saves the train state dict `{'target': params, 'state': {'step',
'param_states'}}` with a `PyTreeCheckpointHandler` (OCDBT) under the item name 'state'; a step
folder is `checkpoint_<step>/` with `state/_METADATA`. Arrays are restored as host numpy arrays
whatever mesh wrote them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np

from mt3x.t5x_checkpoint.errors import T5xCheckpointError

METADATA_FILE = "_METADATA"
STATE_ITEM = "state"


def find_state_dir(path: str | Path) -> Path | None:
    """`path` itself when it holds Orbax `_METADATA`, else `path/state` when that does; or None."""
    path = Path(path)
    for candidate in (path, path / STATE_ITEM):
        if (candidate / METADATA_FILE).is_file():
            return candidate
    return None


def _key_name(key: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _dotted(path: Any) -> str:
    return ".".join(_key_name(k) for k in path)


def _tree_metadata(state_dir: Path) -> Any:
    import orbax.checkpoint as ocp

    state_dir = state_dir.absolute()  # Orbax refuses relative paths
    try:
        metadata = ocp.PyTreeCheckpointer().metadata(state_dir)
    except Exception as err:  # Orbax raises many types for unreadable metadata
        raise T5xCheckpointError(f"{state_dir}: Orbax cannot read the checkpoint metadata: "
                                 f"{err}") from err
    item = getattr(metadata, "item_metadata", metadata)
    tree = getattr(item, "tree", item)
    if not isinstance(tree, dict):
        raise T5xCheckpointError(f"{state_dir}: expected an Orbax PyTree of named arrays, got "
                                 f"{type(tree).__name__}")
    return tree


def read_orbax_shapes(state_dir: str | Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Dotted name -> (shape, dtype) of every array in an Orbax PyTree folder; reads no data."""
    tree = _tree_metadata(Path(state_dir).absolute())
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {_dotted(path): (tuple(getattr(leaf, "shape", ()) or ()),
                            np.dtype(getattr(leaf, "dtype", np.float32)))
            for path, leaf in leaves}


def read_orbax_arrays(state_dir: str | Path) -> dict[str, np.ndarray]:
    """Dotted name -> host numpy array of every array in an Orbax PyTree folder.

    Raises:
      T5xCheckpointError: Orbax cannot read the folder (names it and gives Orbax's reason).
    """
    import orbax.checkpoint as ocp

    state_dir = Path(state_dir).absolute()
    tree = _tree_metadata(state_dir)
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    try:
        restored = ocp.PyTreeCheckpointer().restore(
            state_dir, args=ocp.args.PyTreeRestore(restore_args=restore_args))
    except Exception as err:
        raise T5xCheckpointError(f"{state_dir}: Orbax cannot restore the arrays: {err}") from err
    return {_dotted(path): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(restored)[0]}

"""The legacy t5x checkpoint: a msgpack file `checkpoint` plus zarr v2 arrays beside it.

```
<dir>/checkpoint                          msgpack {'version': 3, 'optimizer': {'target': params,
                                            'state': {'step': ..., 'param_states': ...}}}
<dir>/target.decoder.logits_dense.kernel/ zarr v2 array (.zarray + chunks 0.0, 0.1, ...), gzip
```
Encoding of the msgpack (flax.serialization conventions):
- an inline array is msgpack ExtType 1 whose data is itself msgpack of
  `[shape, dtype name, C-order raw bytes]`; ExtType 3 is the same for a numpy scalar;
- an array too big for one msgpack blob is `{'__msgpack_chunked_array__': True, 'shape': {'0':
  ...}, 'chunks': {'0': array, ...}}` (flat C-order pieces);
- an array written by TensorStore is its spec: `{'driver': 'zarr', 'dtype': 'float32',
  'kvstore': {'driver': 'file'|'gfile'|'gcs', 'path': 'target.x.kernel'}, 'metadata': {...}}`,
  the path relative to the checkpoint directory (older TensorStore: top-level 'path').
Version 2 stored bfloat16 arrays as uint16 bit patterns; version 3 as TensorStore bfloat16.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import ml_dtypes
import msgpack
import numpy as np

from mt3x.t5x_checkpoint.errors import T5xCheckpointError
from mt3x.t5x_checkpoint.zarr_arrays import (DEFAULT_MAX_CHUNK_BYTES, parse_dtype, read_zarr,
                                             tensorstore_dtype_name, write_zarr)

CHECKPOINT_FILE = "checkpoint"
LEGACY_VERSION = 3
EXT_NDARRAY, EXT_COMPLEX, EXT_NPSCALAR = 1, 2, 3
_CHUNKED = "__msgpack_chunked_array__"


@dataclasses.dataclass
class LegacyLeaf:
    """One array of the msgpack tree, not yet read.

    name: dotted tree path ('target.decoder.logits_dense.kernel', 'state.step').
    storage: 'inline' (in the msgpack) or 'zarr' (a TensorStore spec).
    shape: its shape when known without reading (inline arrays, spec metadata), else None.
    load: reads the array (numpy; for zarr leaves this reads the chunks).
    """

    name: str
    storage: str
    shape: tuple[int, ...] | None
    load: Callable[[], np.ndarray]


@dataclasses.dataclass
class LegacyCheckpoint:
    """The parsed msgpack of a legacy t5x checkpoint; arrays are read on `leaf.load()`.

    directory: the checkpoint directory; version: the 'version' field (0 when absent);
    leaves: dotted name -> LegacyLeaf, in file order.
    """

    directory: Path
    version: int
    leaves: dict[str, LegacyLeaf]


def _decode_ext(ext: msgpack.ExtType, *, where: str) -> np.ndarray:
    if ext.code == EXT_COMPLEX:
        raise T5xCheckpointError(f"{where}: a Python complex number is not a parameter array")
    if ext.code not in (EXT_NDARRAY, EXT_NPSCALAR):
        raise T5xCheckpointError(f"{where}: unknown msgpack extension type {ext.code}")
    try:
        shape, dtype_name, buffer = msgpack.unpackb(ext.data, raw=True)
        shape = tuple(int(s) for s in shape)
    except (ValueError, TypeError, msgpack.UnpackException) as err:
        raise T5xCheckpointError(
            f"{where}: inline array is not [shape, dtype, bytes] msgpack: {err}") from err
    dtype = parse_dtype(dtype_name, where=where)
    expected = math.prod(shape) * dtype.itemsize
    if not isinstance(buffer, bytes) or len(buffer) != expected:
        got = len(buffer) if isinstance(buffer, bytes) else type(buffer).__name__
        raise T5xCheckpointError(
            f"{where}: inline array of shape {list(shape)} {dtype.name} needs {expected} bytes, "
            f"holds {got}")
    return np.frombuffer(buffer, dtype=dtype).reshape(shape).copy()


def _is_spec(node: Mapping[str, Any]) -> bool:
    return "driver" in node and ("kvstore" in node or "path" in node)


def _spec_relative_path(spec: Mapping[str, Any], *, where: str) -> str:
    """The zarr folder named by a spec, relative to the checkpoint directory."""
    if spec.get("driver") == "cast" and isinstance(spec.get("base"), Mapping):
        spec = spec["base"]
    if spec.get("driver") != "zarr":
        raise T5xCheckpointError(
            f"{where}: TensorStore driver {spec.get('driver')!r} is not supported (expected 'zarr')")
    kvstore = spec.get("kvstore") or {}
    parts = [p for p in (kvstore.get("path") if isinstance(kvstore, Mapping) else None,
                         spec.get("path")) if p]
    if not parts:
        raise T5xCheckpointError(f"{where}: TensorStore spec has no 'path': {dict(spec)!r}")
    return "/".join(str(p).strip("/") for p in parts)


def _resolve_folder(directory: Path, relative: str, *, where: str) -> Path:
    candidates = [directory / relative]
    if relative.startswith("/") or "://" in relative:  # an absolute path from another machine
        candidates.append(directory / Path(relative).name)
    for folder in candidates:
        if folder.is_dir():
            return folder
    raise T5xCheckpointError(
        f"{where}: its zarr folder {candidates[-1]} is missing (the msgpack points at "
        f"{relative!r})")


def _walk(node: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path, leaf) of the msgpack tree; empty dicts and None (unused slots) are dropped."""
    if isinstance(node, Mapping) and not (_CHUNKED in node or _is_spec(node)):
        for key, child in node.items():
            yield from _walk(child, path + (str(key),))
    elif node is not None:
        yield path, node


def _leaf(directory: Path, name: str, node: Any, *, backend: str, version: int,
          file: Path) -> LegacyLeaf:
    where = f"{file}: array {name!r}"
    if isinstance(node, msgpack.ExtType):
        array = _decode_ext(node, where=where)
        return LegacyLeaf(name, "inline", array.shape, lambda: array)
    if isinstance(node, Mapping) and _CHUNKED in node:
        pieces = [_decode_ext(node["chunks"][k], where=where)
                  for k in sorted(node.get("chunks", {}), key=int)]
        shape = tuple(int(node["shape"][k]) for k in sorted(node.get("shape", {}), key=int))
        if not pieces or sum(p.size for p in pieces) != math.prod(shape):
            raise T5xCheckpointError(f"{where}: chunked inline array does not fill shape {shape}")
        array = np.concatenate([p.reshape(-1) for p in pieces]).reshape(shape)
        return LegacyLeaf(name, "inline", shape, lambda: array)
    if isinstance(node, Mapping):  # a TensorStore spec
        folder = _resolve_folder(directory, _spec_relative_path(node, where=where), where=where)
        base = node["base"] if node.get("driver") == "cast" else node
        fallback = dict(base.get("metadata") or {})
        fallback.setdefault("dtype", base.get("dtype"))
        shape = tuple(fallback["shape"]) if "shape" in fallback else None

        def load() -> np.ndarray:
            array = read_zarr(folder, backend=backend, fallback_meta=fallback)
            if shape is not None and tuple(array.shape) != shape:
                raise T5xCheckpointError(
                    f"{where}: zarr folder {folder} holds shape {list(array.shape)}, the msgpack "
                    f"spec says {list(shape)}")
            if version < 3 and name.startswith("target.") and array.dtype == np.uint16:
                array = array.view(ml_dtypes.bfloat16)  # version 2: bfloat16 bits as uint16
            return array

        return LegacyLeaf(name, "zarr", shape, load)
    if isinstance(node, (bool, int, float)):
        value = np.asarray(node)
        return LegacyLeaf(name, "inline", (), lambda: value)
    raise T5xCheckpointError(f"{where}: unexpected {type(node).__name__} leaf {node!r:.80}")


def read_legacy_checkpoint(directory: str | Path, *, backend: str = "auto") -> LegacyCheckpoint:
    """Parses `directory/checkpoint`; arrays are read lazily by `leaf.load()`.

    Leaf names drop the 'optimizer.' level: 'target.encoder.encoder_norm.scale', 'state.step',
    'state.param_states.<...>.v_row'.

    Raises:
      T5xCheckpointError: no `checkpoint` file, not msgpack, no 'optimizer' tree, or a leaf
        that is neither an inline array nor a zarr spec (each names the file and leaf).
    """
    directory = Path(directory)
    file = directory / CHECKPOINT_FILE
    if not file.is_file():
        raise T5xCheckpointError(f"{directory} is not a legacy t5x checkpoint: it has no "
                                 f"msgpack file {CHECKPOINT_FILE!r}")
    try:
        contents = msgpack.unpackb(file.read_bytes(), raw=False, strict_map_key=False)
    except (ValueError, msgpack.UnpackException, msgpack.ExtraData) as err:
        raise T5xCheckpointError(f"{file} is not a msgpack t5x checkpoint: {err}") from err
    if not isinstance(contents, Mapping) or not isinstance(contents.get("optimizer"), Mapping):
        keys = sorted(contents) if isinstance(contents, Mapping) else type(contents).__name__
        raise T5xCheckpointError(
            f"{file} is not a t5x checkpoint: expected a msgpack map with keys 'version' and "
            f"'optimizer' (holding 'target' and 'state'), got {keys}")
    version = int(contents.get("version", 0) or 0)
    leaves: dict[str, LegacyLeaf] = {}
    for path, node in _walk(contents["optimizer"], ()):
        name = ".".join(path)
        leaves[name] = _leaf(directory, name, node, backend=backend, version=version, file=file)
    return LegacyCheckpoint(directory=directory, version=version, leaves=leaves)


# ---- writer ------------------------------------------------------------------------------
def pack_inline_array(array: np.ndarray, *, scalar: bool = False) -> msgpack.ExtType:
    """An inline msgpack array (ExtType 1; 3 for a numpy scalar) as flax.serialization writes."""
    array = np.asarray(array)  # (not ascontiguousarray: it turns a scalar into shape [1])
    payload = msgpack.packb((list(array.shape), array.dtype.name, array.tobytes("C")),
                            use_bin_type=True)
    return msgpack.ExtType(EXT_NPSCALAR if scalar else EXT_NDARRAY, payload)


def write_legacy_checkpoint(directory: str | Path, target: Mapping[str, Any], *, step: int,
                            inline: Callable[[str, np.ndarray], bool] = lambda name, a: False,
                            max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES) -> dict[str, str]:
    """Writes `target` (nested dict of arrays) as a legacy t5x checkpoint into `directory`.

    The directory must exist and should be empty; the caller makes the write atomic. The state
    holds only 'step' (int32); no optimizer slots, so t5x restores the optimizer state from
    scratch (RestoreCheckpointConfig(fallback_to_scratch=True, assignment_map=
    ((r'state.*', None),))).

    Args:
      directory: destination folder.
      target: the parameter tree (string keys, numpy-convertible leaves).
      step: the training step written to 'state.step'.
      inline: (dotted name 'target.x.y', array) -> keep it inline in the msgpack instead of a
        zarr folder.
      max_chunk_bytes: largest zarr chunk.

    Returns:
      dotted name -> 'inline' or 'zarr', for every array written.
    """
    directory = Path(directory)
    storage: dict[str, str] = {}

    def convert(node: Any, path: tuple[str, ...]) -> Any:
        if isinstance(node, Mapping):
            return {str(k): convert(v, path + (str(k),)) for k, v in node.items()}
        array = np.asarray(node)
        name = ".".join(path)
        if inline(name, array):
            storage[name] = "inline"
            return pack_inline_array(array)
        metadata = write_zarr(directory / name, array, max_chunk_bytes=max_chunk_bytes)
        storage[name] = "zarr"
        # As t5x stores it: TensorStore's normalized spec (kvstore path relative to the
        # checkpoint directory, with the trailing '/'; gzip level 1).
        return {"driver": "zarr", "dtype": tensorstore_dtype_name(array.dtype),
                "kvstore": {"driver": "file", "path": name + "/"}, "metadata": metadata}

    tree = {"version": LEGACY_VERSION,
            "optimizer": {"target": convert(target, ("target",)),
                          "state": {"step": pack_inline_array(np.int32(step), scalar=True)}}}
    (directory / CHECKPOINT_FILE).write_bytes(msgpack.packb(tree, use_bin_type=True))
    return storage

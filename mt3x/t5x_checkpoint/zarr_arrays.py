"""Zarr v2 arrays as t5x writes them: a folder with `.zarray` and chunk files `0`, `0.0`, ...

Two readers that give the same numpy array:
- `read_zarr_numpy`: parses `.zarray` itself and decompresses the chunks (gzip, zlib, bz2 or
  none; C or F order; any number of chunks; chunks absent on disk hold the fill value, as
  TensorStore does not store chunks equal to it). Needs nothing beyond numpy and ml_dtypes.
- `read_zarr_tensorstore`: opens the folder with TensorStore's zarr driver.

`read_zarr(folder, backend='auto')` picks TensorStore when it is importable and `.zarray` exists,
else the numpy reader (which can also use the metadata of the TensorStore spec stored in the
msgpack when `.zarray` is missing). `write_zarr` writes with TensorStore, gzip-compressed.

dtype names: zarr's numpy type strings ('<f4', '>i4', '|u1') and TensorStore's names for the
types numpy lacks ('bfloat16', 'float8_e4m3fn', ...) in `.zarray`; numpy names ('float32') in
the msgpack spec's "dtype".
"""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import json
import math
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

from mt3x.t5x_checkpoint.errors import T5xCheckpointError

ZARRAY = ".zarray"
BACKENDS = ("auto", "tensorstore", "numpy")
#: Largest chunk `write_zarr` writes by default (t5x aims at 64 MiB chunks too).
DEFAULT_MAX_CHUNK_BYTES = 64 * 1024 * 1024
_FLOAT_SPECIAL = {"NaN": np.nan, "Infinity": np.inf, "-Infinity": -np.inf}


def parse_dtype(name: Any, *, where: str) -> np.dtype:
    """A zarr/TensorStore/numpy dtype name -> numpy dtype (bfloat16 etc. from ml_dtypes).

    Raises:
      T5xCheckpointError: the name is not a numeric dtype; the message names `where`.
    """
    if isinstance(name, bytes):
        name = name.decode("ascii", errors="replace")
    if isinstance(name, str):
        bare = name.lstrip("<>|=")
        special = getattr(ml_dtypes, bare, None)
        if isinstance(special, type) and bare not in ("finfo", "iinfo"):
            try:
                return np.dtype(special)
            except TypeError:
                pass
        try:
            dtype = np.dtype(name)
        except TypeError:
            dtype = None
        if dtype is not None and dtype.kind in "biufc" and dtype.fields is None:
            return dtype
    raise T5xCheckpointError(
        f"{where}: unknown or unsupported dtype {name!r}; expected a numeric type such as "
        "'float32', '<f4', 'bfloat16', 'int32'")


@dataclasses.dataclass(frozen=True)
class ZarrMeta:
    """The fields of a zarr v2 `.zarray` that decide how chunks decode.

    shape: array shape; chunks: chunk shape (same rank); dtype: element type;
    compressor: e.g. {'id': 'gzip', 'level': 1} or None; fill_value: value of absent chunks;
    order: 'C' or 'F' (element order inside a chunk); separator: '.' or '/' in chunk keys.
    """

    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: np.dtype
    compressor: Mapping[str, Any] | None
    fill_value: Any
    order: str
    separator: str


def _meta_from_dict(raw: Mapping[str, Any], *, where: str) -> ZarrMeta:
    try:
        shape = tuple(int(s) for s in raw["shape"])
        chunks = tuple(int(c) for c in raw.get("chunks", shape))
    except (KeyError, TypeError, ValueError) as err:
        raise T5xCheckpointError(
            f"{where}: expected zarr metadata with integer lists 'shape' and 'chunks', got "
            f"{dict(raw)!r}") from err
    if len(chunks) != len(shape) or any(c < 1 for c in chunks):
        raise T5xCheckpointError(
            f"{where}: chunks {list(chunks)} do not fit shape {list(shape)} (same rank, >= 1)")
    if raw.get("filters"):
        raise T5xCheckpointError(f"{where}: zarr filters {raw['filters']!r} are not supported")
    order = raw.get("order", "C")
    if order not in ("C", "F"):
        raise T5xCheckpointError(f"{where}: order must be 'C' or 'F', got {order!r}")
    separator = raw.get("dimension_separator", ".") or "."
    if separator not in (".", "/"):
        raise T5xCheckpointError(
            f"{where}: dimension_separator must be '.' or '/', got {separator!r}")
    return ZarrMeta(shape=shape, chunks=chunks, dtype=parse_dtype(raw.get("dtype"), where=where),
                    compressor=raw.get("compressor"), fill_value=raw.get("fill_value"),
                    order=order, separator=separator)


def read_zarr_meta(folder: str | Path, *,
                   fallback: Mapping[str, Any] | None = None) -> ZarrMeta:
    """Parses `folder/.zarray`; without it, `fallback` (a TensorStore spec's 'metadata' plus its
    'dtype'), as the spec in the msgpack carries shape, chunks and compressor too.

    Raises:
      T5xCheckpointError: no folder, no usable metadata, bad JSON or an unknown dtype (the
        message names the `.zarray` path).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise T5xCheckpointError(f"zarr array folder {folder} does not exist")
    zarray = folder / ZARRAY
    if zarray.is_file():
        try:
            raw = json.loads(zarray.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise T5xCheckpointError(f"{zarray}: not a readable JSON zarr header: {err}") from err
        if not isinstance(raw, dict):
            raise T5xCheckpointError(f"{zarray}: expected a JSON object, got {type(raw).__name__}")
        if raw.get("zarr_format", 2) != 2:
            raise T5xCheckpointError(
                f"{zarray}: zarr_format {raw.get('zarr_format')!r}; only zarr v2 is supported")
        return _meta_from_dict(raw, where=str(zarray))
    if fallback is not None and "shape" in fallback:
        return _meta_from_dict(fallback, where=f"{folder} (no {ZARRAY}; spec metadata)")
    raise T5xCheckpointError(f"zarr array folder {folder} has no {ZARRAY} header")


def _fill_value(meta: ZarrMeta, *, where: str) -> Any:
    value = meta.fill_value
    if value is None:
        return 0
    if isinstance(value, str):
        if value in _FLOAT_SPECIAL:
            return _FLOAT_SPECIAL[value]
        raise T5xCheckpointError(f"{where}: unsupported fill_value {value!r}")
    return value


def _decompress(data: bytes, compressor: Mapping[str, Any] | None, *, where: Path) -> bytes:
    kind = None if compressor is None else compressor.get("id")
    try:
        if kind is None:
            return data
        if kind == "gzip":
            return gzip.decompress(data)
        if kind == "zlib":
            return zlib.decompress(data)
        if kind == "bz2":
            return bz2.decompress(data)
    except (OSError, EOFError, zlib.error, ValueError) as err:
        raise T5xCheckpointError(
            f"zarr chunk {where}: cannot decompress ({kind}): {err}; the file is truncated or "
            "damaged") from err
    raise T5xCheckpointError(
        f"zarr chunk {where}: compressor {kind!r} is not supported by the numpy reader "
        "(gzip, zlib, bz2 or none); use backend='tensorstore'")


def read_zarr_numpy(folder: str | Path, *,
                    fallback_meta: Mapping[str, Any] | None = None) -> np.ndarray:
    """Reads a zarr v2 array without TensorStore: numpy array of `.zarray`'s shape and dtype.

    Raises:
      T5xCheckpointError: missing header, unknown dtype or compressor, or a chunk that does not
        decompress to chunk-shape x itemsize bytes (names the chunk file).
    """
    folder = Path(folder)
    meta = read_zarr_meta(folder, fallback=fallback_meta)
    out = np.full(meta.shape, _fill_value(meta, where=str(folder)), dtype=meta.dtype)
    chunk_bytes = math.prod(meta.chunks) * meta.dtype.itemsize
    grid = [math.ceil(s / c) for s, c in zip(meta.shape, meta.chunks)]
    for index in np.ndindex(*grid):
        key = meta.separator.join(str(i) for i in index) if index else "0"
        chunk_file = folder / key
        if not chunk_file.is_file():
            continue  # never written: holds the fill value
        data = _decompress(chunk_file.read_bytes(), meta.compressor, where=chunk_file)
        if len(data) != chunk_bytes:
            raise T5xCheckpointError(
                f"zarr chunk {chunk_file}: holds {len(data)} bytes after decompression, expected "
                f"{chunk_bytes} (chunk {list(meta.chunks)} of {meta.dtype.name}); the file is "
                "truncated or damaged")
        chunk = np.frombuffer(data, dtype=meta.dtype).reshape(meta.chunks, order=meta.order)
        region = tuple(slice(i * c, min((i + 1) * c, s))
                       for i, c, s in zip(index, meta.chunks, meta.shape))
        out[region] = chunk[tuple(slice(0, r.stop - r.start) for r in region)]
    return out.astype(out.dtype.newbyteorder("="), copy=False)


def read_zarr_tensorstore(folder: str | Path) -> np.ndarray:
    """Reads a zarr v2 array with TensorStore (which validates `.zarray` and every chunk).

    Raises:
      T5xCheckpointError: TensorStore cannot open or decode it (names the folder).
    """
    import tensorstore as ts

    folder = Path(folder)
    read_zarr_meta(folder)  # clear errors for a missing header or an unknown dtype
    spec = {"driver": "zarr", "kvstore": {"driver": "file", "path": str(folder.absolute()) + "/"}}
    try:
        store = ts.open(spec, open=True, read=True).result()
        return np.asarray(store.read().result())
    except Exception as err:  # TensorStore raises ValueError / RuntimeError variants
        raise T5xCheckpointError(
            f"zarr array {folder}: TensorStore cannot read it: {err}") from err


def _tensorstore_available() -> bool:
    try:
        import tensorstore  # noqa: F401
    except ImportError:
        return False
    return True


def read_zarr(folder: str | Path, *, backend: str = "auto",
              fallback_meta: Mapping[str, Any] | None = None) -> np.ndarray:
    """Reads a zarr v2 array with `backend` 'tensorstore', 'numpy' or 'auto' (TensorStore when
    importable and `.zarray` exists, else numpy)."""
    if backend not in BACKENDS:
        raise T5xCheckpointError(f"zarr backend must be one of {BACKENDS}, got {backend!r}")
    folder = Path(folder)
    if backend == "auto":
        use_ts = _tensorstore_available() and (folder / ZARRAY).is_file()
        backend = "tensorstore" if use_ts else "numpy"
    if backend == "tensorstore":
        return read_zarr_tensorstore(folder)
    return read_zarr_numpy(folder, fallback_meta=fallback_meta)


def choose_chunks(shape: Sequence[int], itemsize: int,
                  max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES) -> tuple[int, ...]:
    """A chunk shape that divides `shape` evenly and holds at most `max_chunk_bytes`.

    Starts from the whole array and repeatedly replaces the currently largest chunk dimension
    by its next smaller divisor, so small arrays are one chunk.
    """
    chunks = [max(int(s), 1) for s in shape]
    sizes = [max(int(s), 1) for s in shape]
    while chunks and math.prod(chunks) * itemsize > max_chunk_bytes:
        axis = max(range(len(chunks)), key=lambda a: chunks[a])
        if chunks[axis] == 1:
            break
        chunks[axis] = max(d for d in range(1, chunks[axis]) if sizes[axis] % d == 0)
    return tuple(chunks)


def tensorstore_dtype_name(dtype: np.dtype) -> str:
    """TensorStore's name of a numpy dtype ('float32', 'bfloat16', ...)."""
    return np.dtype(dtype).name


def write_zarr(folder: str | Path, array: np.ndarray, *,
               max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES) -> dict[str, Any]:
    """Writes `array` as a gzip zarr v2 array into `folder` (created) with TensorStore.

    Returns:
      the spec 'metadata' written: {'chunks', 'compressor': {'id': 'gzip', 'level': 1},
      'shape'} (TensorStore's normalized form, as t5x stores it).
    """
    import tensorstore as ts

    array = np.asarray(array)
    metadata = {"chunks": list(choose_chunks(array.shape, array.dtype.itemsize, max_chunk_bytes)),
                "compressor": {"id": "gzip", "level": 1}, "shape": list(array.shape)}
    spec = {"driver": "zarr", "dtype": tensorstore_dtype_name(array.dtype),
            "kvstore": {"driver": "file", "path": str(Path(folder).absolute()) + "/"},
            "metadata": metadata}
    try:
        store = ts.open(spec, create=True, delete_existing=True).result()
        store.write(array).result()
    except Exception as err:
        raise T5xCheckpointError(f"zarr array {folder}: TensorStore cannot write it: {err}") from err
    return metadata

"""Arrays <-> one safetensors file (readable by torch, candle, ...), through the `safetensors`
package.

Layout (safetensors'): an 8-byte little-endian header size N, N bytes of JSON mapping each name to
{"dtype", "shape", "data_offsets"} plus an optional "__metadata__" of string -> string, then the
data. The package writes it (the same arrays always give the same bytes) and checks it on reading
(header, offsets, sizes). What stays here: the safetensors dtype code -> numpy dtype table, because
the package's numpy loader has no bfloat16 (its `safetensors.numpy.load` fails on 'BF16', which
bfloat16 bundles store), so arrays are built from the package's checked views with ml_dtypes'
bfloat16; the metadata (the package's deserialiser does not return it); and errors that name the
file. Files written before the package was used (by a hand-written writer: names sorted, scalars
stored as shape [1]) read the same way.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Mapping

import ml_dtypes
import numpy as np
import safetensors
import safetensors.numpy

from mt3x.errors import Mt3xError
from mt3x.util.files import atomic_path

#: safetensors dtype codes <-> numpy dtypes.
DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16), "I64": np.dtype("<i8"), "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"), "I8": np.dtype("i1"), "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("bool"),
}
_CODES = {dtype: code for code, dtype in DTYPES.items()}


class SafetensorsError(Mt3xError):
    """A file that is not a readable safetensors file (names the file and the problem)."""


def dtype_code(dtype: np.dtype) -> str:
    """The safetensors code of a numpy dtype ('F32', 'BF16', ...)."""
    try:
        return _CODES[np.dtype(dtype)]
    except KeyError:
        raise SafetensorsError(f"dtype {dtype} cannot be stored in safetensors; expected one of "
                               f"{sorted(str(d) for d in DTYPES.values())}") from None


def write_safetensors(path: str | os.PathLike, arrays: Mapping[str, np.ndarray],
                      metadata: Mapping[str, str] | None = None) -> Path:
    """Writes `arrays` (name -> array) to `path` atomically; returns the path.

    The same arrays and metadata always give the same bytes: the package's own, except that the
    metadata entries are sorted by key (the package orders them at random,
    safetensors/safetensors#584; with one entry the bytes equal the package's exactly).
    """
    flat = {}
    for name, array in arrays.items():
        array = np.asarray(array)
        flat[str(name)] = np.require(array, DTYPES[dtype_code(array.dtype)], requirements="C")
    try:
        blob = safetensors.numpy.save(flat)
    except (safetensors.SafetensorError, ValueError, TypeError) as err:
        raise SafetensorsError(f"{path}: cannot write parameters ({err})") from None
    if metadata:
        blob = _with_sorted_metadata(blob, {str(k): str(v) for k, v in metadata.items()})
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(blob)
    return Path(path)


def _with_sorted_metadata(blob: bytes, metadata: Mapping[str, str]) -> bytes:
    """The package's file `blob` (written without metadata) with `metadata` as the header's first
    member, keys sorted, the header space-padded to a multiple of 8 bytes as the package pads it."""
    (size,) = struct.unpack("<Q", blob[:8])
    members = blob[8:8 + size].rstrip(b" ")[1:-1]          # the header object without its braces
    entry = json.dumps({"__metadata__": dict(sorted(metadata.items()))}, separators=(",", ":"),
                       ensure_ascii=False).encode()[1:-1]
    header = b"{" + entry + (b"," + members if members else b"") + b"}"
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + blob[8 + size:]


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(name -> array, metadata) of a safetensors file.

    Raises:
      SafetensorsError: unreadable file, or what `parse_safetensors` refuses, naming the file.
    """
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as err:
        raise SafetensorsError(f"{path}: cannot read parameters ({err.strerror or err})") from None
    return parse_safetensors(blob, path)


def parse_safetensors(blob: bytes, path: str | os.PathLike
                      ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(name -> array, metadata) of a safetensors file's bytes; `path` names it in errors.

    Raises:
      SafetensorsError: what the package refuses (truncated file, malformed header, offsets
        outside the data, a shape that does not match its byte count), or a dtype numpy cannot
        hold.
    """
    try:
        views = safetensors.deserialize(bytes(blob))
    except safetensors.SafetensorError as err:
        raise SafetensorsError(f"{path}: not a readable safetensors file ({err}; truncated or "
                               "not a safetensors file?)") from None
    arrays = {}
    for name, view in views:
        code = view["dtype"]
        if code not in DTYPES:
            raise SafetensorsError(f"{path}: array {name!r} has dtype {code!r}; expected one of "
                                   f"{sorted(DTYPES)}")
        arrays[name] = np.frombuffer(view["data"], DTYPES[code]).reshape(view["shape"])
    (size,) = struct.unpack("<Q", blob[:8])
    metadata = json.loads(bytes(blob[8:8 + size])).get("__metadata__") or {}
    return arrays, dict(metadata)

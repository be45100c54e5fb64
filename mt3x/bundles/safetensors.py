"""Arrays <-> one file in the safetensors layout (readable by the `safetensors` package, torch,
candle, ...), written and read with numpy alone.

Layout: an 8-byte little-endian header size N, N bytes of JSON (space-padded to a multiple of 8)
mapping each name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets into the data
that follows the header) plus an optional "__metadata__" of string -> string, then the data,
C-order little-endian, in the order of the sorted names. The same arrays always give the same
bytes.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Mapping

import ml_dtypes
import numpy as np

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
MAX_HEADER_BYTES = 100 << 20


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
    """Writes `arrays` (name -> array) to `path` atomically; returns the path."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    ordered = []
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        code = dtype_code(array.dtype)
        array = array.astype(DTYPES[code], copy=False)
        header[name] = {"dtype": code, "shape": list(array.shape),
                        "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
        ordered.append(array)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(struct.pack("<Q", len(text)))
        handle.write(text)
        for array in ordered:
            handle.write(array.tobytes())
    return Path(path)


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
      SafetensorsError: truncated file, malformed header, unknown dtype, offsets outside the
        data or a shape that does not match its byte count.
    """
    if len(blob) < 8:
        raise SafetensorsError(f"{path}: truncated ({len(blob)} bytes; not a safetensors file)")
    (size,) = struct.unpack("<Q", blob[:8])
    if size > min(MAX_HEADER_BYTES, len(blob) - 8):
        raise SafetensorsError(f"{path}: header size {size} exceeds the file ({len(blob)} bytes); "
                               "truncated or not a safetensors file")
    try:
        header = json.loads(blob[8:8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SafetensorsError(f"{path}: malformed header ({err})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: malformed header (not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    data = memoryview(blob)[8 + size:]
    arrays = {}
    for name, entry in header.items():
        try:
            code, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise SafetensorsError(f"{path}: malformed entry for {name!r}: {entry!r}") from None
        if code not in DTYPES:
            raise SafetensorsError(f"{path}: array {name!r} has unknown dtype {code!r}; expected "
                                   f"one of {sorted(DTYPES)}")
        dtype = DTYPES[code]
        if not 0 <= begin <= end <= len(data):
            raise SafetensorsError(f"{path}: array {name!r} lies at bytes {begin}..{end} but the "
                                   f"data holds {len(data)} bytes (truncated file?)")
        count = int(np.prod(shape, dtype=np.int64))
        if count * dtype.itemsize != end - begin:
            raise SafetensorsError(f"{path}: array {name!r} of shape {shape} {code} needs "
                                   f"{count * dtype.itemsize} bytes, the file gives {end - begin}")
        arrays[name] = np.frombuffer(data[begin:end], dtype).reshape(shape).copy()
    return arrays, dict(metadata)

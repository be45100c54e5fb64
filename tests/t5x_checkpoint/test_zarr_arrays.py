"""zarr v2 readers: the numpy parser against TensorStore, chunking, damage and bad dtypes."""

from __future__ import annotations

import gzip
import json
import zlib

import ml_dtypes
import numpy as np
import pytest
import tensorstore as ts

from mt3x.t5x_checkpoint import T5xCheckpointError
from mt3x.t5x_checkpoint.zarr_arrays import (choose_chunks, read_zarr, read_zarr_numpy,
                                             read_zarr_tensorstore, write_zarr)


def _ts_write(folder, array, chunks, **extra):
    metadata = {"chunks": list(chunks), "compressor": {"id": "gzip"}, "shape": list(array.shape),
                **extra}
    store = ts.open({"driver": "zarr", "dtype": array.dtype.name, "metadata": metadata,
                     "kvstore": {"driver": "file", "path": str(folder) + "/"}},
                    create=True, open=True).result()
    store.write(array).result()


@pytest.mark.parametrize("shape,chunks,dtype,extra", [
    ((7, 5), (3, 2), np.float32, {}),                   # 3 x 3 chunks with ragged edges
    ((7, 5), (3, 2), np.float32, {"order": "F"}),
    ((6, 4), (4, 4), ml_dtypes.bfloat16, {}),
    ((2, 3, 4), (1, 2, 3), np.int32, {"dimension_separator": "/"}),
    ((), (), np.int32, {}),
    ((9,), (4,), np.float64, {}),
])
def test_numpy_reader_matches_tensorstore(tmp_path, shape, chunks, dtype, extra):
    array = (np.arange(int(np.prod(shape))) * 0.5 - 3).reshape(shape).astype(dtype)
    _ts_write(tmp_path / "a", array, chunks, **extra)
    by_numpy = read_zarr_numpy(tmp_path / "a")
    by_ts = read_zarr_tensorstore(tmp_path / "a")
    assert by_numpy.dtype == by_ts.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(by_numpy, array)
    np.testing.assert_array_equal(by_ts, array)


def test_hand_written_zlib_chunks_read_by_both(tmp_path):
    """A zarr folder written without TensorStore: big-endian zlib chunks, one chunk absent."""
    folder = tmp_path / "h"
    folder.mkdir()
    (folder / ".zarray").write_text(json.dumps({
        "zarr_format": 2, "shape": [4, 3], "chunks": [2, 3], "dtype": ">f4",
        "compressor": {"id": "zlib", "level": 5}, "fill_value": 7.0, "order": "C",
        "filters": None}))
    top = np.array([[1, 2, 3], [4, 5, 6]], ">f4")
    (folder / "0.0").write_bytes(zlib.compress(top.tobytes()))
    expected = np.array([[1, 2, 3], [4, 5, 6], [7, 7, 7], [7, 7, 7]], np.float32)
    np.testing.assert_array_equal(read_zarr_numpy(folder), expected)
    np.testing.assert_array_equal(read_zarr_tensorstore(folder), expected)


def test_spec_metadata_replaces_a_missing_zarray(tmp_path):
    """Some t5x folders lack `.zarray`; the spec's metadata in the msgpack is enough."""
    array = np.arange(10, dtype=np.float32).reshape(2, 5)
    _ts_write(tmp_path / "a", array, (2, 5))
    (tmp_path / "a" / ".zarray").unlink()
    meta = {"chunks": [2, 5], "compressor": {"id": "gzip", "level": 1}, "shape": [2, 5],
            "dtype": "float32"}
    np.testing.assert_array_equal(read_zarr(tmp_path / "a", fallback_meta=meta), array)
    with pytest.raises(T5xCheckpointError, match="no .zarray"):
        read_zarr(tmp_path / "a")


@pytest.mark.parametrize("backend", ["numpy", "tensorstore"])
def test_truncated_chunk_names_the_path(tmp_path, backend):
    array = np.random.default_rng(0).normal(size=(16, 16)).astype(np.float32)
    _ts_write(tmp_path / "a", array, (8, 16))
    chunk = tmp_path / "a" / "1.0"
    chunk.write_bytes(chunk.read_bytes()[:40])
    with pytest.raises(T5xCheckpointError) as info:
        read_zarr(tmp_path / "a", backend=backend)
    assert str(chunk if backend == "numpy" else tmp_path / "a") in str(info.value)


def test_wrong_decompressed_size_is_refused(tmp_path):
    folder = tmp_path / "a"
    _ts_write(folder, np.zeros((4, 4), np.float32) + 1, (4, 4))
    (folder / "0.0").write_bytes(gzip.compress(b"\0" * 12))
    with pytest.raises(T5xCheckpointError, match=r"0\.0: holds 12 bytes.*expected 64"):
        read_zarr_numpy(folder)


@pytest.mark.parametrize("backend", ["numpy", "tensorstore"])
def test_unknown_dtype_names_the_zarray(tmp_path, backend):
    folder = tmp_path / "a"
    _ts_write(folder, np.zeros(3, np.float32), (3,))
    header = json.loads((folder / ".zarray").read_text())
    header["dtype"] = "<q7"
    (folder / ".zarray").write_text(json.dumps(header))
    with pytest.raises(T5xCheckpointError, match=r"a/\.zarray: unknown or unsupported dtype"):
        read_zarr(folder, backend=backend)


def test_write_zarr_round_trips_with_several_chunks(tmp_path):
    array = np.random.default_rng(1).normal(size=(12, 10)).astype(ml_dtypes.bfloat16)
    metadata = write_zarr(tmp_path / "w", array, max_chunk_bytes=60)
    assert metadata["chunks"] == [6, 5] and metadata["compressor"] == {"id": "gzip", "level": 1}
    header = json.loads((tmp_path / "w" / ".zarray").read_text())
    assert header["dtype"] == "bfloat16" and header["compressor"] == {"id": "gzip", "level": 1}
    assert sorted(p.name for p in (tmp_path / "w").iterdir() if p.name != ".zarray") == \
        ["0.0", "0.1", "1.0", "1.1"]
    np.testing.assert_array_equal(read_zarr_numpy(tmp_path / "w"), array)


@pytest.mark.parametrize("shape,itemsize,limit", [((1536, 512), 4, 10**6), ((7, 5), 4, 40),
                                                 ((), 4, 1), ((13,), 2, 8)])
def test_chosen_chunks_divide_the_shape_and_respect_the_limit(shape, itemsize, limit):
    chunks = choose_chunks(shape, itemsize, limit)
    assert len(chunks) == len(shape)
    assert all(s % c == 0 for s, c in zip(shape, chunks))
    assert np.prod(chunks) * itemsize <= max(limit, itemsize)

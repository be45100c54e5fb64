"""The bundle parameter file is safetensors, written and checked by the `safetensors` package:
files from before the package was used still read (here and by the package), files the package
writes read in the bundle runtime, bfloat16 included, and bad files name the file."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy

from mt3x.bundles.safetensors import (SafetensorsError, parse_safetensors, read_safetensors,
                                      write_safetensors)

# Written by the hand-written writer this module had before it used the package (names sorted,
# data packed without alignment, a bfloat16 array first).
HAND_WRITTEN = (
    b'8\x01\x00\x00\x00\x00\x00\x00{"__metadata__":{"format":"mt3x-bundle/1","kind":"separator"},'
    b'"decoder/b":{"dtype":"BF16","shape":[3],"data_offsets":[0,6]},"encoder/w":{"dtype":"F32",'
    b'"shape":[2,2],"data_offsets":[6,22]},"mask":{"dtype":"BOOL","shape":[3],"data_offsets":'
    b'[22,25]},"step":{"dtype":"I32","shape":[1],"data_offsets":[25,29]}}       \x80?\x00\xbf\x00@'
    b'\x00\x00\xc0?\x00\x00\x00\xc0\x00\x00\x80>\x00\x00@@\x01\x00\x01\x07\x00\x00\x00')
ARRAYS = {"encoder/w": np.array([[1.5, -2.0], [0.25, 3.0]], np.float32),
          "decoder/b": np.array([1.0, -0.5, 2.0], ml_dtypes.bfloat16),
          "step": np.array([7], np.int32), "mask": np.array([True, False, True])}
METADATA = {"format": "mt3x-bundle/1", "kind": "separator"}


def _assert_same(got, want):
    assert sorted(got) == sorted(want)
    for name, array in want.items():
        assert got[name].dtype == array.dtype and got[name].shape == array.shape, name
        np.testing.assert_array_equal(got[name], array)


def test_files_written_before_the_package_read_here_and_in_the_package(tmp_path):
    path = tmp_path / "old.safetensors"
    path.write_bytes(HAND_WRITTEN)
    arrays, metadata = read_safetensors(path)
    _assert_same(arrays, ARRAYS)
    assert metadata == METADATA
    _assert_same(safetensors.numpy.load_file(path), ARRAYS)      # bfloat16 via the file API
    with safetensors.safe_open(path, framework="np") as handle:
        assert handle.metadata() == METADATA


def test_files_the_package_writes_read_in_the_bundle_runtime(tmp_path):
    plain = {k: v for k, v in ARRAYS.items() if v.dtype != ml_dtypes.bfloat16}
    path = tmp_path / "pkg.safetensors"
    safetensors.numpy.save_file(plain, path, metadata=METADATA)
    arrays, metadata = read_safetensors(path)
    _assert_same(arrays, plain)
    assert metadata == METADATA
    # the package's own bytes loader has no bfloat16; the runtime reads it from the same bytes
    blob = safetensors.numpy.save(ARRAYS)
    with pytest.raises(KeyError, match="BF16"):
        safetensors.numpy.load(blob)
    _assert_same(parse_safetensors(blob, "x")[0], ARRAYS)


def test_round_trip_is_deterministic_keeps_scalars_and_refuses_foreign_dtypes(tmp_path):
    arrays = {**ARRAYS, "scale": np.array(0.5, np.float16),
              "strided": np.arange(12, dtype=np.int64).reshape(3, 4)[:, ::2]}
    a = write_safetensors(tmp_path / "a.safetensors", arrays, METADATA)
    b = write_safetensors(tmp_path / "b.safetensors", dict(reversed(arrays.items())), METADATA)
    assert a.read_bytes() == b.read_bytes()
    got, metadata = read_safetensors(a)
    _assert_same(got, arrays)
    assert got["scale"].shape == () and metadata == METADATA
    _assert_same(safetensors.numpy.load_file(a), arrays)
    # the package's bytes exactly, where the package is deterministic (no or one metadata entry)
    for meta in (None, {"format": "mt3x-bundle/1"}, {"k": "ü"}):
        write_safetensors(tmp_path / "m.safetensors", arrays, meta)
        assert (tmp_path / "m.safetensors").read_bytes() == safetensors.numpy.save(
            {k: np.ascontiguousarray(v) if v.ndim else v for k, v in arrays.items()}, meta)
    with pytest.raises(SafetensorsError, match="complex128 cannot be stored"):
        write_safetensors(tmp_path / "c.safetensors", {"z": np.zeros(2, complex)})
    assert not (tmp_path / "c.safetensors").exists()


@pytest.mark.parametrize("blob, message", [
    (HAND_WRITTEN[:-3], "not fully covered"),
    (HAND_WRITTEN[:5], "header too small"),
    (b"\xff" * 16, "header too large"),
    (HAND_WRITTEN.replace(b'"F32"', b'"F8X"'), "not a readable safetensors file"),
])
def test_bad_files_name_the_file_and_the_problem(tmp_path, blob, message):
    path = tmp_path / "params.safetensors"
    path.write_bytes(blob)
    with pytest.raises(SafetensorsError, match=message) as info:
        read_safetensors(path)
    assert str(info.value).startswith(f"{path}: ")

"""The offline cache of tokenised pieces: its record format, shards and manifest (no TF, no JAX).

A cache holds MT3's per-piece output, the stage before the random 256-frame chunk (what seqio's
`CacheDatasetPlaceholder` marks): every track tokenised (`examples.tokenize_track`,
is_training=True) and split into pieces of <= 2000 frames (`examples.split_frames`).
```
<cache>/manifest.json                                  written last: the cache is complete
<cache>/<split>/pieces-00003-of-00008.array_record     ArrayRecord, one record per piece
<cache>/<split>/pieces-00003-of-00008.array_record.json  the shard's tracks, pieces, fingerprint
```
A record is `pack_arrays` bytes (a JSON header of names, dtypes, shapes, offsets, then the raw
arrays; read back as zero-copy views; no pickle) holding
  inputs        int16[F, 128] (x scale), float16[F, 128] or float32[F, 128]: 16 kHz frames
  inputs_scale  float32[]     multiply int16 inputs by it (1 for float inputs)
  input_times   float32[F]    frame start times (s)
  targets       int32[E]      the track's single-step codec events (whole track, as MT3)
  input_event_start_indices, input_event_end_indices, input_state_event_indices  int32[F]
  state_events  int32[S]      tie sections (empty without ties)
  track_id      uint8[n]      UTF-8 bytes; piece_index int32[]
`decode_piece` returns the keys of `mt3x.tasks.examples` (inputs as float32) so the Grain driver
feeds the same numpy functions as the seqio driver.

The manifest names the task, the codec, the dataset fingerprint and every shard; training
refuses a cache that does not match what it was asked for (`check_manifest`).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from array_record.python.array_record_module import ArrayRecordWriter

from mt3x.codec import vocabulary as codec_vocabulary
from mt3x.errors import Mt3xError
from mt3x.tasks.examples import FRAME_KEYS, PIECE_KEYS
from mt3x.util.files import atomic_path

CACHE_FORMAT = "mt3x-piece-cache"
CACHE_VERSION = 1
MANIFEST_NAME = "manifest.json"
AUDIO_DTYPES = ("int16", "float16", "float32")
_INT16_MAX = 32767.0
_MAGIC = b"MT3XPC1\0"


class CacheError(Mt3xError):
    """A piece cache that is missing, incomplete, or does not match the requested task."""


# ------------------------------------------------------------------------------ records


def pack_arrays(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Named arrays -> bytes: magic, uint32 header length, a JSON header (name, dtype, shape,
    offset of each array) and the arrays' bytes (8-byte aligned). No pickle, no code."""
    header, chunks, offset = [], [], 0
    for name, value in arrays.items():
        value = np.asarray(value)
        if value.dtype.kind not in "biuf":
            raise CacheError(f"pack_arrays: {name} has dtype {value.dtype}; numbers only")
        header.append([name, value.dtype.str, list(value.shape), offset])
        data = value.tobytes()
        chunks.append(data + b"\0" * (-len(data) % 8))
        offset += len(chunks[-1])
    text = json.dumps(header).encode()
    text += b" " * (-(len(_MAGIC) + 4 + len(text)) % 8)
    return _MAGIC + np.uint32(len(text)).tobytes() + text + b"".join(chunks)


def unpack_arrays(record: bytes) -> dict[str, np.ndarray]:
    """`pack_arrays`'s bytes -> named read-only arrays (views of `record`, no copy)."""
    if record[:len(_MAGIC)] != _MAGIC:
        raise CacheError("cache record: bad magic (not written by mt3x.tasks.cache)")
    start = len(_MAGIC) + 4
    size = int(np.frombuffer(record, np.uint32, 1, len(_MAGIC))[0])
    base = start + size
    arrays = {}
    for name, dtype, shape, offset in json.loads(record[start:base]):
        dtype = np.dtype(dtype)
        count = math.prod(shape)
        arrays[name] = np.frombuffer(record, dtype, count, base + offset).reshape(shape)
    return arrays


def encode_piece(piece: Mapping[str, Any], *, audio_dtype: str = "int16", track_id: str = "",
                 piece_index: int = 0) -> bytes:
    """One piece (the keys of `examples.split_frames`, inputs f32[F, 128]) -> record bytes.

    int16 audio is scaled per piece by its peak (scale = peak / 32767; 0.5 LSB error at most).
    The track id is stored as its UTF-8 bytes (uint8[n]).
    """
    if audio_dtype not in AUDIO_DTYPES:
        raise CacheError(f"audio_dtype {audio_dtype!r}; expected one of {AUDIO_DTYPES}")
    inputs = np.asarray(piece["inputs"], np.float32)
    scale = np.float32(1.0)
    if audio_dtype == "int16":
        peak = float(np.abs(inputs).max()) if inputs.size else 0.0
        scale = np.float32(peak / _INT16_MAX if peak > 0 else 1.0)
        stored = np.clip(np.rint(inputs / scale), -_INT16_MAX, _INT16_MAX).astype(np.int16)
    else:
        stored = inputs.astype(audio_dtype)
    arrays = {"inputs": stored, "inputs_scale": scale,
              "input_times": np.asarray(piece["input_times"], np.float32),
              "track_id": np.frombuffer(str(track_id).encode(), np.uint8),
              "piece_index": np.int32(piece_index)}
    for key in FRAME_KEYS[2:] + PIECE_KEYS:
        arrays[key] = np.asarray(piece[key], np.int32).reshape(-1)
    return pack_arrays(arrays)


def decode_piece(record: bytes, *, dequantize: bool = True) -> dict[str, Any]:
    """Record bytes -> {inputs f32[F, 128], input_times f32[F], the index keys i32[F], targets
    i32[E], state_events i32[S], track_id str, piece_index int}.

    With `dequantize=False` the inputs stay as stored (int16 / float16 / float32, read-only)
    beside `inputs_scale`; `dequantize_inputs` converts a chunk of them later (cheaper than
    converting the whole piece when only a chunk is used).
    """
    arrays = unpack_arrays(record)
    arrays["track_id"] = arrays["track_id"].tobytes().decode()
    arrays["piece_index"] = int(arrays["piece_index"])
    if dequantize:
        arrays = dequantize_inputs(arrays)
    return arrays


def dequantize_inputs(example: Mapping[str, Any]) -> dict[str, Any]:
    """{inputs as stored, inputs_scale} -> {inputs f32[F, 128] = stored x scale}."""
    out = {k: v for k, v in example.items() if k != "inputs_scale"}
    inputs = np.asarray(example["inputs"]).astype(np.float32)
    scale = np.float32(example.get("inputs_scale", 1.0))
    if scale != 1.0:
        inputs *= scale
    out["inputs"] = inputs
    return out


def write_shard(path: str | Path, records: Iterable[bytes]) -> int:
    """Writes `records` to one ArrayRecord file atomically (temporary name, then rename);
    returns how many were written."""
    count = 0
    with atomic_path(path) as tmp:
        writer = ArrayRecordWriter(str(tmp), "group_size:1,uncompressed")
        try:
            for record in records:
                writer.write(record)
                count += 1
        finally:
            writer.close()
    return count


def shard_name(index: int, count: int) -> str:
    """'pieces-00003-of-00008.array_record'."""
    return f"pieces-{index:05d}-of-{count:05d}.array_record"


# ------------------------------------------------------------------------------ manifest


def cache_task_name(dataset_name: str, vocab: str) -> str:
    """The task a cache serves: `{name}_notes[_ties]_{vocab abbrev}`, the seqio train task's
    name (`mt3x.tasks.registry`) without its `_train` suffix, e.g. 'slakh_notes_ties_vb1'."""
    config = codec_vocabulary.get_config(vocab)
    prefix = f"{dataset_name}_notes" + ("_ties" if config.use_ties else "")
    return "_".join(p for p in (prefix, config.vocab.abbrev_str) if p)


def codec_description(vocab: str) -> dict[str, Any]:
    """What fixes the cached tokens: the preset's vocabulary, ties and the codec's id ranges."""
    config = codec_vocabulary.get_config(vocab)
    codec = config.codec
    return {
        "vocab": vocab,
        "steps_per_second": int(config.vocab.steps_per_second),
        "max_shift_seconds": int(config.vocab.max_shift_seconds),
        "num_velocity_bins": int(config.vocab.num_velocity_bins),
        "use_ties": bool(config.use_ties),
        "onsets_only": bool(config.onsets_only),
        "num_classes": int(codec.num_classes),
        "event_ranges": [[r.type, int(r.min_value), int(r.max_value)]
                         for r in codec.event_ranges],
    }


def fingerprint(parts: Iterable[Any]) -> str:
    """sha256 hex digest of the JSON of `parts` (a stable content hash)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, default=str).encode())
        digest.update(b"\0")
    return digest.hexdigest()


def manifest_path(cache_dir: str | Path) -> Path:
    return Path(cache_dir) / MANIFEST_NAME


def write_manifest(cache_dir: str | Path, manifest: Mapping[str, Any]) -> Path:
    """Writes `<cache>/manifest.json` atomically."""
    path = manifest_path(cache_dir)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return path


def load_manifest(cache_dir: str | Path) -> dict[str, Any]:
    """The manifest of a complete cache; CacheError naming the file when it is missing or bad."""
    path = manifest_path(cache_dir)
    if not path.is_file():
        raise CacheError(f"{path}: no cache manifest (build the cache with `mt3x-data cache`; "
                         "a cache without a manifest is incomplete)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CacheError(f"{path}: unreadable manifest ({err})") from err
    if not isinstance(manifest, dict) or manifest.get("format") != CACHE_FORMAT:
        raise CacheError(f"{path}: not an mt3x piece cache (format {CACHE_FORMAT!r} expected)")
    if manifest.get("version") != CACHE_VERSION:
        raise CacheError(f"{path}: cache version {manifest.get('version')}, this mt3x reads "
                         f"version {CACHE_VERSION}; rebuild it with `mt3x-data cache`")
    return manifest


def check_manifest(manifest: Mapping[str, Any], *, vocab: str, dataset_name: str,
                   program_source: str | None = None, splits: Sequence[str] = ("train",),
                   dataset_fingerprints: Mapping[str, str] | None = None,
                   where: str = "cache") -> None:
    """Refuses a cache built for another task, codec, program source, split or dataset.

    Args:
      manifest: `load_manifest`'s dict.
      vocab, dataset_name, program_source: what the run asks for.
      splits: splits the run reads from the cache.
      dataset_fingerprints: split -> `dataset fingerprint` of the run's dataset folder, when the
        folder is at hand (None: not checked).
      where: the cache's path, for messages.
    Raises:
      CacheError naming the field, the cache's value and the expected one.
    """
    expected = {"task": cache_task_name(dataset_name, vocab), "codec": codec_description(vocab)}
    if program_source is not None:
        expected["program_source"] = program_source
    for field, value in expected.items():
        if manifest.get(field) != value:
            raise CacheError(f"{where}: manifest {field} is {manifest.get(field)!r} but the run "
                             f"needs {value!r}; rebuild the cache with `mt3x-data cache` for "
                             f"this task (vocab={vocab!r}, name={dataset_name!r})")
    cached = manifest.get("splits", {})
    for split in splits:
        if split not in cached or not cached[split].get("pieces"):
            raise CacheError(f"{where}: split {split!r} is not in the cache (has "
                             f"{sorted(cached)}); build it with `mt3x-data cache --splits`")
        if dataset_fingerprints and split in dataset_fingerprints and \
                cached[split].get("dataset_fingerprint") != dataset_fingerprints[split]:
            raise CacheError(f"{where}: split {split!r} was cached from other data than "
                             f"{manifest.get('dataset_root')} holds now (dataset fingerprint "
                             "differs); rebuild the cache with `mt3x-data cache`")


def shard_paths(cache_dir: str | Path, manifest: Mapping[str, Any], split: str) -> list[str]:
    """The ArrayRecord files of `split`, in manifest order; CacheError when one is missing."""
    root = Path(cache_dir)
    paths = []
    for shard in manifest["splits"][split]["shards"]:
        path = root / shard["path"]
        if not path.is_file():
            raise CacheError(f"{path}: shard listed in {manifest_path(root)} is missing")
        paths.append(str(path))
    return paths

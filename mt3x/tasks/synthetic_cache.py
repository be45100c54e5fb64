"""A small piece cache of random tracks, for benchmarks and tests of the Grain pipeline.

No audio files, no TensorFlow: each track is random notes (three pitched programs and drums) and
audio of decaying sines at the notes' pitches plus noise, tokenised by the same functions as a
real cache (`examples.tokenize_track`, `examples.split_frames`) and written with the cache's
writer, under the task name `synthetic_notes[_ties]_...`. `write_tracks_cache` caches any
in-memory tracks the same way (tests compare the Grain and seqio drivers on them).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import note_seq
import numpy as np

from mt3x.audio.mt3_config import MT3_SPECTROGRAM_CONFIG
from mt3x.codec import vocabulary as codec_vocabulary
from mt3x.tasks import examples
from mt3x.tasks.cache import (CACHE_FORMAT, CACHE_VERSION, cache_task_name, codec_description,
                              encode_piece, fingerprint, shard_name, write_manifest, write_shard)

SYNTHETIC_NAME = "synthetic"
_PROGRAMS = (0, 33, 40)


def random_track(rng: np.random.Generator, seconds: float
                 ) -> tuple[np.ndarray, note_seq.NoteSequence]:
    """(audio f32[seconds * 16000] in [-1, 1], its NoteSequence) of random notes."""
    rate = MT3_SPECTROGRAM_CONFIG.sample_rate
    ns = note_seq.NoteSequence(ticks_per_quarter=220)
    audio = 0.01 * rng.standard_normal(int(seconds * rate)).astype(np.float32)
    t = np.arange(len(audio)) / rate
    for start in np.sort(rng.uniform(0.0, seconds - 0.5, int(seconds * 4))):
        duration = float(rng.uniform(0.1, 0.5))
        pitch = int(rng.integers(36, 84))
        drum = bool(rng.random() < 0.2)
        ns.notes.add(pitch=pitch, velocity=100, start_time=float(start),
                     end_time=float(start + duration), is_drum=drum,
                     program=0 if drum else int(rng.choice(_PROGRAMS)),
                     instrument=9 if drum else 0)
        window = (t >= start) & (t < start + duration)
        freq = 440.0 * 2 ** ((pitch - 69) / 12)
        audio[window] += 0.2 * np.sin(2 * np.pi * freq * t[window]) * np.exp(
            -3 * (t[window] - start))
    ns.total_time = seconds
    return np.clip(audio, -1, 1), ns


def write_tracks_cache(out: str | os.PathLike,
                       tracks_by_split: Mapping[str, Sequence[tuple[str, np.ndarray, Any]]], *,
                       dataset_name: str = SYNTHETIC_NAME, vocab: str = "mt3",
                       audio_dtype: str = "int16") -> Path:
    """Caches in-memory tracks {split: [(track id, audio f32[n] at 16 kHz, NoteSequence or its
    bytes)]}, one shard per split, as `mt3x-data cache` would (same tokenisation, pieces and
    format; the dataset fingerprint hashes the track ids, audio and sequences). Returns `out`."""
    out = Path(out)
    config = codec_vocabulary.get_config(vocab)
    splits = {}
    for split, tracks in tracks_by_split.items():
        records, frames, prints = [], 0, []
        for track_id, audio, sequence in tracks:
            tokenized = examples.tokenize_track(audio, sequence, config, is_training=True)
            prints.append([track_id, hashlib.sha256(np.asarray(audio).tobytes()).hexdigest(),
                           hashlib.sha256(tokenized["sequence"]).hexdigest()])
            for piece_index, piece in enumerate(examples.split_frames(tokenized)):
                frames += len(piece["inputs"])
                records.append(encode_piece(piece, audio_dtype=audio_dtype, track_id=track_id,
                                            piece_index=piece_index))
        name = shard_name(0, 1)
        write_shard(out / split / name, records)
        print_ = fingerprint(prints)
        splits[split] = {"dataset_fingerprint": print_, "pieces": len(records),
                         "frames": frames, "tracks": len(tracks), "tracks_failed": [],
                         "shards": [{"path": f"{split}/{name}", "pieces": len(records),
                                     "frames": frames, "fingerprint": print_}]}
    write_manifest(out, {
        "format": CACHE_FORMAT, "version": CACHE_VERSION,
        "task": cache_task_name(dataset_name, vocab), "codec": codec_description(vocab),
        "program_source": "in-memory", "settings": {"audio_dtype": audio_dtype},
        "dataset_root": None, "sample_rate": MT3_SPECTROGRAM_CONFIG.sample_rate,
        "hop_width": MT3_SPECTROGRAM_CONFIG.hop_width, "splits": splits})
    return out


def write_synthetic_cache(out: str | os.PathLike, *, tracks: int = 4, seconds: float = 20.0,
                          seed: int = 0, vocab: str = "mt3", split: str = "train",
                          audio_dtype: str = "int16") -> Path:
    """Writes `tracks` random tracks of `seconds` s (`random_track`) as one cached split at
    `out`, task `cache_task_name('synthetic', vocab)`. Returns `out`."""
    rng = np.random.default_rng(seed)
    rows = [(f"Track{i:05d}", *random_track(rng, seconds)) for i in range(tracks)]
    return write_tracks_cache(out, {split: rows}, vocab=vocab, audio_dtype=audio_dtype)

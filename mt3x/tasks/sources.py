"""seqio data sources over Slakh2100-layout folders (real Slakh, BabySlakh or synthetic).

Each source example is one track:
  audio     f32[samples]  the mixture at 16 kHz (mono)
  sequence  string        serialized NoteSequence of the rendered stems, one program per stem
  track_id  string        e.g. 'Track00001'
  id        string        '<split>/<track_id>' (sequence id)

The NoteSequence is `mt3x.data.slakh.track_note_sequence` (the one builder, shared with the
evaluation references): MT3's Slakh tokenizer by default, each stem's `inst_class` mapped to one
program ('Drums' -> drum track), sustain pedal applied per stem, pitch bends ignored, only stems
whose audio is in the mix (`audio_rendered`). `program_source='midi'` keeps each stem's own
`program` from metadata instead.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import seqio
import tensorflow as tf

from mt3x.audio.mt3_config import MT3_SPECTROGRAM_CONFIG
from mt3x.data.slakh import PROGRAM_SOURCES, SlakhTrack, read_split, track_note_sequence
from mt3x.errors import Mt3xError

log = logging.getLogger(__name__)


class TaskSourceError(Mt3xError):
    """A dataset folder or split cannot serve as a task source."""


def list_tracks(root: str | Path, split: str) -> list[SlakhTrack]:
    """The tracks of `root/split/Track*` (`mt3x.data.slakh.read_split`)."""
    return list(read_split(Path(root), split))


class SlakhDataSource(seqio.DataSource):
    """Tracks of a Slakh-layout folder as a seqio source, one example per track.

    Splits map to folder names (default: train/validation/test, plus 'eval' = validation, the
    name MT3's train tasks give their teacher-forced evaluation split). Tracks are listed on first
    use. Audio is read and resampled in parallel tf.data workers; with `shuffle`, the track order
    is permuted by `seed`.

    Args:
      root: dataset folder (holding train/, validation/, test/).
      split_folders: seqio split name -> folder name under root.
      program_source: 'slakh_class' (MT3) or 'midi'.
    """

    def __init__(self, root: str | Path, split_folders: dict[str, str] | None = None,
                 program_source: str = "slakh_class"):
        if program_source not in PROGRAM_SOURCES:
            raise TaskSourceError(f"program_source {program_source!r}; expected one of "
                                  f"{PROGRAM_SOURCES}")
        self._root = Path(root)
        self._split_folders = dict(split_folders or {
            "train": "train", "validation": "validation", "test": "test",
            "eval": "validation"})
        self._program_source = program_source
        self._tracks: dict[str, list] = {}
        super().__init__(splits=tuple(self._split_folders), num_input_examples=None,
                         caching_permitted=True)

    @property
    def root(self) -> Path:
        return self._root

    @property
    def supports_arbitrary_sharding(self) -> bool:
        return False

    def tracks(self, split: str) -> list:
        """The SlakhTracks of a split (cached after the first listing)."""
        if split not in self._split_folders:
            raise TaskSourceError(f"{self._root}: unknown split {split!r}; expected one of "
                                  f"{sorted(self._split_folders)}")
        folder = self._split_folders[split]
        if folder not in self._tracks:
            self._tracks[folder] = list_tracks(self._root, folder)
        return self._tracks[folder]

    def num_tracks(self, split: str) -> int:
        """Number of tracks in a split (the mixture rate uses it)."""
        return len(self.tracks(split))

    def num_input_examples(self, split: str) -> None:
        """None on purpose: seqio would otherwise hold the whole split's audio in memory
        (`Task.get_dataset` caches sources under 10,000 examples). See `num_tracks`."""
        return None

    def list_shards(self, split: str) -> Sequence[str]:
        return [str(t.path) for t in self.tracks(split)]

    def load_example(self, split: str, index: int) -> tuple[np.ndarray, bytes, str, str]:
        """(audio f32[samples] @ 16 kHz, serialized NoteSequence, track id, sequence id)."""
        track = self.tracks(split)[index]
        audio = np.asarray(track.load_mix(sample_rate=MT3_SPECTROGRAM_CONFIG.sample_rate),
                           np.float32).reshape(-1)
        ns = track_note_sequence(track, program_source=self._program_source)
        folder = self._split_folders[split]
        return audio, ns.SerializeToString(), str(track.track_id), f"{folder}/{track.track_id}"

    def get_dataset(self, split: str = "train", shuffle: bool = True, seed: int | None = None,
                    shard_info: seqio.ShardInfo | None = None, *, sequence_length=None,
                    use_cached: bool = False, num_epochs: int | None = 1) -> tf.data.Dataset:
        del sequence_length, use_cached, num_epochs
        n = len(self.tracks(split))
        order = np.arange(n)
        if shuffle:
            order = np.random.default_rng(seed).permutation(n)
        if shard_info and shard_info.num_shards > 1:
            order = order[shard_info.index::shard_info.num_shards]
        ds = tf.data.Dataset.from_tensor_slices(order.astype(np.int64))

        def load(i):
            audio, seq, track_id, seq_id = tf.numpy_function(
                lambda j: self.load_example(split, int(j)), [i],
                [tf.float32, tf.string, tf.string, tf.string], stateful=False)
            audio.set_shape([None])
            for t in (seq, track_id, seq_id):
                t.set_shape([])
            return {"audio": audio, "sequence": seq, "track_id": track_id, "id": seq_id}

        return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)


class InMemoryDataSource(seqio.DataSource):
    """A source over in-memory examples {audio f32[n] @ 16 kHz, sequence bytes, track_id} (tests,
    notebooks). Same output keys as SlakhDataSource."""

    def __init__(self, examples_by_split: dict[str, list[dict]]):
        self._examples = {k: list(v) for k, v in examples_by_split.items()}
        super().__init__(splits=tuple(self._examples), num_input_examples=None,
                         caching_permitted=True)

    @property
    def supports_arbitrary_sharding(self) -> bool:
        return False

    def num_tracks(self, split: str) -> int:
        return len(self._examples[split])

    def num_input_examples(self, split: str) -> None:
        return None

    def list_shards(self, split: str) -> Sequence[str]:
        return [str(i) for i in range(len(self._examples[split]))]

    def get_dataset(self, split: str = "train", shuffle: bool = True, seed: int | None = None,
                    shard_info: seqio.ShardInfo | None = None, *, sequence_length=None,
                    use_cached: bool = False, num_epochs: int | None = 1) -> tf.data.Dataset:
        del sequence_length, use_cached, num_epochs
        examples = self._examples[split]
        order = np.arange(len(examples))
        if shuffle:
            order = np.random.default_rng(seed).permutation(len(examples))
        if shard_info and shard_info.num_shards > 1:
            order = order[shard_info.index::shard_info.num_shards]
        rows = [(examples[i], i) for i in order]

        def generate():
            for row, i in rows:
                track_id = row.get("track_id", f"Track{i:05d}")
                yield {"audio": np.asarray(row["audio"], np.float32).reshape(-1),
                       "sequence": row["sequence"], "track_id": track_id,
                       "id": f"{split}/{track_id}"}

        return tf.data.Dataset.from_generator(generate, output_signature={
            "audio": tf.TensorSpec([None], tf.float32),
            "sequence": tf.TensorSpec([], tf.string),
            "track_id": tf.TensorSpec([], tf.string),
            "id": tf.TensorSpec([], tf.string)})

"""Reader for any folder in Slakh2100's layout: synthetic builds, Slakh2100, redux, BabySlakh.

```
ROOT/{train,validation,test,omitted}/TrackXXXXX/
    metadata.yaml   mix.flac|mix.wav   all_src.mid   stems/SXX.flac|.wav   MIDI/SXX.mid
```
Paths are built from folder names, never from metadata (one real metadata file carries absolute
paths of its authoring machine). Stems with `audio_rendered: false` have no audio (loading them
raises) but their notes are available on request. Program and drum flag come from the metadata,
not the MIDI file.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import yaml

from mt3x.audio.io import read_audio
from mt3x.errors import Mt3xError

AUDIO_SUFFIXES = (".flac", ".wav")
SPLIT_NAMES = ("train", "validation", "test", "omitted")


class DatasetError(Mt3xError):
    """A Slakh-layout folder is missing files or has bad metadata."""


@dataclasses.dataclass(frozen=True)
class SlakhStem:
    """One source of a track. Paths are None where the file does not exist."""

    name: str
    program: int
    is_drum: bool
    inst_class: str
    midi_program_name: str
    audio_rendered: bool
    audio_path: Path | None
    midi_path: Path | None


def _find_audio(folder: Path, stem: str) -> Path | None:
    for suffix in AUDIO_SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


@dataclasses.dataclass(frozen=True)
class SlakhTrack:
    """A track: its folder, split (the parent folder's name), stems in name order, mix path."""

    track_id: str
    split: str
    path: Path
    stems: list[SlakhStem]
    mix_path: Path

    def stem(self, name: str) -> SlakhStem:
        for stem in self.stems:
            if stem.name == name:
                return stem
        raise DatasetError(f"{self.path}: no stem {name!r}; stems are {[s.name for s in self.stems]}")

    @property
    def rendered_stems(self) -> list[SlakhStem]:
        return [s for s in self.stems if s.audio_rendered]

    def load_mix(self, sample_rate: int | None = None) -> np.ndarray:
        """The mixture, `f32[samples]` mono at `sample_rate` (None: the file's rate)."""
        return read_audio(self.mix_path, sample_rate=sample_rate)[0]

    def load_stem(self, name: str, sample_rate: int | None = None) -> np.ndarray:
        """One stem's audio, `f32[samples]` mono; raises DatasetError for unrendered stems."""
        stem = self.stem(name)
        if not stem.audio_rendered or stem.audio_path is None:
            raise DatasetError(f"{self.path / 'metadata.yaml'}: stem {name} has no audio "
                               f"(audio_rendered: false)")
        return read_audio(stem.audio_path, sample_rate=sample_rate)[0]

    def sample_rate(self) -> int:
        """The mixture file's sample rate in Hz."""
        from mt3x.audio.io import audio_info

        return int(audio_info(self.mix_path).samplerate)

    def stem_note_sequence(self, name: str):
        """The stem's notes as a `note_seq.NoteSequence` (program/is_drum from metadata)."""
        stem = self.stem(name)
        if stem.midi_path is None:
            raise DatasetError(f"{self.path}: stem {name} has no MIDI file MIDI/{name}.mid")
        return _read_stem_midi(stem, instrument=0)

    def note_sequence(self, *, include_unrendered: bool = False):
        """All stems' notes in one NoteSequence; instrument = stem index.

        Stems whose audio was not rendered are left out unless `include_unrendered`; stems without
        a MIDI file are left out.
        """
        note_seq = _note_seq()
        merged = note_seq.NoteSequence(ticks_per_quarter=220)
        for index, stem in enumerate(self.stems):
            if stem.midi_path is None or not (stem.audio_rendered or include_unrendered):
                continue
            part = _read_stem_midi(stem, instrument=index)
            merged.notes.extend(part.notes)
            merged.total_time = max(merged.total_time, part.total_time)
        if not merged.tempos:
            merged.tempos.add(qpm=120.0)
        return merged


def _note_seq():
    import warnings

    with warnings.catch_warnings():  # note_seq imports pydub, which warns about a missing ffmpeg
        warnings.simplefilter("ignore")
        import note_seq
    return note_seq


def _read_stem_midi(stem: SlakhStem, instrument: int):
    note_seq = _note_seq()

    try:
        sequence = note_seq.midi_file_to_note_sequence(str(stem.midi_path))
    except Exception as err:
        raise DatasetError(f"{stem.midi_path}: MIDI file does not parse ({type(err).__name__}: {err})") from err
    out = note_seq.NoteSequence(ticks_per_quarter=sequence.ticks_per_quarter)
    out.tempos.add(qpm=120.0)
    for note in sequence.notes:
        new = out.notes.add()
        new.CopyFrom(note)
        new.program = stem.program
        new.is_drum = stem.is_drum
        new.instrument = instrument
    out.total_time = max((n.end_time for n in out.notes), default=0.0)
    return out


def _field(stem_meta: dict, key: str, kind, where: str, default=None):
    value = stem_meta.get(key, default)
    if value is None:
        raise DatasetError(f"{where}: missing field {key!r}")
    if kind is bool:
        if isinstance(value, str):
            value = value.strip().lower() in ("true", "yes", "1")
        return bool(value)
    try:
        return kind(value)
    except (TypeError, ValueError) as err:
        raise DatasetError(f"{where}: field {key!r} should be {kind.__name__}, got {value!r}") from err


def read_track(track_dir: str | os.PathLike) -> SlakhTrack:
    """Reads one TrackXXXXX folder.

    Raises:
      DatasetError: missing folder, metadata.yaml or mix; unparseable metadata or missing fields;
        a stem marked rendered whose audio file is missing.
    """
    track_dir = Path(track_dir)
    meta_path = track_dir / "metadata.yaml"
    if not track_dir.is_dir():
        raise DatasetError(f"{track_dir}: track folder not found")
    if not meta_path.is_file():
        raise DatasetError(f"{meta_path}: metadata file not found")
    try:
        metadata = yaml.safe_load(meta_path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise DatasetError(f"{meta_path}: corrupt metadata, YAML does not parse ({err})") from err
    if not isinstance(metadata, dict) or not isinstance(metadata.get("stems"), dict):
        raise DatasetError(f"{meta_path}: corrupt metadata, expected a mapping with a 'stems' mapping")
    mix_path = _find_audio(track_dir, "mix")
    if mix_path is None:
        raise DatasetError(f"{track_dir}: mix.flac (or mix.wav) not found")
    stems = []
    for name in sorted(metadata["stems"]):
        meta = metadata["stems"][name]
        where = f"{meta_path}: stems.{name}"
        if not isinstance(meta, dict):
            raise DatasetError(f"{where}: expected a mapping of stem fields, got {meta!r}")
        is_drum = _field(meta, "is_drum", bool, where, default=False)
        program = _field(meta, "program_num", int, where, default=0 if is_drum else None)
        rendered = _field(meta, "audio_rendered", bool, where, default=True)
        audio_path = _find_audio(track_dir / "stems", str(name))
        if rendered and audio_path is None:
            raise DatasetError(f"{track_dir / 'stems' / (str(name) + '.flac')}: stem audio file missing "
                               f"(metadata says audio_rendered: true)")
        midi_path = track_dir / "MIDI" / f"{name}.mid"
        stems.append(SlakhStem(
            name=str(name), program=program, is_drum=is_drum,
            inst_class=str(meta.get("inst_class", "Drums" if is_drum else "")),
            midi_program_name=str(meta.get("midi_program_name", "")),
            audio_rendered=rendered, audio_path=audio_path if rendered else None,
            midi_path=midi_path if midi_path.is_file() else None,
        ))
    return SlakhTrack(track_id=track_dir.name, split=track_dir.parent.name, path=track_dir,
                      stems=stems, mix_path=mix_path)


def list_track_dirs(root: str | os.PathLike, split: str) -> list[Path]:
    """Sorted TrackXXXXX folders under root/split (temporary and hidden folders excluded)."""
    folder = Path(root) / split
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_dir() and p.name.startswith("Track") and not p.name.startswith("."))


def read_split(root: str | os.PathLike, split: str) -> list[SlakhTrack]:
    """Every track of root/split in id order.

    Raises:
      DatasetError: the split has no tracks, or a track is broken.
    """
    dirs = list_track_dirs(root, split)
    if not dirs:
        raise DatasetError(f"{Path(root) / split}: no Track* folders (expected a Slakh2100-layout "
                           f"split, one of {SPLIT_NAMES})")
    return [read_track(d) for d in dirs]

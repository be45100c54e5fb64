"""Reader for any folder in Slakh2100's layout: synthetic builds, Slakh2100, redux, BabySlakh.

```
ROOT/{train,validation,test,omitted}/TrackXXXXX/
    metadata.yaml   mix.flac|mix.wav   all_src.mid   stems/SXX.flac|.wav   MIDI/SXX.mid
```
Paths are built from folder names, never from metadata (one real metadata file carries absolute
paths of its authoring machine). Stems with `audio_rendered: false` have no audio (loading them
raises) but their notes are available on request. Program and drum flag come from the metadata,
not the MIDI file; `track_note_sequence` is the one builder of a track's NoteSequence (MT3's
training semantics: Slakh-class programs, sustain pedal applied).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import note_seq
import numpy as np
import yaml

from mt3x.audio.io import audio_info, read_audio
from mt3x.data.instruments import SLAKH_CLASS_PROGRAMS
from mt3x.data.midi import read_midi_note_sequence
from mt3x.errors import Mt3xError
from mt3x.util.files import resolve_inside

AUDIO_SUFFIXES = (".flac", ".wav")
SPLIT_NAMES = ("train", "validation", "test", "omitted")
PROGRAM_SOURCES = ("slakh_class", "midi")


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
        return int(audio_info(self.mix_path).samplerate)

    def stem_note_sequence(self, name: str, *, sustain: bool = True) -> note_seq.NoteSequence:
        """One stem's notes (`mt3x.data.midi.read_midi_note_sequence`), program and drum flag
        from metadata (`SlakhStem.program`, `is_drum`), instrument 0, sustain pedal applied unless
        `sustain=False`; no control changes."""
        stem = self.stem(name)
        if stem.midi_path is None:
            raise DatasetError(f"{self.path}: stem {name} has no MIDI file MIDI/{name}.mid")
        return _stem_notes(stem, stem.program, stem.is_drum, instrument=0, sustain=sustain)

    def note_sequence(self, *, program_source: str = "slakh_class", sustain: bool = True,
                      include_unrendered: bool = False) -> note_seq.NoteSequence:
        """All stems' notes in one NoteSequence: `track_note_sequence(self, ...)`."""
        return track_note_sequence(self, program_source=program_source, sustain=sustain,
                                   include_unrendered=include_unrendered)


def stem_program(stem: SlakhStem, program_source: str = "slakh_class") -> tuple[int, bool]:
    """(program, is_drum) of a stem.

    Args:
      program_source: 'slakh_class' (MT3's Slakh tokenizer: the stem's `inst_class` mapped by
        `SLAKH_CLASS_PROGRAMS`, 'Drums' -> drum track with program 0; a class missing from the
        map falls back to the metadata program, where MT3 would raise) or 'midi' (the stem's own
        metadata `program_num` and `is_drum`).
    """
    if program_source not in PROGRAM_SOURCES:
        raise DatasetError(f"program_source {program_source!r}; expected one of "
                           f"{PROGRAM_SOURCES}")
    if program_source == "midi":
        return int(stem.program), bool(stem.is_drum)
    if stem.is_drum or stem.inst_class == "Drums":
        return 0, True
    if stem.inst_class in SLAKH_CLASS_PROGRAMS:
        return SLAKH_CLASS_PROGRAMS[stem.inst_class], False
    return int(stem.program), False


def track_note_sequence(track: SlakhTrack, *, program_source: str = "slakh_class",
                        sustain: bool = True, include_unrendered: bool = False
                        ) -> note_seq.NoteSequence:
    """THE NoteSequence of a Slakh-layout track: training targets, evaluation references and
    every `track.note_sequence()` come from here.

    Each stem's MIDI file is read with `mt3x.data.midi.read_midi_note_sequence`, the sustain
    pedal applied per stem (as MT3's Slakh tokenizer does; `sustain=False` keeps the raw note
    ends), and its notes copied with the stem's `stem_program(stem, program_source)`; pitch bends
    and control changes are dropped. Notes keep their stem's index in `track.stems` as
    `instrument` (one instrument per stem, as MT3's `add_track_to_notesequence`).

    Args:
      program_source: 'slakh_class' (default, MT3's training programs) or 'midi' (metadata).
      sustain: apply the sustain pedal (default, as training does).
      include_unrendered: also take stems with `audio_rendered: false` (their notes are not in
        the mix, so training and evaluation leave them out). Stems without MIDI are skipped.

    Returns:
      NoteSequence (seconds, ticks_per_quarter 220, one 120 qpm tempo), `id` = track id,
      `total_time` = the last note end.
    """
    merged = note_seq.NoteSequence(ticks_per_quarter=220)
    merged.tempos.add(qpm=120.0)
    for index, stem in enumerate(track.stems):
        if stem.midi_path is None or not (stem.audio_rendered or include_unrendered):
            continue
        program, is_drum = stem_program(stem, program_source)
        part = _stem_notes(stem, program, is_drum, instrument=index, sustain=sustain)
        merged.notes.extend(part.notes)
        merged.total_time = max(merged.total_time, part.total_time)
    merged.id = str(track.track_id)
    return merged


def _stem_notes(stem: SlakhStem, program: int, is_drum: bool, *, instrument: int,
                sustain: bool) -> note_seq.NoteSequence:
    """The notes of a stem's MIDI file with the given program, drum flag and instrument."""
    sequence = read_midi_note_sequence(stem.midi_path, sustain=sustain)
    out = note_seq.NoteSequence(ticks_per_quarter=sequence.ticks_per_quarter)
    out.tempos.add(qpm=120.0)
    for note in sequence.notes:
        new = out.notes.add()
        new.CopyFrom(note)
        new.program = program
        new.is_drum = is_drum
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
        for folder, suffix in (("stems", ".flac"), ("MIDI", ".mid")):
            try:  # the stem's name becomes a file name: it must stay inside the track
                resolve_inside(track_dir / folder, f"{name}{suffix}", source=str(meta_path),
                               field=f"stem name (under {folder}/)")
            except Mt3xError as err:
                raise DatasetError(str(err)) from None
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

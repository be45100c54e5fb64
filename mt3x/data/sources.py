"""MIDI sources: pieces made of parts, from music21's bundled corpus or a folder of MIDI files.

A `Piece` is a list of `Part`s, each a `pretty_midi.Instrument` (notes in seconds, the source's
program and drum flag). Pieces are named by a stable id (`music21:bach/bwv269`, `midi:song.mid`) that
seeds and splits use. Loading is lazy and per piece, so worker processes load only what they render.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import io
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pretty_midi

from mt3x.errors import Mt3xError

MIDI_SUFFIXES = (".mid", ".midi")


class MidiError(Mt3xError):
    """A MIDI file or corpus piece does not parse, or has no notes."""


@dataclasses.dataclass
class Part:
    """One voice of a piece.

    Attributes:
      name: the part's name in the source ('Soprano', 'Piano right hand', ...).
      instrument: notes (seconds), control changes and pitch bends, with the source's program and
        is_drum.
    """

    name: str
    instrument: pretty_midi.Instrument

    @property
    def end_time(self) -> float:
        return max((n.end for n in self.instrument.notes), default=0.0)


@dataclasses.dataclass
class Piece:
    """A multi-part piece; `end_time` is in seconds; `tempo_bpm` is the first tempo."""

    piece_id: str
    parts: list[Part]
    tempo_bpm: float = 120.0

    @property
    def end_time(self) -> float:
        return max((p.end_time for p in self.parts), default=0.0)


def _from_pretty_midi(piece_id: str, midi: pretty_midi.PrettyMIDI, origin: str) -> Piece:
    parts = [Part(name=inst.name or f"part{i}", instrument=inst)
             for i, inst in enumerate(midi.instruments) if inst.notes]
    if not parts:
        raise MidiError(f"{origin}: MIDI has no notes")
    _, tempi = midi.get_tempo_changes()
    tempo = float(tempi[0]) if len(tempi) else 120.0
    return Piece(piece_id=piece_id, parts=parts, tempo_bpm=tempo)


def load_midi_file(path: str | os.PathLike, piece_id: str | None = None) -> Piece:
    """Reads a MIDI file into a Piece (one part per non-empty instrument track).

    Raises:
      MidiError: the file is missing, does not parse, or has no notes.
    """
    path = Path(path)
    if not path.is_file():
        raise MidiError(f"{path}: MIDI file not found")
    try:
        midi = pretty_midi.PrettyMIDI(str(path))
    except Exception as err:  # mido/pretty_midi raise many types on malformed files
        raise MidiError(f"{path}: MIDI file does not parse ({type(err).__name__}: {err})") from err
    return _from_pretty_midi(piece_id or f"midi:{path.name}", midi, str(path))


def list_midi_dir(midi_dir: str | os.PathLike) -> list[str]:
    """Piece ids (`midi:<relative path>`) of every .mid/.midi file under `midi_dir`, sorted."""
    root = Path(midi_dir)
    if not root.is_dir():
        raise MidiError(f"{root}: MIDI folder not found")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES and p.is_file())
    if not files:
        raise MidiError(f"{root}: no .mid or .midi files in this folder")
    return [f"midi:{p.relative_to(root).as_posix()}" for p in files]


def list_music21_corpus(
    *, composer: str | None = "bach", collection: str | None = "chorales", limit: int | None = None,
) -> list[str]:
    """Piece ids (`music21:<corpus path>`) from music21's bundled corpus, sorted.

    Args:
      composer: corpus composer folder ('bach', 'beethoven', 'mozart', ...), several
        comma-separated ('mozart,haydn'), or None for all.
      collection: 'chorales' restricts to the Bach chorales (about 370 files; about 340 with four
        parts), or None.
      limit: keep the first `limit` ids.

    Listing parses nothing; the builder filters by number of parts when pieces load.
    """
    from music21 import corpus

    if collection == "chorales":
        names = sorted(set(corpus.chorales.Iterator(returnType="filename")))
        ids = [f"music21:{name}" for name in names]
    elif collection is not None:
        raise MidiError(f"collection: expected 'chorales' or None, got {collection!r}")
    else:
        names = [c.strip() for c in (composer or "").split(",") if c.strip()]
        paths = [p for name in names for p in corpus.getComposer(name)] if names else corpus.getCorePaths()
        base = Path(corpus.__file__).parent
        ids = sorted({f"music21:{_corpus_relative(Path(p), base)}" for p in paths})
    return ids[:limit] if limit else ids


def _corpus_relative(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).with_suffix("").as_posix()
    except ValueError:
        return path.with_suffix("").as_posix()


def _seconds_map(score) -> "callable":
    """quarter-length offset -> seconds, following the score's metronome marks (default 120 bpm)."""
    boundaries = []
    try:
        for start, end, mark in score.metronomeMarkBoundaries():
            boundaries.append((float(start), float(end), float(mark.getQuarterBPM() or 120.0)))
    except Exception:  # scores without any mark
        boundaries = []
    if not boundaries:
        boundaries = [(0.0, float("inf"), 120.0)]
    starts_sec = [0.0]
    for (s0, e0, bpm) in boundaries[:-1]:
        starts_sec.append(starts_sec[-1] + (e0 - s0) * 60.0 / bpm)

    def to_seconds(ql: float) -> float:
        for (s0, e0, bpm), base in zip(boundaries, starts_sec):
            if ql < e0 or (s0, e0, bpm) == boundaries[-1]:
                return base + (ql - s0) * 60.0 / bpm
        return ql * 0.5

    return to_seconds


@functools.lru_cache(maxsize=512)
def _load_music21(name: str) -> Piece:
    from music21 import corpus

    try:
        score = corpus.parse(name)
        try:
            score = score.expandRepeats()  # as music21's own MIDI export does
        except Exception:  # inconsistent repeat marks: keep the score as written
            pass
        to_seconds = _seconds_map(score)
        parts = []
        for index, part in enumerate(score.parts):
            inst = pretty_midi.Instrument(program=0, name=part.partName or f"part{index}")
            for element in part.stripTies().flatten().notes:
                onset = float(element.offset)
                start = to_seconds(onset)
                end = to_seconds(onset + float(element.quarterLength))
                velocity = element.volume.velocity if element.volume.velocity is not None else 90
                if end - start <= 1e-4:
                    continue  # grace notes
                for pitch in element.pitches:
                    inst.notes.append(pretty_midi.Note(int(velocity), int(pitch.midi), start, end))
            inst.notes.sort(key=lambda n: (n.start, n.pitch))
            if inst.notes:
                parts.append(Part(name=inst.name, instrument=inst))
        boundaries = list(score.metronomeMarkBoundaries()) if parts else []
        tempo = float(boundaries[0][2].getQuarterBPM() or 120.0) if boundaries else 120.0
    except Exception as err:
        raise MidiError(f"music21 corpus piece {name!r}: cannot parse or convert "
                        f"({type(err).__name__}: {err})") from err
    if not parts:
        raise MidiError(f"music21 corpus piece {name!r}: no notes")
    return Piece(piece_id=f"music21:{name}", parts=parts, tempo_bpm=tempo)


def load_piece(piece_id: str, *, midi_dir: str | os.PathLike | None = None) -> Piece:
    """Loads a piece by id (a fresh copy; callers may modify it).

    Raises:
      MidiError: unknown id scheme, missing/broken file, or no notes.
    """
    scheme, _, name = piece_id.partition(":")
    if scheme == "music21":
        return copy.deepcopy(_load_music21(name))
    if scheme == "midi":
        if midi_dir is None:
            raise MidiError(f"{piece_id}: a MIDI folder (--midi-dir) is needed to load this piece")
        return load_midi_file(Path(midi_dir) / name, piece_id)
    raise MidiError(f"{piece_id}: unknown piece id scheme {scheme!r}; expected 'music21:' or 'midi:'")


# ----------------------------------------------------------------------------- part transforms

def crop_instrument(inst: pretty_midi.Instrument, start: float, end: float) -> pretty_midi.Instrument:
    """Notes overlapping [start, end) seconds, shifted so `start` is 0 and cut at `end`."""
    out = pretty_midi.Instrument(program=inst.program, is_drum=inst.is_drum, name=inst.name)
    for note in inst.notes:
        if note.end <= start or note.start >= end:
            continue
        s, e = max(note.start, start) - start, min(note.end, end) - start
        if e - s > 1e-4:
            out.notes.append(pretty_midi.Note(note.velocity, note.pitch, s, e))
    for cc in inst.control_changes:
        if start <= cc.time < end:
            out.control_changes.append(pretty_midi.ControlChange(cc.number, cc.value, cc.time - start))
    for bend in inst.pitch_bends:
        if start <= bend.time < end:
            out.pitch_bends.append(pretty_midi.PitchBend(bend.pitch, bend.time - start))
    out.notes.sort(key=lambda n: (n.start, n.pitch))
    return out


def loop_instrument(inst: pretty_midi.Instrument, period: float, length: float) -> pretty_midi.Instrument:
    """Repeats the notes every `period` seconds to fill `length` seconds (then crops there)."""
    if period <= 0:
        raise MidiError("loop_instrument: period must be positive")
    out = pretty_midi.Instrument(program=inst.program, is_drum=inst.is_drum, name=inst.name)
    repeats = int(np.ceil(length / period))
    for k in range(repeats):
        for note in inst.notes:
            if note.start < period:
                out.notes.append(pretty_midi.Note(note.velocity, note.pitch,
                                                  note.start + k * period, min(note.end, period) + k * period))
    return crop_instrument(out, 0.0, length)


def transpose_instrument(inst: pretty_midi.Instrument, semitones: int) -> pretty_midi.Instrument:
    """Shifts pitches by `semitones`, folding by octaves into the MIDI range 0..127."""
    out = copy.deepcopy(inst)
    for note in out.notes:
        pitch = note.pitch + semitones
        while pitch < 0:
            pitch += 12
        while pitch > 127:
            pitch -= 12
        note.pitch = pitch
    return out


def drum_part(length: float, tempo_bpm: float, rng: np.random.Generator) -> Part:
    """A seeded backbeat (kick 1 and 3, snare 2 and 4, closed hi-hat on eighths) for `length` s."""
    beat = 60.0 / max(30.0, min(float(tempo_bpm), 240.0))
    inst = pretty_midi.Instrument(program=0, is_drum=True, name="Drums")
    swing = float(rng.uniform(0.0, 0.08))
    n_beats = int(np.floor(length / beat))
    for b in range(n_beats):
        t = b * beat
        pitch = 36 if b % 2 == 0 else 38
        inst.notes.append(pretty_midi.Note(int(rng.integers(90, 120)), pitch, t, t + 0.1))
        for half in (0.0, 0.5 + swing):
            th = t + half * beat
            if th + 0.05 < length:
                inst.notes.append(pretty_midi.Note(int(rng.integers(55, 85)), 42, th, th + 0.05))
    inst.notes.sort(key=lambda n: (n.start, n.pitch))
    return Part(name="Drums", instrument=inst)


def source_programs(parts: Sequence[Part]) -> list[tuple[int, bool]]:
    """(program, is_drum) of each part as the source gives it."""
    return [(int(p.instrument.program), bool(p.instrument.is_drum)) for p in parts]

"""NoteSequence -> timed note events (MT3's `note_sequences` encoding half).

Order of operations for a transcription target (MT3's tokenizers in `preprocessors.py`):
`validate_note_sequence` -> `apply_sustain` (then control changes are dropped) ->
`trim_overlapping_notes` (training data only) -> `note_sequence_to_onsets_and_offsets_and_programs`
-> `mt3x.codec.event_index.encode_and_index_events` with `note_event_data_to_events`.
`prepare_note_sequence` does the first three.

Per note, the encoder emits (non-drum onset) `program, velocity, pitch`; (offset)
`program, velocity 0, pitch`; (drum onset) `velocity, drum`. Notes are sorted by
(is_drum, program, pitch) and offsets are listed before onsets, so that the stable sort by time
puts offsets first at equal times.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import MutableMapping, Sequence

import note_seq

from mt3x.codec.codec import Codec, Event
from mt3x.codec.vocabulary import (MAX_MIDI_PITCH, MAX_MIDI_PROGRAM, MAX_MIDI_VELOCITY,
                                   MIN_MIDI_PITCH, MIN_MIDI_PROGRAM,
                                   num_velocity_bins_from_codec, velocity_to_bin)
from mt3x.errors import Mt3xError

NoteSequence = note_seq.NoteSequence


class NoteSequenceError(Mt3xError):
    """A NoteSequence that cannot be turned into MT3 targets (bad pitch, time, velocity...)."""


# -- validation and clean-up ----------------------------------------------------------------------
def _describe(ns: NoteSequence, source: str | None) -> str:
    return source or ns.filename or ns.id or "NoteSequence"


def validate_note_sequence(ns: NoteSequence, *, source: str | None = None) -> None:
    """Raises NoteSequenceError unless every note is encodable.

    A note must have 0 <= pitch <= 127, 0 <= program <= 127, 1 <= velocity <= 127, finite
    start_time >= 0 and end_time > start_time (MT3 rejects zero-length and zero-velocity notes).
    `source` (a file name) is quoted in the message; otherwise ns.filename or ns.id.
    """
    for i, note in enumerate(ns.notes):
        where = (f"{_describe(ns, source)}: note {i} (pitch {note.pitch}, "
                 f"{note.start_time:g}-{note.end_time:g} s)")
        if not MIN_MIDI_PITCH <= note.pitch <= MAX_MIDI_PITCH:
            raise NoteSequenceError(f"{where}: pitch must be in 0..127")
        if not MIN_MIDI_PROGRAM <= note.program <= MAX_MIDI_PROGRAM:
            raise NoteSequenceError(f"{where}: program {note.program} must be in 0..127")
        if not (math.isfinite(note.start_time) and math.isfinite(note.end_time)):
            raise NoteSequenceError(f"{where}: times must be finite")
        if note.start_time < 0:
            raise NoteSequenceError(f"{where}: start_time must be >= 0")
        if note.start_time >= note.end_time:
            raise NoteSequenceError(f"{where}: end_time must be > start_time "
                                    "(zero-length or reversed note)")
        if not 1 <= note.velocity <= MAX_MIDI_VELOCITY:
            raise NoteSequenceError(f"{where}: velocity {note.velocity} must be in 1..127")


def drop_zero_length_notes(ns: NoteSequence) -> tuple[NoteSequence, int]:
    """Copy of `ns` without notes whose end_time <= start_time, and how many were dropped.

    For callers that prefer a counted skip to `validate_note_sequence`'s error (MIDI files often
    hold note-on/off pairs on one tick).
    """
    out = NoteSequence()
    out.CopyFrom(ns)
    keep = [n for n in ns.notes if n.end_time > n.start_time]
    dropped = len(ns.notes) - len(keep)
    if dropped:
        del out.notes[:]
        out.notes.extend(keep)
    return out, dropped


def apply_sustain(ns: NoteSequence) -> NoteSequence:
    """Copy with sustain pedal (CC 64) applied per instrument and all control changes removed."""
    out = note_seq.apply_sustain_control_changes(ns)
    del out.control_changes[:]
    return out


def trim_overlapping_notes(ns: NoteSequence) -> NoteSequence:
    """Copy where a note overlapping the next onset of its (pitch, program, is_drum) is clipped
    to that onset; notes left with zero length are dropped (MT3, training data only)."""
    out = NoteSequence()
    out.CopyFrom(ns)
    channels: dict[tuple[int, int, bool], list] = collections.defaultdict(list)
    for note in out.notes:
        channels[(note.pitch, note.program, note.is_drum)].append(note)
    for notes in channels.values():
        notes = sorted(notes, key=lambda n: n.start_time)  # stable: file order breaks ties
        for prev, nxt in zip(notes[:-1], notes[1:]):
            if prev.end_time > nxt.start_time:
                prev.end_time = nxt.start_time
    valid = [n for n in out.notes if n.start_time < n.end_time]
    if len(valid) != len(out.notes):
        kept = [NoteSequence.Note() for _ in valid]
        for dst, src in zip(kept, valid):
            dst.CopyFrom(src)
        del out.notes[:]
        out.notes.extend(kept)
    return out


def prepare_note_sequence(ns: NoteSequence, *, is_training: bool, sustain: bool = True,
                          source: str | None = None) -> NoteSequence:
    """validate -> sustain (+ drop control changes) -> trim overlaps if `is_training`. A copy."""
    validate_note_sequence(ns, source=source)
    if sustain:
        ns = apply_sustain(ns)
    else:
        ns = _copy(ns)
        del ns.control_changes[:]
    if is_training:
        ns = trim_overlapping_notes(ns)
    return ns


def _copy(ns: NoteSequence) -> NoteSequence:
    out = NoteSequence()
    out.CopyFrom(ns)
    return out


# -- timed event values ---------------------------------------------------------------------------
@dataclasses.dataclass
class NoteEventData:
    """One note onset or offset. velocity None: onset-only; 0: offset; program None: no programs."""

    pitch: int
    velocity: int | None = None
    program: int | None = None
    is_drum: bool | None = None
    instrument: int | None = None


def note_sequence_to_onsets(ns: NoteSequence) -> tuple[list[float], list[NoteEventData]]:
    """Onset times (s) and pitches, sorted by pitch (onset-only targets)."""
    notes = sorted(ns.notes, key=lambda n: n.pitch)
    return [n.start_time for n in notes], [NoteEventData(pitch=n.pitch) for n in notes]


def note_sequence_to_onsets_and_offsets(
        ns: NoteSequence) -> tuple[list[float], list[NoteEventData]]:
    """Offset then onset events with velocities, no programs (offsets first at equal times)."""
    notes = sorted(ns.notes, key=lambda n: n.pitch)
    times = [n.end_time for n in notes] + [n.start_time for n in notes]
    values = ([NoteEventData(pitch=n.pitch, velocity=0) for n in notes]
              + [NoteEventData(pitch=n.pitch, velocity=n.velocity) for n in notes])
    return times, values


def note_sequence_to_onsets_and_offsets_and_programs(
        ns: NoteSequence) -> tuple[list[float], list[NoteEventData]]:
    """MT3 multi-instrument events: non-drum offsets, then all onsets; notes sorted by
    (is_drum, program, pitch). Times are in seconds and not yet sorted."""
    notes = sorted(ns.notes, key=lambda n: (n.is_drum, n.program, n.pitch))
    times = ([n.end_time for n in notes if not n.is_drum] + [n.start_time for n in notes])
    values = ([NoteEventData(pitch=n.pitch, velocity=0, program=n.program, is_drum=False)
               for n in notes if not n.is_drum]
              + [NoteEventData(pitch=n.pitch, velocity=n.velocity, program=n.program,
                               is_drum=n.is_drum) for n in notes])
    return times, values


# -- events and encoding state --------------------------------------------------------------------
@dataclasses.dataclass
class NoteEncodingState:
    """Velocity bin (> 0) of every sounding (pitch, program).

    MT3 keeps ended notes with bin 0 and skips them when dumping; removing them instead gives
    the same tie sections without re-sorting every note ever played before each event.
    """

    active_pitches: MutableMapping[tuple[int, int], int] = dataclasses.field(default_factory=dict)


def _set_active(state: NoteEncodingState, key: tuple[int, int], velocity_bin: int) -> None:
    if velocity_bin:
        state.active_pitches[key] = velocity_bin
    else:
        state.active_pitches.pop(key, None)


def note_event_data_to_events(state: NoteEncodingState | None, value: NoteEventData,
                              codec: Codec) -> list[Event]:
    """The events for one onset/offset, updating `state` (when given) for tie sections."""
    if value.velocity is None:
        return [Event("pitch", value.pitch)]
    velocity_bin = velocity_to_bin(value.velocity, num_velocity_bins_from_codec(codec))
    if value.program is None:
        if state is not None:
            _set_active(state, (value.pitch, 0), velocity_bin)
        return [Event("velocity", velocity_bin), Event("pitch", value.pitch)]
    if value.is_drum:
        return [Event("velocity", velocity_bin), Event("drum", value.pitch)]
    if state is not None:
        _set_active(state, (value.pitch, int(value.program)), velocity_bin)
    return [Event("program", value.program), Event("velocity", velocity_bin),
            Event("pitch", value.pitch)]


def note_encoding_state_to_events(state: NoteEncodingState) -> list[Event]:
    """Tie section: `program, pitch` per sounding note sorted by (program, pitch), then `tie`."""
    events: list[Event] = []
    for program, pitch in sorted((k[1], k[0]) for k, v in state.active_pitches.items() if v):
        events += [Event("program", program), Event("pitch", pitch)]
    events.append(Event("tie", 0))
    return events


def events_to_indices(events: Sequence[Event], codec: Codec) -> list[int]:
    return [codec.encode(e.type, e.value) for e in events]

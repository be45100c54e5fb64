"""Tokens -> NoteSequence: MT3's decoding state machine (`note_sequences`, `decode_events`,
`metrics_utils.decode_and_combine_predictions`).

One `NoteDecodingState` runs over a whole file: segments are decoded in start-time order, each
until a shift passes the next segment's start (the remaining tokens are counted as dropped). Tokens
that are not codec events, and events that are impossible in the current state (note-off of a
silent pitch, a tie outside a tie section, a drum with velocity 0, time going backwards...), are
skipped and counted as invalid; they never raise.

Decoding health (`DecodeResult`): besides MT3's invalid and dropped events, a file reports its
duplicate notes (`count_duplicate_notes`: notes that repeat an earlier note's onset step, pitch
and program, the signature of a decoder that repeats itself) and, for model ids, the segments
that hit the token limit (`hit_token_limit`: no EOS within the decoded length).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable, MutableMapping, MutableSet, Sequence, Union

import note_seq
import numpy as np

from mt3x.codec.codec import Codec, CodecError, Event
from mt3x.codec.event_index import step_floor
from mt3x.codec.vocabulary import (EOS_ID, TranscriptionConfig, TokenVocabulary,
                                   bin_to_velocity, get_config, num_velocity_bins_from_codec,
                                   vocabulary_from_codec)

DEFAULT_VELOCITY = 100
DEFAULT_NOTE_DURATION = 0.01  # drums and onset-only notes (s)
MIN_NOTE_DURATION = 0.01      # every decoded note lasts at least this long (s)


@dataclasses.dataclass
class NoteDecodingState:
    """Decoding state for one file.

    Attributes:
      current_time: time (s) of the last event.
      current_velocity: MIDI velocity applied to following pitches (0 = note-off).
      current_program: program applied to following pitches.
      active_pitches: (pitch, program) -> (onset time s, velocity) of sounding notes.
      tied_pitches: (pitch, program) re-declared in the current tie section.
      is_tie_section: between a segment start and its `tie` token.
      note_sequence: the notes decoded so far.
    """

    current_time: float = 0.0
    current_velocity: int = DEFAULT_VELOCITY
    current_program: int = 0
    active_pitches: MutableMapping[tuple[int, int], tuple[float, int]] = dataclasses.field(
        default_factory=dict)
    tied_pitches: MutableSet[tuple[int, int]] = dataclasses.field(default_factory=set)
    is_tie_section: bool = False
    note_sequence: note_seq.NoteSequence = dataclasses.field(
        default_factory=lambda: note_seq.NoteSequence(ticks_per_quarter=220))


def _add_note(ns: note_seq.NoteSequence, start_time: float, end_time: float, pitch: int,
              velocity: int, program: int = 0, is_drum: bool = False) -> None:
    end_time = max(end_time, start_time + MIN_NOTE_DURATION)
    ns.notes.add(start_time=start_time, end_time=end_time, pitch=pitch, velocity=velocity,
                 program=program, is_drum=is_drum)
    ns.total_time = max(ns.total_time, end_time)


def decode_note_onset_event(state: NoteDecodingState, time: float, event: Event,
                            codec: Codec) -> bool:
    """Onset-only decoding: a pitch is a 10 ms note at velocity 100. Returns False if invalid."""
    if event.type != "pitch":
        return False
    state.note_sequence.notes.add(start_time=time, end_time=time + DEFAULT_NOTE_DURATION,
                                  pitch=event.value, velocity=DEFAULT_VELOCITY)
    state.note_sequence.total_time = max(state.note_sequence.total_time,
                                         time + DEFAULT_NOTE_DURATION)
    return True


def decode_note_event(state: NoteDecodingState, time: float, event: Event,
                      codec: Codec) -> bool:
    """Applies one event at `time` (s) to `state`. Returns False (state as MT3 leaves it) when
    the event is invalid in the current state."""
    if time < state.current_time:
        return False
    state.current_time = time
    key = (event.value, state.current_program)
    if event.type == "pitch":
        if state.is_tie_section:
            if key not in state.active_pitches or key in state.tied_pitches:
                return False  # tie of a silent note, or tied twice
            state.tied_pitches.add(key)
        elif state.current_velocity == 0:
            if key not in state.active_pitches:
                return False  # note-off of a silent note
            onset_time, onset_velocity = state.active_pitches.pop(key)
            _add_note(state.note_sequence, onset_time, time, event.value, onset_velocity,
                      program=state.current_program)
        else:
            if key in state.active_pitches:
                # Onset of a sounding note: end the old note here, start a new one.
                onset_time, onset_velocity = state.active_pitches.pop(key)
                _add_note(state.note_sequence, onset_time, time, event.value, onset_velocity,
                          program=state.current_program)
            state.active_pitches[key] = (time, state.current_velocity)
    elif event.type == "drum":
        if state.current_velocity == 0:
            return False
        _add_note(state.note_sequence, time, time + DEFAULT_NOTE_DURATION, event.value,
                  state.current_velocity, is_drum=True)
    elif event.type == "velocity":
        state.current_velocity = bin_to_velocity(event.value,
                                                 num_velocity_bins_from_codec(codec))
    elif event.type == "program":
        state.current_program = event.value
    elif event.type == "tie":
        if not state.is_tie_section:
            return False
        for pitch_program in list(state.active_pitches):
            if pitch_program not in state.tied_pitches:
                onset_time, onset_velocity = state.active_pitches.pop(pitch_program)
                _add_note(state.note_sequence, onset_time, state.current_time,
                          pitch_program[0], onset_velocity, program=pitch_program[1])
        state.is_tie_section = False
    else:
        return False  # e.g. a shift handed in directly
    return True


def begin_tied_pitches_section(state: NoteDecodingState) -> None:
    """Start of a segment with ties: following pitches re-declare sounding notes until `tie`."""
    state.tied_pitches = set()
    state.is_tie_section = True


def assign_instruments(ns: note_seq.NoteSequence) -> None:
    """Instrument numbers in place: non-drum programs by first appearance (skipping 9), drums 9."""
    program_instruments: dict[int, int] = {}
    for note in ns.notes:
        if note.is_drum:
            note.instrument = 9
        elif note.program not in program_instruments:
            n = len(program_instruments)
            note.instrument = n if n < 9 else n + 1
            program_instruments[note.program] = note.instrument
        else:
            note.instrument = program_instruments[note.program]


def flush_note_decoding_state(state: NoteDecodingState) -> note_seq.NoteSequence:
    """Ends every sounding note and returns the NoteSequence (instruments assigned).

    As MT3: all notes still sounding end together at max(last event time, latest of their
    onsets + 10 ms).
    """
    for onset_time, _ in state.active_pitches.values():
        state.current_time = max(state.current_time, onset_time + MIN_NOTE_DURATION)
    for (pitch, program), (onset_time, velocity) in list(state.active_pitches.items()):
        _add_note(state.note_sequence, onset_time, state.current_time, pitch, velocity,
                  program=program)
    state.active_pitches.clear()
    assign_instruments(state.note_sequence)
    return state.note_sequence


def decode_events(state: NoteDecodingState, tokens: Sequence[int] | np.ndarray,
                  start_time: float, max_time: float | None, codec: Codec,
                  decode_event_fn=decode_note_event) -> tuple[int, int]:
    """Decodes one segment's codec tokens into `state` (MT3's `decode_events`).

    Args:
      tokens: int[n] codec indices (run-length-encoded shifts, absolute within the segment).
      start_time: segment start (s).
      max_time: the next segment's start (s); once a shift passes it, the rest of the tokens are
        dropped. None (or 0, as in MT3) for no limit.
    Returns:
      (invalid_events, dropped_events).
    """
    invalid = dropped = 0
    cur_steps = 0
    cur_time = start_time
    tokens = np.asarray(tokens).reshape(-1)
    n = int(tokens.shape[0])
    for idx, token in enumerate(tokens.tolist()):
        try:
            event = codec.decode_event_index(token)
        except CodecError:
            invalid += 1
            continue
        if event.type == "shift":
            cur_steps += event.value
            cur_time = start_time + cur_steps / codec.steps_per_second
            if max_time and cur_time > max_time:
                dropped = n - idx
                break
        else:
            cur_steps = 0
            if not decode_event_fn(state, cur_time, event, codec):
                invalid += 1
    return invalid, dropped


@dataclasses.dataclass
class DecodeResult:
    """A decoded file: notes plus how many tokens were invalid or dropped (MT3's counters), and
    the decoding-health counters.

    truncated_segments: segments whose model ids hold no EOS (the decoder hit its token limit;
      always 0 when decoding codec indices, which carry no EOS).
    duplicate_notes: notes repeating an earlier note's (onset step, pitch, program, is_drum).
    """

    note_sequence: note_seq.NoteSequence
    invalid_events: int
    dropped_events: int
    truncated_segments: int = 0
    duplicate_notes: int = 0


def hit_token_limit(ids: Sequence[int] | np.ndarray, eos_id: int = EOS_ID) -> bool:
    """True when a segment's int[length] model ids contain no EOS: greedy decoding ran until
    the token limit instead of ending the segment (its last events may be cut)."""
    ids = np.asarray(ids).reshape(-1)
    return bool(ids.size) and not bool(np.any(ids == eos_id))


def count_duplicate_notes(ns: note_seq.NoteSequence, steps_per_second: float = 100.0) -> int:
    """Notes whose (onset step at `steps_per_second`, pitch, program, is_drum) repeats an
    earlier note's; 0 for a sequence without repeated onsets."""
    seen: set[tuple[int, int, int, bool]] = set()
    duplicates = 0
    for note in ns.notes:
        key = (int(round(note.start_time * steps_per_second)), int(note.pitch),
               0 if note.is_drum else int(note.program), bool(note.is_drum))
        if key in seen:
            duplicates += 1
        else:
            seen.add(key)
    return duplicates


SegmentLike = Union[tuple[float, Sequence[int]], "object"]


def _segment_items(segments: Iterable) -> list[tuple[float, np.ndarray]]:
    items = []
    for seg in segments:
        if hasattr(seg, "start_time") and hasattr(seg, "tokens"):
            start, tokens = seg.start_time, seg.tokens
        else:
            start, tokens = seg
        start = float(start)
        if not math.isfinite(start) or start < 0:
            raise CodecError(f"segment start time must be finite and >= 0, got {start}")
        items.append((start, np.asarray(tokens).reshape(-1)))
    return items


def tokens_to_note_sequence(
    segments: Iterable[SegmentLike],
    config: TranscriptionConfig | Codec | str = "mt3",
    *,
    use_ties: bool | None = None,
    onsets_only: bool | None = None,
    from_model_ids: bool = False,
    vocabulary: TokenVocabulary | None = None,
    round_start_times: bool = True,
) -> DecodeResult:
    """Decodes a file's segments into one NoteSequence.

    Args:
      segments: (start_time_seconds, tokens) pairs (or objects with .start_time and .tokens,
        e.g. `Segment`) in any order; they are sorted by start time (stable).
      config: a TranscriptionConfig or preset name ('mt3', 'ismir2021'), or a bare Codec (then
        `use_ties` defaults to False and `onsets_only` to False).
      use_ties / onsets_only: override the config.
      from_model_ids: tokens are model ids (codec index + 3, EOS = 1, as the network emits):
        each segment is cut at its first EOS; PAD, UNK and extra ids count as invalid events.
        Otherwise tokens are codec indices.
      vocabulary: the model vocabulary for `from_model_ids` (default: from the codec).
      round_start_times: round start times down to the codec step (10 ms), as MT3's
        postprocessing does, so shifts count from the step the encoder indexed.

    Returns:
      DecodeResult(note_sequence, invalid_events, dropped_events, truncated_segments,
      duplicate_notes).
    """
    if isinstance(config, Codec):
        codec = config
        use_ties = bool(use_ties)
        onsets_only = bool(onsets_only)
    else:
        cfg = get_config(config)
        codec = cfg.codec
        use_ties = cfg.use_ties if use_ties is None else use_ties
        onsets_only = cfg.onsets_only if onsets_only is None else onsets_only
    if use_ties and onsets_only:
        raise CodecError("ties are not supported with onset-only decoding")
    if from_model_ids and vocabulary is None:
        vocabulary = vocabulary_from_codec(codec)

    items = _segment_items(segments)
    if round_start_times:
        items = [(step_floor(t, codec.steps_per_second), tok) for t, tok in items]
    items.sort(key=lambda item: item[0])

    state = NoteDecodingState()
    decode_fn = decode_note_onset_event if onsets_only else decode_note_event
    invalid_total = dropped_total = truncated = 0
    for i, (start, tokens) in enumerate(items):
        if from_model_ids:
            truncated += hit_token_limit(tokens)
            tokens = vocabulary.decode_to_codec_tokens(tokens)
        if use_ties:
            begin_tied_pitches_section(state)
        max_time = items[i + 1][0] if i + 1 < len(items) else None
        invalid, dropped = decode_events(state, tokens, start, max_time, codec, decode_fn)
        invalid_total += invalid
        dropped_total += dropped
    if onsets_only:
        ns = state.note_sequence
    else:
        ns = flush_note_decoding_state(state)
    return DecodeResult(ns, invalid_total, dropped_total, truncated_segments=truncated,
                        duplicate_notes=count_duplicate_notes(ns, codec.steps_per_second))

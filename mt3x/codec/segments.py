"""One-call tokenisation: NoteSequence -> indexed events -> per-segment target tokens.

The training chain of MT3 (`mt3/tasks.py`), with the function of this package for each step:

1. tokenize a whole file ...... `tokenize_note_sequence(ns, frame_times, cfg, is_training=True)`
2. split into cached chunks ... slice the per-frame arrays of `IndexedEvents`
3. random 256-frame chunk ..... (caller: pick `frame_start`, `frame_end`)
4. extract targets with ties .. `extract_target_sequence`   (4-6 in one call:
5. map programs ............... `map_program_tokens`         `chunk_targets(indexed, a, b, cfg)`)
6. run-length encode shifts ... `run_length_encode_shifts`
7. mix examples (optional) .... `merge_run_length_encoded_targets`
8. remove redundant state ..... `remove_redundant_state_changes`  (8-9 in one call:
9. append EOS (model ids) ..... `TokenVocabulary.encode` + EOS     `finalize_targets(tokens, cfg)`)

`note_sequence_to_segments` runs 1, 4-6 and 8 over consecutive segments of a whole file (the
evaluation / inference layout) and `tokens_to_note_sequence` inverts it.
"""

from __future__ import annotations

import dataclasses

import note_seq
import numpy as np

from mt3x.audio.mt3_config import MT3_SPECTROGRAM_CONFIG
from mt3x.codec.codec import CodecError
from mt3x.codec.event_index import (IndexedEvents, audio_frame_times, encode_and_index_events,
                                    extract_target_sequence, num_audio_frames, step_floor)
from mt3x.codec.note_events import (NoteEncodingState, note_encoding_state_to_events,
                                    note_event_data_to_events, note_sequence_to_onsets,
                                    note_sequence_to_onsets_and_offsets_and_programs,
                                    prepare_note_sequence)
from mt3x.codec.run_length import remove_redundant_state_changes, run_length_encode_shifts
from mt3x.codec.vocabulary import (EOS_ID, TranscriptionConfig, get_config, map_program_tokens)


def tokenize_note_sequence(ns: note_seq.NoteSequence, frame_times: np.ndarray,
                           config: TranscriptionConfig | str = "mt3", *, is_training: bool,
                           sustain: bool = True, source: str | None = None) -> IndexedEvents:
    """Whole-file event stream indexed by audio frame (MT3's `tokenize_*_example`).

    Validates (NoteSequenceError on a bad note), applies sustain and drops control changes,
    trims overlapping notes when `is_training`, and encodes with ties when `config.use_ties`.

    Args:
      ns: the file's notes (all instruments; drums with is_drum).
      frame_times: float[n_frames] frame start times in seconds (`audio_frame_times`).
      config: TranscriptionConfig or preset name.
      is_training: trim overlapping notes (MT3 does so for training data only).
      sustain: apply sustain pedal (CC 64) before encoding.
      source: file name quoted in error messages.
    """
    cfg = get_config(config)
    ns = prepare_note_sequence(ns, is_training=is_training, sustain=sustain, source=source)
    if cfg.onsets_only:
        times, values = note_sequence_to_onsets(ns)
    else:
        times, values = note_sequence_to_onsets_and_offsets_and_programs(ns)
    return encode_and_index_events(
        state=NoteEncodingState() if cfg.use_ties else None,
        event_times=times, event_values=values, encode_event_fn=note_event_data_to_events,
        codec=cfg.codec, frame_times=frame_times,
        encoding_state_to_events_fn=note_encoding_state_to_events if cfg.use_ties else None)


def chunk_targets(indexed: IndexedEvents, frame_start: int, frame_end: int,
                  config: TranscriptionConfig | str = "mt3") -> np.ndarray:
    """Targets of frames [frame_start, frame_end): tie section (if ties) + events, programs mapped,
    shifts run-length encoded. int32 codec indices, before mixing and redundancy removal."""
    cfg = get_config(config)
    codec = cfg.codec
    tie = codec.encode("tie", 0) if cfg.use_ties else None
    tokens = extract_target_sequence(indexed, frame_start, frame_end, state_events_end_token=tie)
    tokens = map_program_tokens(tokens, codec, cfg.program_granularity)
    return run_length_encode_shifts(tokens, codec)


def finalize_targets(tokens: np.ndarray, config: TranscriptionConfig | str = "mt3", *,
                     add_eos: bool = True) -> np.ndarray:
    """Removes redundant velocity/program tokens and converts to model ids (+ EOS): int32[m]."""
    cfg = get_config(config)
    tokens = remove_redundant_state_changes(tokens, cfg.codec, ("velocity", "program"))
    ids = cfg.vocabulary.encode(tokens)
    if add_eos:
        ids = np.append(ids, np.int32(EOS_ID)).astype(np.int32)
    return ids


@dataclasses.dataclass(frozen=True)
class Segment:
    """Targets of one segment of a file.

    Attributes:
      start_time: seconds, the first frame's start rounded down to the codec step.
      frame_start, frame_end: audio frames [frame_start, frame_end) of 128 samples @ 16 kHz.
      tokens: int32[n] codec indices (tie section, run-length shifts, redundant state removed,
        no EOS). `TokenVocabulary.encode(tokens)` gives model ids.
    """

    start_time: float
    frame_start: int
    frame_end: int
    tokens: np.ndarray


def note_sequence_to_segments(
    ns: note_seq.NoteSequence,
    config: TranscriptionConfig | str = "mt3",
    *,
    num_samples: int | None = None,
    segment_frames: int | None = None,
    is_training: bool = False,
    sample_rate: int = MT3_SPECTROGRAM_CONFIG.sample_rate,
    hop_width: int = MT3_SPECTROGRAM_CONFIG.hop_width,
    sustain: bool = True,
    source: str | None = None,
) -> list[Segment]:
    """Tokenises a whole file into consecutive segments (MT3's evaluation layout) in one call.

    Args:
      ns: the file's notes.
      config: TranscriptionConfig or preset name.
      num_samples: length of the file's 16 kHz audio; default: just past the last note end
        (`ns.total_time` or the notes' ends, whichever is later).
      segment_frames: frames per segment (default `config.inputs_length`, 256 for mt3).
      is_training: trim overlapping notes (False keeps the evaluation behaviour).

    Returns:
      list of Segment in time order; decode with `tokens_to_note_sequence(segments, config)`.
    """
    cfg = get_config(config)
    segment_frames = cfg.inputs_length if segment_frames is None else int(segment_frames)
    if segment_frames < 1:
        raise CodecError(f"segment_frames must be >= 1, got {segment_frames}")
    if num_samples is None:
        end = max([ns.total_time] + [n.end_time for n in ns.notes])
        num_samples = int(np.ceil(max(end, 0.0) * sample_rate))
    frame_times = audio_frame_times(num_samples, sample_rate, hop_width)
    indexed = tokenize_note_sequence(ns, frame_times, cfg, is_training=is_training,
                                     sustain=sustain, source=source)
    n_frames = num_audio_frames(num_samples, hop_width)
    segments = []
    for a in range(0, n_frames, segment_frames):
        b = min(a + segment_frames, n_frames)
        tokens = chunk_targets(indexed, a, b, cfg)
        tokens = remove_redundant_state_changes(tokens, cfg.codec, ("velocity", "program"))
        segments.append(Segment(start_time=step_floor(float(frame_times[a]),
                                                      cfg.codec.steps_per_second),
                                frame_start=a, frame_end=b, tokens=tokens))
    return segments

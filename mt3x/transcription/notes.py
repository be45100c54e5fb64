"""Tokens -> notes: one file's decoded segments stitched into a NoteSequence, and the
waveforms -> segments -> (any decode function) -> notes pipeline both transcribers share.

A decode function maps (float32[n, frames_per_segment, 128] sample frames, int32[n] valid
frames) to int32[n, length] model ids: a checkpoint's `mt3x.transcription.decoder.SegmentDecoder`
or a bundle's exported functions (`mt3x.bundles.mt3_runtime`). This module knows neither.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import note_seq
import numpy as np

from mt3x.audio.mt3_config import MT3_SPECTROGRAM_CONFIG
from mt3x.codec import DecodeResult, tokens_to_note_sequence
from mt3x.transcription.segments import audio_to_segments, check_audio

#: (float32[n, frames_per_segment, 128] sample frames, int32[n] valid frames) -> int32[n, length].
DecodeSegments = Callable[[np.ndarray, np.ndarray], np.ndarray]


def tokens_to_notes(tokens: np.ndarray, start_times: Sequence[float], vocab: str) -> DecodeResult:
    """Stitches one file's segments: int32[segments, length] model ids + start times (s) ->
    `mt3x.codec.DecodeResult` (note_sequence, invalid_events, dropped_events,
    truncated_segments, duplicate_notes)."""
    return tokens_to_note_sequence(list(zip(start_times, tokens)), vocab, from_model_ids=True)


@dataclasses.dataclass
class Transcription:
    """One transcribed file or waveform.

    note_sequence: the notes (seconds; program / is_drum per note).
    invalid_events, dropped_events: MT3's decoding counters.
    num_segments: 2.048 s segments decoded.
    audio_seconds: length of the audio.
    truncated_segments, duplicate_notes: decoding health (`mt3x.codec.DecodeResult`).
    """

    note_sequence: note_seq.NoteSequence
    invalid_events: int
    dropped_events: int
    num_segments: int
    audio_seconds: float
    truncated_segments: int = 0
    duplicate_notes: int = 0


def transcribe_waveforms(decode_segments: DecodeSegments, audios: Sequence[np.ndarray],
                         names: Sequence[str] | None = None, *, frames_per_segment: int,
                         vocab: str) -> list[Transcription]:
    """Waveforms -> segments -> `decode_segments` (all files' segments at once) -> stitched notes.

    Args:
      decode_segments: (float32[n, frames_per_segment, 128] sample frames, int32[n] valid
        frames) -> int32[n, length] model ids (a checkpoint's `SegmentDecoder` or a bundle's
        exported functions).
      audios: float32[samples] waveforms at 16 kHz.
      names: one per waveform, for error messages.
      frames_per_segment, vocab: of the model.

    Raises:
      TranscriptionError: a waveform is too short, silent or not finite (named by `names`).
    """
    names = list(names) if names is not None else [f"audio[{i}]" for i in range(len(audios))]
    checked = [check_audio(a, source=n) for a, n in zip(audios, names)]
    cut = [audio_to_segments(a, frames_per_segment) for a in checked]
    if not cut:
        return []
    tokens = decode_segments(np.concatenate([c.frames for c in cut]),
                             np.concatenate([c.lengths for c in cut]))
    results, offset = [], 0
    for audio, segments in zip(checked, cut):
        count = len(segments.frames)
        decoded = tokens_to_notes(tokens[offset:offset + count], segments.start_times, vocab)
        offset += count
        results.append(Transcription(decoded.note_sequence, decoded.invalid_events,
                                     decoded.dropped_events, count,
                                     audio.size / MT3_SPECTROGRAM_CONFIG.sample_rate,
                                     truncated_segments=decoded.truncated_segments,
                                     duplicate_notes=decoded.duplicate_notes))
    return results

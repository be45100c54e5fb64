"""Audio -> MT3's inference segments (host side, numpy only).

A 16 kHz waveform is checked (long enough, finite, not silent), cut into MT3's 128-sample frames
(`mt3x.audio.mt3_config.mt3_sample_frames`: one zero frame appended, as MT3 does) and split
without overlap into segments of 256 frames (2.048 s, vocabulary 'mt3') or 512 ('ismir2021');
the last segment is zero-padded and its valid frames are recorded, so the model can zero the
log-mel rows past them as MT3 does. MT3's constants come from `MT3_SPECTROGRAM_CONFIG` only.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from mt3x import codec
from mt3x.audio.mt3_config import MT3_SPECTROGRAM_CONFIG, mt3_frame_times, mt3_sample_frames
from mt3x.transcription.errors import TranscriptionError

MIN_AUDIO_SECONDS = 0.1
SILENCE_PEAK = 1e-4  # -80 dBFS


def check_audio(audio: np.ndarray, *, source: str = "audio") -> np.ndarray:
    """Returns `audio` as float32[samples] (16 kHz); raises TranscriptionError when it is not
    mono, too short (< MIN_AUDIO_SECONDS), not finite or silent (peak < SILENCE_PEAK).

    `source` names the file in the message.
    """
    sample_rate = MT3_SPECTROGRAM_CONFIG.sample_rate
    audio = np.asarray(audio, np.float32)
    if audio.ndim != 1:
        raise TranscriptionError(f"{source}: expected mono audio f32[samples], got shape "
                                 f"{audio.shape}")
    if audio.size < MIN_AUDIO_SECONDS * sample_rate:
        raise TranscriptionError(
            f"{source}: audio is too short ({audio.size / sample_rate:.3f} s); need at least "
            f"{MIN_AUDIO_SECONDS} s")
    if not np.all(np.isfinite(audio)):
        raise TranscriptionError(f"{source}: audio holds NaN or Inf samples")
    peak = float(np.max(np.abs(audio)))
    if peak < SILENCE_PEAK:
        raise TranscriptionError(
            f"{source}: audio is silent (peak {peak:.2e} < {SILENCE_PEAK:g}, i.e. below -80 "
            "dBFS); nothing to transcribe")
    return audio


def segment_frames(vocab: str) -> int:
    """Frames per segment of a vocabulary preset (256 for 'mt3', 512 for 'ismir2021')."""
    return int(codec.get_config(vocab).inputs_length)


class Segments(NamedTuple):
    """One waveform cut into MT3's inference segments.

    frames: float32[num_segments, frames_per_segment, 128] raw sample frames, the last segment
      zero-padded. start_times: float64[num_segments] seconds. lengths: int32[num_segments]
      valid frames per segment (frames_per_segment except for the last one); the model zeroes
      the log-mel rows past them, as MT3 does.
    """

    frames: np.ndarray
    start_times: np.ndarray
    lengths: np.ndarray


def audio_to_segments(audio: np.ndarray,
                      frames_per_segment: int = MT3_SPECTROGRAM_CONFIG.frames_per_segment
                      ) -> Segments:
    """Cuts 16 kHz audio (float32[samples]) into MT3's inference segments of 256 (mt3) or 512
    (ismir2021) frames: MT3's frames (one zero frame appended), split without overlap."""
    hop = MT3_SPECTROGRAM_CONFIG.hop_width
    frames = mt3_sample_frames(audio)  # [n, 128], one zero frame appended as in MT3
    total = frames.shape[0]
    count = math.ceil(total / frames_per_segment)
    padded = np.zeros((count * frames_per_segment, hop), np.float32)
    padded[:total] = frames
    starts = mt3_frame_times(count * frames_per_segment)[::frames_per_segment]
    lengths = np.minimum(total - np.arange(count) * frames_per_segment,
                         frames_per_segment).astype(np.int32)
    return Segments(padded.reshape(count, frames_per_segment, hop), starts, lengths)

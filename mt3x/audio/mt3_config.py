"""MT3's audio constants and how MT3 cuts a waveform into sample frames (host side, numpy only).

The one home of MT3's 16 kHz / 128-sample hop / 256-frame numbers: the codec's event indexing, the
task chain, inference segments and the on-device front end (`mt3x.audio.mt3_frontend`) all take
them from `MT3_SPECTROGRAM_CONFIG`. This module imports neither JAX nor TensorFlow, so the per-example
task functions and the data tools can use it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mt3x.audio.errors import SpectralError


@dataclasses.dataclass(frozen=True)
class Mt3SpectrogramConfig:
    """MT3's spectrogram constants (mt3/spectrograms.py defaults; `fft_size`, `mel_lo_hz` and
    `mel_hi_hz` are fixed there).

    Attributes:
      sample_rate: Hz.
      hop_width: samples per sample frame = STFT hop.
      fft_size: STFT frame length = FFT size (periodic Hann window of the same length).
      num_mel_bins: mel bands (HTK scale, tf.signal filterbank).
      mel_lo_hz, mel_hi_hz: band edges in Hz.
      frames_per_segment: sample frames per model input (256 = 2.048 s).
      log_floor: mel values <= 0 are replaced by this before the natural log.
    """

    sample_rate: int = 16000
    hop_width: int = 128
    fft_size: int = 2048
    num_mel_bins: int = 512
    mel_lo_hz: float = 20.0
    mel_hi_hz: float = 7600.0
    frames_per_segment: int = 256
    log_floor: float = 1e-5

    @property
    def frames_per_second(self) -> float:
        """Sample frames per second (125.0 for MT3)."""
        return self.sample_rate / self.hop_width

    @property
    def num_spectrogram_bins(self) -> int:
        """STFT bins (`fft_size // 2 + 1`)."""
        return self.fft_size // 2 + 1

    @property
    def segment_seconds(self) -> float:
        """Seconds per model input segment (2.048 for MT3)."""
        return self.frames_per_segment * self.hop_width / self.sample_rate


MT3_SPECTROGRAM_CONFIG = Mt3SpectrogramConfig()

# What an MT3 model and its tasks take as inputs, one name set for tasks, models, checkpoints and
# gin: 'frames' = raw sample frames f32[..., frames, hop_width] (the model computes the log-mel
# on device), 'log_mel' = MT3's log-mel spectrogram f32[..., frames, num_mel_bins].
INPUT_MODES = ("frames", "log_mel")


def mt3_sample_frames(audio: np.ndarray,
                      config: Mt3SpectrogramConfig = MT3_SPECTROGRAM_CONFIG) -> np.ndarray:
    """Cuts a waveform into MT3's non-overlapping sample frames (host-side numpy).

    Matches MT3's `_audio_to_frames`: `hop - len % hop` zeros are appended, so a length that is
    already a multiple of `hop_width` gains one all-zero frame, exactly as in MT3 (this keeps the
    frame count, and hence segment boundaries and frame times, identical to MT3's).

    Args:
      audio: `[..., samples]` waveform at `config.sample_rate` (any float dtype).

    Returns:
      float32 `[..., samples // hop_width + 1, hop_width]`; frame `i` starts at
      `mt3_frame_times(...)[i]` seconds.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 0:
        raise SpectralError("audio: expected [..., samples], got a scalar")
    hop = config.hop_width
    pad = hop - audio.shape[-1] % hop
    audio = np.pad(audio, [(0, 0)] * (audio.ndim - 1) + [(0, pad)])
    return audio.reshape(*audio.shape[:-1], audio.shape[-1] // hop, hop)


def mt3_frame_times(num_frames: int,
                    config: Mt3SpectrogramConfig = MT3_SPECTROGRAM_CONFIG) -> np.ndarray:
    """Start times of MT3's sample frames: float64 `[num_frames]` seconds, `i / frames_per_second`.

    Kept in float64 as MT3 does: in float32 a frame starting exactly on a 10 ms event step would
    be indexed into the previous step.
    """
    return np.arange(num_frames, dtype=np.float64) / config.frames_per_second

"""mt3x.audio: shared DSP kernels (pure jax.numpy) and numpy-side audio I/O.

Kernels (jit-, vmap- and grad-able, batch-first, float32):
  frame, overlap_add                      framing and its transpose
  stft, istft, magnitude, get_window      STFT (librosa centred or tf.signal pad_end conventions)
  mel_filterbank_htk                      == tf.signal.linear_to_mel_weight_matrix
  mel_filterbank_slaney                   == librosa.filters.mel(...).T
  apply_mel, log_mel, safe_log            mel projection (sparse-banded) and log
  mt3_log_mel, mt3_sample_frames, Mt3SpectrogramConfig   MT3's front end
I/O (numpy, in mt3x.audio.io): read_audio, write_audio, resample, AudioError.
"""

from mt3x.audio.io import AudioError, read_audio, resample, write_audio
from mt3x.audio.framing import SpectralError, frame, num_frames, overlap_add
from mt3x.audio.mel import (
    apply_mel,
    log_mel,
    mel_filterbank_htk,
    mel_filterbank_slaney,
    safe_log,
)
from mt3x.audio.mt3_frontend import (
    MT3_SPECTROGRAM_CONFIG,
    Mt3SpectrogramConfig,
    mt3_log_mel,
    mt3_sample_frames,
)
from mt3x.audio.stft import get_window, istft, magnitude, stft, window_sum_square

__all__ = [
    "MT3_SPECTROGRAM_CONFIG",
    "Mt3SpectrogramConfig",
    "SpectralError",
    "apply_mel",
    "frame",
    "get_window",
    "istft",
    "log_mel",
    "magnitude",
    "mel_filterbank_htk",
    "mel_filterbank_slaney",
    "mt3_log_mel",
    "mt3_sample_frames",
    "num_frames",
    "overlap_add",
    "safe_log",
    "stft",
    "window_sum_square",
]
__all__ += ["AudioError", "read_audio", "resample", "write_audio"]

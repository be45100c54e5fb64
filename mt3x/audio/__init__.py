"""mt3x.audio: shared DSP kernels (pure jax.numpy) and numpy-side audio I/O.

Kernels (jit-, vmap- and grad-able, batch-first, float32):
  frame, overlap_add                      framing and its transpose            (mt3x.audio.framing)
  stft, istft, magnitude, get_window      STFT (librosa centred or tf.signal)  (mt3x.audio.spectrum)
  mel_filterbank_htk                      == tf.signal.linear_to_mel_weight_matrix (mt3x.audio.mel)
  mel_filterbank_slaney                   == librosa.filters.mel(...).T
  apply_mel, log_mel, safe_log            mel projection (sparse-banded) and log
  mt3_log_mel, mt3_mel_weights            MT3's on-device front end           (mt3x.audio.mt3_frontend)
MT3's constants and host-side framing, numpy only (mt3x.audio.mt3_config):
  Mt3SpectrogramConfig, MT3_SPECTROGRAM_CONFIG, mt3_sample_frames, mt3_frame_times, INPUT_MODES
I/O (numpy, mt3x.audio.io): read_audio, write_audio, resample, AudioError.

The names are resolved on first use (PEP 562), so `import mt3x.audio.mt3_config` from the
TensorFlow- and JAX-free task functions does not pull in JAX; each submodule imports what it uses
at its top.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "mt3x.audio.io": ("AudioError", "read_audio", "resample", "write_audio"),
    "mt3x.audio.errors": ("SpectralError",),
    "mt3x.audio.framing": ("frame", "num_frames", "overlap_add"),
    "mt3x.audio.mel": ("apply_mel", "log_mel", "mel_filterbank_htk", "mel_filterbank_slaney",
                       "safe_log"),
    "mt3x.audio.mt3_config": ("INPUT_MODES", "MT3_SPECTROGRAM_CONFIG", "Mt3SpectrogramConfig",
                              "mt3_frame_times", "mt3_sample_frames"),
    "mt3x.audio.mt3_frontend": ("mt3_log_mel", "mt3_mel_weights"),
    "mt3x.audio.spectrum": ("get_window", "istft", "magnitude", "stft", "window_sum_square"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}
__all__ = sorted(_HOME_OF)


def __getattr__(name: str) -> Any:
    """Resolves a public name from its home module on first access."""
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'mt3x.audio' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

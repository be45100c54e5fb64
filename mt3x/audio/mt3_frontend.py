"""MT3's spectrogram front end, computed on device from raw sample frames.

What magenta/mt3 does (mt3/spectrograms.py, mt3/spectral_ops.py, mt3/preprocessors.py):
1. the waveform (16 kHz) is padded with `hop - len % hop` zeros (a whole extra hop when the length
   is already a multiple) and cut into non-overlapping 128-sample frames;
2. a segment (a training chunk, or an inference segment) of up to 256 frames is flattened back to
   samples and `tf.signal.stft(frame_length=2048, frame_step=128, fft_length=2048,
   window=periodic Hann, pad_end=True)` is taken: one STFT frame per sample frame, the last 15
   reaching past the segment's end into zeros (never into the next segment);
3. magnitude, `@ tf.signal.linear_to_mel_weight_matrix(512, 1025, 16000, 20, 7600)`, natural log
   with values <= 0 replaced by 1e-5;
4. a segment shorter than 256 frames is padded with 0.0 rows (in the log-mel domain).

`mt3_log_mel` does 2-4 on a batch of segments of sample frames (what the data pipeline ships), so it
can run inside a jitted, sharded training step. Step 2 needs no flattening: STFT frame `i` is sample
frames `i .. i + 15` (zeros past the end) side by side, built with one gather of whole rows. On
CPU a large batch is transformed a few segments at a time (see `mt3x.audio.framing.map_in_steps`).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jax import Array

from mt3x.audio.errors import SpectralError
from mt3x.audio.framing import chunk_index, map_in_steps
from mt3x.audio.mel import apply_mel, mel_filterbank_htk, safe_log
from mt3x.audio.mt3_config import MT3_SPECTROGRAM_CONFIG, Mt3SpectrogramConfig
from mt3x.audio.spectrum import get_window, magnitude


def mt3_mel_weights(config: Mt3SpectrogramConfig = MT3_SPECTROGRAM_CONFIG) -> np.ndarray:
    """float32 `[fft_size // 2 + 1, num_mel_bins]`, = tf.signal.linear_to_mel_weight_matrix."""
    return mel_filterbank_htk(config.num_mel_bins, config.num_spectrogram_bins, config.sample_rate,
                              config.mel_lo_hz, config.mel_hi_hz)


def mt3_log_mel(
    sample_frames: Array,
    config: Mt3SpectrogramConfig = MT3_SPECTROGRAM_CONFIG,
    *,
    num_valid_frames: Array | None = None,
    mel_method: str = "auto",
) -> Array:
    """MT3's log-mel spectrogram of a batch of segments, from raw sample frames.

    Args:
      sample_frames: `[..., frames, hop_width]` (normally `f32[batch, 256, 128]`) raw 16 kHz
        samples; each `[frames, hop_width]` slab is one segment, transformed on its own (the STFT
        sees zeros past its end). float32; bfloat16/float16 are upcast.
      config: MT3 constants.
      num_valid_frames: optional int `[...]` (one per segment): rows at and beyond it are set to
        0.0, as MT3 pads a short segment's log-mel. Rows before it do not depend on what lies
        past it, so a zero-padded short segment gives MT3's result exactly.
      mel_method: see `mt3x.audio.apply_mel` ('auto' = banded sparse product).

    Returns:
      float32 `[..., frames, num_mel_bins]` natural-log mel magnitudes.
    """
    frames_in = jnp.asarray(sample_frames)
    hop = config.hop_width
    if frames_in.ndim < 2 or frames_in.shape[-1] != hop:
        raise SpectralError(f"sample_frames: expected [..., frames, {hop}] (hop_width), got "
                            f"shape {frames_in.shape}")
    if config.fft_size % hop:
        raise SpectralError(f"fft_size: expected a multiple of hop_width ({hop}), got "
                            f"{config.fft_size}")
    x = frames_in.astype(jnp.float32)
    *batch_shape, count, _ = x.shape
    segments = x.reshape(math.prod(batch_shape), count, hop)
    log_mel = map_in_steps(lambda chunk: _segment_log_mel(chunk, config, mel_method), segments,
                           count * config.fft_size)
    log_mel = log_mel.reshape(*batch_shape, count, config.num_mel_bins)
    if num_valid_frames is not None:
        valid = jnp.asarray(num_valid_frames)[..., None] > jnp.arange(count)
        log_mel = jnp.where(valid[..., None], log_mel, 0.0)
    return log_mel


def _segment_log_mel(segments: Array, config: Mt3SpectrogramConfig, mel_method: str) -> Array:
    """MT3 log-mel of `f32[n, frames, hop]` segments, each on its own: f32[n, frames, mels].

    STFT frame `i` of a segment is its sample frames `i .. i + span - 1` (zeros past the end),
    gathered as whole rows and windowed in one fused loop (window as `[span, hop]`).
    """
    num_segments, count, hop = segments.shape
    span = config.fft_size // hop  # sample frames per STFT frame
    padded = jnp.pad(segments, [(0, 0), (0, span - 1), (0, 0)])
    window = get_window("hann", config.fft_size).reshape(span, hop)
    stft_frames = padded[:, chunk_index(count, span), :] * jnp.asarray(window)
    stft_frames = stft_frames.reshape(num_segments, count, config.fft_size)
    spectrum = jnp.fft.rfft(stft_frames, n=config.fft_size, axis=-1)
    mel = apply_mel(magnitude(spectrum), mt3_mel_weights(config), method=mel_method)
    return safe_log(mel, config.log_floor)

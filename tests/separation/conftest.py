"""Fixtures for the separation tests.

Until `mt3x.audio.stft`/`istft` land, a minimal jax.numpy stand-in with the same contract
(Hann window, centred reflect-padded frames, batch-first) is patched in so these tests can run;
once the real kernels exist this does nothing.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from mt3x import audio as mt3x_audio


def _hann(n: int) -> jnp.ndarray:
    return jnp.asarray(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n), jnp.float32)


def _stft(signal, n_fft, hop_length, win_length=None, window="hann", center=True,
          pad_mode="reflect", pad_end=False):
    if center:
        pad = [(0, 0)] * (signal.ndim - 1) + [(n_fft // 2, n_fft // 2)]
        signal = jnp.pad(signal, pad, mode=pad_mode)
    n_frames = 1 + (signal.shape[-1] - n_fft) // hop_length
    idx = np.arange(n_fft)[None, :] + hop_length * np.arange(n_frames)[:, None]
    frames = signal[..., idx] * _hann(n_fft)
    return jnp.fft.rfft(frames, axis=-1).astype(jnp.complex64)


def _istft(spec, n_fft, hop_length, win_length=None, window="hann", center=True, length=None):
    win = _hann(n_fft)
    frames = jnp.fft.irfft(spec, n=n_fft, axis=-1) * win
    n_frames = spec.shape[-2]
    total = n_fft + hop_length * (n_frames - 1)
    idx = (np.arange(n_fft)[None, :] + hop_length * np.arange(n_frames)[:, None]).ravel()
    out = jnp.zeros(spec.shape[:-2] + (total,), jnp.float32)
    out = out.at[..., idx].add(frames.reshape(spec.shape[:-2] + (-1,)))
    wsum = np.zeros(total)
    np.add.at(wsum, idx, np.tile((0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)) ** 2, n_frames))
    out = out / jnp.asarray(np.where(wsum > 1e-8, wsum, 1.0), jnp.float32)
    start = n_fft // 2 if center else 0
    length = length if length is not None else total - 2 * start
    out = out[..., start:start + length]
    if out.shape[-1] < length:
        out = jnp.pad(out, [(0, 0)] * (out.ndim - 1) + [(0, length - out.shape[-1])])
    return out


if not hasattr(mt3x_audio, "stft"):
    mt3x_audio.stft = _stft
    mt3x_audio.istft = _istft

"""Short-time Fourier transform and its inverse, in pure `jax.numpy`.

`stft` covers both conventions in use:
- librosa's (`center=True`): the signal is padded by `n_fft // 2` on both sides (reflect or
  constant), so frame `i` is centred on sample `i * hop_length`;
- tf.signal's (`center=False, pad_end=True`): frames start at `i * hop_length` and the end is
  zero-padded so that `ceil(samples / hop_length)` frames come out (what MT3 uses).

`istft` is windowed overlap-add divided by the summed squared window, so `istft(stft(x)) == x`
(up to float32 rounding) wherever the summed squared window is nonzero (NOLA), e.g. periodic Hann
with `n_fft / hop_length` an integer >= 2.

All functions take `[..., samples]` / `[..., frames, bins]` arrays with any leading batch dims,
compute in float32 (bfloat16/float16 inputs are upcast; spectra are complex64), and are jit-,
vmap- and grad-able.
"""

from __future__ import annotations

from typing import Any, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from mt3x.audio.framing import SpectralError, _check_positive_int, frame, overlap_add
from mt3x.audio.tf_float32 import tf_hann_window

WindowSpec = Union[str, np.ndarray, Array]

_WINDOW_NAMES = ("hann", "hann_symmetric", "rectangular")


def get_window(window: WindowSpec, win_length: int, n_fft: int | None = None) -> np.ndarray:
    """Builds an analysis window as a float32 numpy constant.

    Args:
      window: 'hann' (periodic Hann `0.5 - 0.5 cos(2 pi n / N)`), 'hann_symmetric' (divisor
        `N - 1`, = np.hanning(N)), 'rectangular', or an array of `win_length` values. The Hann
        windows are tf.signal.hann_window's float32 values bit for bit (within 1.2e-7 of the
        exact ones, e.g. scipy.signal.get_window('hann', N)): MT3 parity depends on it.
      win_length: window length in samples.
      n_fft: if given and larger than `win_length`, the window is zero-padded on both sides to
        `n_fft` samples, centred (librosa's convention; the left pad is
        `(n_fft - win_length) // 2`).

    Returns:
      float32 `[n_fft or win_length]` array.
    """
    win_length = _check_positive_int("win_length", win_length)
    if isinstance(window, str):
        if window == "hann":
            values = tf_hann_window(win_length, periodic=True)
        elif window == "hann_symmetric":
            values = tf_hann_window(win_length, periodic=False)
        elif window == "rectangular":
            values = np.ones(win_length)
        else:
            raise SpectralError(f"window: expected one of {_WINDOW_NAMES} or an array, "
                                f"got {window!r}")
    else:
        if isinstance(window, jax.core.Tracer):
            raise SpectralError("window: expected a concrete array (numpy or a jax array outside "
                                "jit), got a traced value")
        values = np.asarray(window, dtype=np.float32)
        if values.shape != (win_length,):
            raise SpectralError(f"window: expected shape ({win_length},) (win_length), got "
                                f"{values.shape}")
    values = values.astype(np.float32)
    if n_fft is not None and n_fft != win_length:
        if win_length > n_fft:
            raise SpectralError(f"win_length: expected <= n_fft ({n_fft}), got {win_length}")
        left = (n_fft - win_length) // 2
        values = np.pad(values, (left, n_fft - win_length - left))
    return values


def _resolve_window(window: WindowSpec, n_fft: int, win_length: int | None) -> np.ndarray:
    n_fft = _check_positive_int("n_fft", n_fft)
    if win_length is None:
        win_length = n_fft
    return get_window(window, win_length, n_fft)


def _as_float32(x: Array) -> Array:
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        raise SpectralError(f"signal: expected a real array, got dtype {x.dtype}")
    return x.astype(jnp.float32)


def stft(
    signal: Array,
    n_fft: int,
    hop_length: int,
    win_length: int | None = None,
    window: WindowSpec = "hann",
    center: bool = True,
    pad_mode: str = "reflect",
    pad_end: bool = False,
) -> Array:
    """Short-time Fourier transform of the last axis.

    Args:
      signal: `[..., samples]` real array (float32; bfloat16/float16 are upcast).
      n_fft: FFT size = frame length in samples.
      hop_length: samples between frames.
      win_length: window length (<= n_fft; default n_fft), centred in the frame.
      window: 'hann' (periodic), 'hann_symmetric', 'rectangular' or a `[win_length]` array.
      center: pad `n_fft // 2` samples on both sides first (librosa `center=True`).
      pad_mode: 'reflect' or 'constant' (zeros), for `center`.
      pad_end: zero-pad the end so that `ceil(padded_samples / hop_length)` frames come out
        (tf.signal.stft `pad_end=True`). Without it only whole frames are used.

    Returns:
      complex64 `[..., frames, n_fft // 2 + 1]`: frame `i`, bin `k` is
      `sum_t x[i * hop + t] * w[t] * exp(-2j pi k t / n_fft)` (x after centring padding).
      With `center=True, pad_end=False` frames = `1 + samples // hop_length` (librosa); with
      `center=False, pad_end=True` frames = `ceil(samples / hop_length)` (tf.signal).
    """
    hop_length = _check_positive_int("hop_length", hop_length)
    win = _resolve_window(window, n_fft, win_length)
    x = _as_float32(signal)
    if x.ndim == 0:
        raise SpectralError("signal: expected [..., samples], got a scalar")
    if center:
        half = n_fft // 2
        widths = [(0, 0)] * (x.ndim - 1) + [(half, half)]
        if pad_mode == "reflect":
            if x.shape[-1] <= half:
                raise SpectralError(f"signal: reflect padding needs more than n_fft // 2 = {half} "
                                    f"samples, got {x.shape[-1]}; use pad_mode='constant'")
            x = jnp.pad(x, widths, mode="reflect")
        elif pad_mode == "constant":
            x = jnp.pad(x, widths)
        else:
            raise SpectralError(f"pad_mode: expected 'reflect' or 'constant', got {pad_mode!r}")
    frames = frame(x, n_fft, hop_length, pad_end=pad_end)
    return jnp.fft.rfft(frames * jnp.asarray(win), n=n_fft, axis=-1)


def magnitude(spec: Array) -> Array:
    """`|spec|` as float32 with a finite gradient everywhere (zero at `spec == 0`).

    `jnp.abs` on complex numbers has a NaN gradient at 0, which silent frames (e.g. the zero
    padding of a short segment) would otherwise feed back into a training step.
    """
    power = jnp.real(spec) ** 2 + jnp.imag(spec) ** 2
    positive = power > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, power, 1.0)), 0.0)


def window_sum_square(window: np.ndarray, count: int, hop_length: int) -> np.ndarray:
    """Summed squared window of `count` frames overlap-added at `hop_length` (numpy float64).

    Returns `[(count - 1) * hop_length + len(window)]`; computed once per shape at trace time.
    """
    squared = np.asarray(window, np.float64) ** 2
    frame_length = len(squared)
    out_length = max(count - 1, 0) * hop_length + frame_length
    if count == 0:
        return np.zeros(0)
    chunks_per_frame = -(-frame_length // hop_length)
    pieces = np.pad(squared, (0, chunks_per_frame * hop_length - frame_length))
    pieces = pieces.reshape(chunks_per_frame, hop_length)
    chunks = np.zeros((count - 1 + chunks_per_frame, hop_length))
    for q in range(chunks_per_frame):  # piece q of every frame lands on chunks q .. q + count - 1
        chunks[q:q + count] += pieces[q]
    return chunks.reshape(-1)[:out_length]


def _inverse_window_sum(window: np.ndarray, count: Any, hop_length: int) -> Array:
    """float32 `[(count - 1) * hop + len(window)]`: 1 / the summed squared window where it is
    > 0, else 1. A float64-exact constant for an integer `count`; computed on device in float32
    for a symbolic one (a length-polymorphic `jax.export`)."""
    tiny = np.finfo(np.float32).tiny
    if isinstance(count, int):
        wss = window_sum_square(window, count, hop_length)
        covered = wss > tiny
        return jnp.asarray(np.where(covered, 1.0 / np.where(covered, wss, 1.0),
                                    1.0).astype(np.float32))
    squared = jnp.asarray(np.asarray(window, np.float64) ** 2, jnp.float32)
    wss = overlap_add(jnp.broadcast_to(squared, (count, squared.shape[0])), hop_length)
    covered = wss > tiny
    return jnp.where(covered, 1.0 / jnp.where(covered, wss, 1.0), 1.0)


def istft(
    spec: Array,
    n_fft: int,
    hop_length: int,
    win_length: int | None = None,
    window: WindowSpec = "hann",
    center: bool = True,
    length: int | None = None,
) -> Array:
    """Inverse of `stft`: windowed overlap-add divided by the summed squared window.

    Args:
      spec: complex `[..., frames, n_fft // 2 + 1]` spectrogram.
      n_fft, hop_length, win_length, window, center: as given to `stft`.
      length: if given, the output is trimmed or zero-padded to exactly `length` samples (after
        removing the centring padding); otherwise the centring padding (`n_fft // 2` at both
        ends) is removed when `center`, and nothing is trimmed when not.

    Returns:
      float32 `[..., samples]`. Samples where the summed squared window is ~0 (not covered by any
      window) are left undivided (librosa's behaviour).
    """
    hop_length = _check_positive_int("hop_length", hop_length)
    win = _resolve_window(window, n_fft, win_length)
    spec = jnp.asarray(spec)
    if spec.ndim < 2 or spec.shape[-1] != n_fft // 2 + 1:
        raise SpectralError(f"spec: expected [..., frames, {n_fft // 2 + 1}] (n_fft // 2 + 1 "
                            f"bins), got shape {spec.shape}")
    spec = spec.astype(jnp.complex64)
    count = spec.shape[-2]
    frames = jnp.fft.irfft(spec, n=n_fft, axis=-1) * jnp.asarray(win)
    signal = overlap_add(frames, hop_length)
    signal = signal * _inverse_window_sum(win, count, hop_length)

    start = n_fft // 2 if center else 0
    if length is not None:
        length = int(length) if isinstance(length, (int, np.integer)) else length  # or symbolic
        if length < 0:
            raise SpectralError(f"length: expected >= 0, got {length}")
        stop = start + length
    else:
        stop = signal.shape[-1] - (n_fft // 2 if center else 0)
    available = signal.shape[-1]
    out = signal[..., start:min(stop, available)]
    if stop > available:
        widths = [(0, 0)] * (out.ndim - 1) + [(0, stop - max(available, start))]
        out = jnp.pad(out, widths)
    return out

"""Mel filterbanks (HTK as in tf.signal, Slaney as in librosa) and the log-mel projection.

Filterbanks are built once, in numpy, as float32 `[num_spectrogram_bins, num_mel_bins]` constants
(the layout `spectrogram @ weights` wants). `mel_filterbank_htk` reproduces
`tf.signal.linear_to_mel_weight_matrix` bit for bit on x86-64 TensorFlow wheels: it repeats TF's
float32 arithmetic step by step, including the logarithm TF's CPU kernels use (see `tf_float32`).
`mel_filterbank_slaney` reproduces `librosa.filters.mel` (float64 arithmetic, cast to float32).

`apply_mel` multiplies a spectrogram by a filterbank. Triangular filterbanks are >99% zeros, so for
a concrete (numpy) filterbank it multiplies each group of consecutive mel bands only by the range
of bins under their triangles: a few small matmuls instead of one big one (about 10x fewer
multiply-adds for MT3's 1025 x 512 filterbank), with the same float32 result up to summation order.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np
from jax import Array

from mt3x.audio.framing import SpectralError, _check_positive_int
from mt3x.audio.tf_float32 import libm_float32, tf_cpu_unary, tf_linspace

_F32 = np.float32


# ----------------------------------------------------------------------------------------------
# filterbanks

_HTK_Q = 1127.0  # mel = 1127 ln(1 + f / 700) = 2595 log10(1 + f / 700)
_HTK_BREAK_HZ = 700.0


def mel_filterbank_htk(
    num_mel_bins: int,
    num_spectrogram_bins: int,
    sample_rate: float,
    lower_edge_hertz: float,
    upper_edge_hertz: float,
) -> np.ndarray:
    """HTK-scale triangular filterbank, identical to `tf.signal.linear_to_mel_weight_matrix`.

    Triangles are linear in mel, peak 1.0 (unnormalised); the band edges split
    `[lower_edge_hertz, upper_edge_hertz]` into `num_mel_bins + 2` equal mel steps; the DC bin row
    is zero.

    Args:
      num_mel_bins: mel bands.
      num_spectrogram_bins: `n_fft // 2 + 1` linear bins spanning 0 .. sample_rate / 2.
      sample_rate: Hz.
      lower_edge_hertz, upper_edge_hertz: Hz, `0 <= lower < upper <= sample_rate / 2`.

    Returns:
      float32 `[num_spectrogram_bins, num_mel_bins]` numpy array.
    """
    num_mel_bins = _check_positive_int("num_mel_bins", num_mel_bins)
    num_spectrogram_bins = _check_positive_int("num_spectrogram_bins", num_spectrogram_bins)
    _check_edges(sample_rate, lower_edge_hertz, upper_edge_hertz)

    def hertz_to_mel_scalar(hz: float) -> np.float32:
        argument = _F32(1.0) + _F32(hz) / _F32(_HTK_BREAK_HZ)
        return _F32(_HTK_Q) * libm_float32("logf", np.array([argument]))[0]

    nyquist = _F32(sample_rate) / _F32(2.0)
    linear_hz = tf_linspace(_F32(0.0), nyquist, num_spectrogram_bins)[1:]
    bins_mel = _F32(_HTK_Q) * tf_cpu_unary(_F32(1.0) + linear_hz / _F32(_HTK_BREAK_HZ), "log")
    bins_mel = bins_mel[:, None]
    edges = tf_linspace(hertz_to_mel_scalar(lower_edge_hertz),
                         hertz_to_mel_scalar(upper_edge_hertz), num_mel_bins + 2)
    lower, center, upper = edges[None, :-2], edges[None, 1:-1], edges[None, 2:]
    rising = (bins_mel - lower) / (center - lower)
    falling = (upper - bins_mel) / (upper - center)
    weights = np.maximum(_F32(0.0), np.minimum(rising, falling))
    return np.pad(weights, [(1, 0), (0, 0)]).astype(_F32)


def _check_edges(sample_rate: float, lower: float, upper: float) -> None:
    if not sample_rate > 0:
        raise SpectralError(f"sample_rate: expected > 0 Hz, got {sample_rate!r}")
    if lower < 0:
        raise SpectralError(f"lower_edge_hertz: expected >= 0 Hz, got {lower!r}")
    if not lower < upper:
        raise SpectralError(f"lower_edge_hertz ({lower!r}) must be below upper_edge_hertz "
                            f"({upper!r})")
    if upper > sample_rate / 2:
        raise SpectralError(f"upper_edge_hertz: expected <= Nyquist ({sample_rate / 2} Hz), got "
                            f"{upper!r}")


def _slaney_hz_to_mel(hz: np.ndarray, htk: bool) -> np.ndarray:
    hz = np.asarray(hz, np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + hz / 700.0)
    linear_step = 200.0 / 3
    mels = hz / linear_step
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / linear_step
    log_step = np.log(6.4) / 27.0
    above = hz >= min_log_hz
    return np.where(above, min_log_mel + np.log(np.maximum(hz, 1e-30) / min_log_hz) / log_step,
                    mels)


def _slaney_mel_to_hz(mels: np.ndarray, htk: bool) -> np.ndarray:
    mels = np.asarray(mels, np.float64)
    if htk:
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    linear_step = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / linear_step
    log_step = np.log(6.4) / 27.0
    return np.where(mels >= min_log_mel, min_log_hz * np.exp(log_step * (mels - min_log_mel)),
                    linear_step * mels)


def mel_filterbank_slaney(
    num_mel_bins: int,
    num_spectrogram_bins: int,
    sample_rate: float,
    lower_edge_hertz: float = 0.0,
    upper_edge_hertz: float | None = None,
    *,
    htk: bool = False,
    norm: str | float | None = "slaney",
) -> np.ndarray:
    """Triangular filterbank identical to `librosa.filters.mel(...).T`.

    Args:
      num_mel_bins: mel bands (librosa `n_mels`).
      num_spectrogram_bins: `n_fft // 2 + 1` (librosa's `n_fft` is `2 * (bins - 1)`).
      sample_rate: Hz.
      lower_edge_hertz, upper_edge_hertz: `fmin`, `fmax` in Hz (`fmax` defaults to Nyquist).
      htk: HTK mel scale instead of Slaney's (linear below 1 kHz, logarithmic above).
      norm: 'slaney' (each triangle divided by its width in Hz / 2, constant energy per band),
        None (peak 1.0), or a number p (each band scaled to unit p-norm).

    Returns:
      float32 `[num_spectrogram_bins, num_mel_bins]` numpy array. Triangles are linear in Hz between
      mel-spaced edges and include the DC bin (unlike the HTK variant).
    """
    num_mel_bins = _check_positive_int("num_mel_bins", num_mel_bins)
    num_spectrogram_bins = _check_positive_int("num_spectrogram_bins", num_spectrogram_bins)
    if upper_edge_hertz is None:
        upper_edge_hertz = float(sample_rate) / 2.0
    if not sample_rate > 0:
        raise SpectralError(f"sample_rate: expected > 0 Hz, got {sample_rate!r}")
    if lower_edge_hertz < 0 or not lower_edge_hertz < upper_edge_hertz:
        raise SpectralError(f"lower_edge_hertz/upper_edge_hertz: expected 0 <= lower < upper, got "
                            f"{lower_edge_hertz!r}, {upper_edge_hertz!r}")
    n_fft = 2 * (num_spectrogram_bins - 1)
    bin_hz = np.fft.rfftfreq(n=max(n_fft, 1), d=1.0 / sample_rate)[:num_spectrogram_bins]
    edges_mel = np.linspace(_slaney_hz_to_mel(lower_edge_hertz, htk),
                            _slaney_hz_to_mel(upper_edge_hertz, htk), num_mel_bins + 2)
    edges_hz = _slaney_mel_to_hz(edges_mel, htk)
    widths = np.diff(edges_hz)
    ramps = edges_hz[:, None] - bin_hz[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))  # [mels, bins]
    if norm == "slaney":
        weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
    elif norm is None:
        pass
    elif isinstance(norm, (int, float)) and not isinstance(norm, bool) and norm > 0:
        length = np.sum(np.abs(weights) ** norm, axis=-1, keepdims=True) ** (1.0 / norm)
        small = length < np.finfo(np.float64).tiny
        weights = weights / np.where(small, 1.0, length)
    else:
        raise SpectralError(f"norm: expected 'slaney', None or a positive number, got {norm!r}")
    return weights.astype(_F32).T.copy()


# ----------------------------------------------------------------------------------------------
# projection and log


# A block costs its multiply-adds plus roughly this many multiply-adds' worth of overhead.
_BLOCK_OVERHEAD_MACS = 4096


@functools.lru_cache(maxsize=32)
def _block_plan(weights_bytes: bytes, shape: tuple[int, int]
                ) -> tuple[tuple[int, int, int, int], ...]:
    """Splits a banded filterbank into blocks of consecutive mel bands.

    Returns `(first_mel, last_mel + 1, first_bin, last_bin + 1)` per block, covering every nonzero
    weight; the group size minimises multiply-adds plus a per-block overhead.
    """
    weights = np.frombuffer(weights_bytes, _F32).reshape(shape)
    num_bins, num_mels = shape
    nonzero = weights != 0
    has_any = nonzero.any(axis=0)
    first = np.where(has_any, nonzero.argmax(axis=0), num_bins)
    last = np.where(has_any, num_bins - 1 - nonzero[::-1].argmax(axis=0), -1)
    best: tuple[float, tuple[tuple[int, int, int, int], ...]] | None = None
    for group in (8, 16, 32, 64, 128, 256, num_mels):
        blocks = []
        for m0 in range(0, num_mels, group):
            m1 = min(m0 + group, num_mels)
            b0, b1 = int(first[m0:m1].min()), int(last[m0:m1].max()) + 1
            blocks.append((m0, m1, min(b0, b1), b1) if b1 > b0 else (m0, m1, 0, 0))
        cost = sum((b1 - b0) * (m1 - m0) + _BLOCK_OVERHEAD_MACS for m0, m1, b0, b1 in blocks)
        if best is None or cost < best[0]:
            best = (cost, tuple(blocks))
    return best[1]


def apply_mel(spectrogram: Array, mel_weights: np.ndarray | Array, method: str = "auto") -> Array:
    """Projects `[..., bins]` onto mel bands: `spectrogram @ mel_weights` in float32.

    Args:
      spectrogram: `[..., num_spectrogram_bins]` (magnitude or power), float32.
      mel_weights: `[num_spectrogram_bins, num_mel_bins]`; a numpy array enables the banded path.
      method: 'dense' (one matmul), 'banded' (groups of consecutive mel bands, each multiplied
        only by the range of bins under its triangles: needs numpy weights; for MT3's filterbank
        ~10x fewer multiply-adds), or 'auto' (banded when the weights are numpy and that saves at
        least half the work). Products use float32 accumulation on every backend
        (`precision='highest'`).

    Returns:
      float32 `[..., num_mel_bins]`.
    """
    spectrogram = jnp.asarray(spectrogram).astype(jnp.float32)
    if method not in ("auto", "dense", "banded"):
        raise SpectralError(f"method: expected 'auto', 'dense' or 'banded', got {method!r}")
    concrete = isinstance(mel_weights, np.ndarray)
    if mel_weights.ndim != 2 or mel_weights.shape[0] != spectrogram.shape[-1]:
        raise SpectralError(f"mel_weights: expected [{spectrogram.shape[-1]}, mels] to match the "
                            f"spectrogram's last axis, got {mel_weights.shape}")
    if method == "banded" and not concrete:
        raise SpectralError("mel_weights: method='banded' needs a numpy filterbank")
    if concrete and method != "dense":
        weights = np.ascontiguousarray(mel_weights, _F32)
        blocks = _block_plan(weights.tobytes(), weights.shape)
        work = sum((b1 - b0) * (m1 - m0) for m0, m1, b0, b1 in blocks)
        if method == "banded" or 2 * work <= weights.size:
            outputs = []
            for m0, m1, b0, b1 in blocks:
                if b1 == b0:
                    outputs.append(jnp.zeros((*spectrogram.shape[:-1], m1 - m0), jnp.float32))
                else:
                    outputs.append(jnp.matmul(spectrogram[..., b0:b1],
                                              jnp.asarray(weights[b0:b1, m0:m1]),
                                              precision="highest"))
            return outputs[0] if len(outputs) == 1 else jnp.concatenate(outputs, axis=-1)
    return jnp.matmul(spectrogram, jnp.asarray(mel_weights, jnp.float32),
                      precision="highest")


def safe_log(x: Array, floor: float = 1e-5) -> Array:
    """Natural log with values `<= 0` replaced by `floor` first (MT3's / DDSP's `safe_log`)."""
    x = jnp.asarray(x)
    positive = x > 0
    return jnp.log(jnp.where(positive, x, jnp.asarray(floor, x.dtype)))


def log_mel(
    spectrogram: Array,
    mel_weights: np.ndarray | Array,
    *,
    floor: float = 1e-5,
    method: str = "auto",
) -> Array:
    """`safe_log(spectrogram @ mel_weights, floor)`: float32 `[..., num_mel_bins]`.

    Args:
      spectrogram: `[..., num_spectrogram_bins]` magnitudes (or powers), float32.
      mel_weights: `[num_spectrogram_bins, num_mel_bins]`, e.g. from `mel_filterbank_htk`.
      floor: replaces mel values `<= 0` before the log (MT3: 1e-5).
      method: see `apply_mel`.
    """
    return safe_log(apply_mel(spectrogram, mel_weights, method=method), floor)

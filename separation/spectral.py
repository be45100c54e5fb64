"""STFT settings and mask arithmetic shared by the separators, oracles and evaluation.

Every STFT/iSTFT goes through `mt3x.audio.spectrum` / `mt3x.audio.istft` (the project's one STFT); this
module only fixes the settings and does the complex-mask arithmetic. All functions are pure
jax.numpy and jit-able.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from mt3x import audio as mt3x_audio


@dataclasses.dataclass(frozen=True)
class StftConfig:
    """STFT settings of one separator (Hann window, centred frames, reflect padding).

    Attributes:
      n_fft: FFT size in samples; bins = n_fft // 2 + 1.
      hop_length: hop in samples.
    """
    n_fft: int = 256
    hop_length: int = 128

    @property
    def num_bins(self) -> int:
        return self.n_fft // 2 + 1

    def stft(self, signal: jnp.ndarray) -> jnp.ndarray:
        """float32[..., samples] -> complex64[..., frames, bins]."""
        return mt3x_audio.stft(signal, n_fft=self.n_fft, hop_length=self.hop_length)

    def istft(self, spec: jnp.ndarray, length: int) -> jnp.ndarray:
        """complex64[..., frames, bins] -> float32[..., length]."""
        return mt3x_audio.istft(spec, n_fft=self.n_fft, hop_length=self.hop_length, length=length)


def magnitude(spec: jnp.ndarray) -> jnp.ndarray:
    """|spec| float32 with a finite gradient at 0 (`mt3x.audio.magnitude`)."""
    return mt3x_audio.magnitude(spec)


def with_phase_of(magnitude: jnp.ndarray, mixture_spec: jnp.ndarray, eps: float = 1e-12
                  ) -> jnp.ndarray:
    """Magnitude estimate combined with the mixture's phase.

    Args:
      magnitude: float32[..., n_inst, frames, bins] (non-negative).
      mixture_spec: complex64[..., frames, bins].
    Returns: complex64[..., n_inst, frames, bins].
    """
    mix = mixture_spec[..., None, :, :]
    phase = mix / jnp.maximum(jnp.abs(mix), eps)
    return magnitude.astype(jnp.float32) * phase


def wiener_masks(magnitudes: jnp.ndarray, mixture_magnitude: jnp.ndarray, *,
                 include_residual: bool = True, power: float = 2.0, eps: float = 1e-10
                 ) -> jnp.ndarray:
    """Single-channel Wiener masks across instruments: |S_j|^p / sum_k |S_k|^p.

    Args:
      magnitudes: float32[..., n_inst, frames, bins], per-instrument magnitude estimates.
      mixture_magnitude: float32[..., frames, bins].
      include_residual: add a residual source max(|X| - sum_j |S_j|, 0) to the denominator, so
        energy that belongs to no target instrument is not forced into one.
      power: 2 for the Wiener (power-ratio) mask, 1 for an amplitude ratio.
    Returns: float32[..., n_inst, frames, bins] in [0, 1].
    """
    powers = magnitudes ** power
    denom = jnp.sum(powers, axis=-3)
    if include_residual:
        residual = jnp.maximum(mixture_magnitude - jnp.sum(magnitudes, axis=-3), 0.0)
        denom = denom + residual ** power
    return powers / (denom[..., None, :, :] + eps)


def apply_masks(masks: jnp.ndarray, mixture_spec: jnp.ndarray) -> jnp.ndarray:
    """masks float32[..., n_inst, frames, bins] x mixture complex64[..., frames, bins]."""
    return masks.astype(jnp.float32) * mixture_spec[..., None, :, :]

"""Oracle estimates (sigsep-mus-oracle definitions) at a separator's own STFT settings.

These frame every score: the mixture as every estimate is the floor, the ideal masks (computed
from the true stems) are what a mask-based separator at these STFT settings could reach.

- Ideal binary mask (IBM): M_j = 1 where |S_j| / |X| >= theta (theta = 0.5), else 0.
- Ideal ratio mask (IRM): M_j = |S_j|^2 / sum_k |S_k|^2, the sum over *every* source in the mix,
  including the residual x - sum_j s_j when the targets do not cover the whole mixture.
- Mixture: every estimate is the mixture.

Masks multiply the mixture STFT; the inverse STFT (`mt3x.audio.istft`) gives waveforms of the
mixture's length.
"""

from __future__ import annotations

import functools
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from separation.spectral import StftConfig, apply_masks

OracleKind = Literal["mixture", "ibm", "irm"]
ORACLE_KINDS: tuple[str, ...] = ("mixture", "ibm", "irm")


def ideal_binary_mask(source_specs: jnp.ndarray, mixture_spec: jnp.ndarray, *,
                      theta: float = 0.5, eps: float = 1e-10) -> jnp.ndarray:
    """IBM. source_specs complex64[..., n_inst, frames, bins], mixture complex64[..., frames, bins]
    -> float32[..., n_inst, frames, bins] of 0/1."""
    ratio = jnp.abs(source_specs) / (jnp.abs(mixture_spec)[..., None, :, :] + eps)
    return (ratio >= theta).astype(jnp.float32)


def ideal_ratio_mask(source_specs: jnp.ndarray, residual_spec: jnp.ndarray | None = None, *,
                     eps: float = 1e-10) -> jnp.ndarray:
    """IRM |S_j|^2 / sum_k |S_k|^2 (+ |R|^2 of the residual when given).

    source_specs complex64[..., n_inst, frames, bins]; residual complex64[..., frames, bins] or None
    -> float32[..., n_inst, frames, bins] in [0, 1].
    """
    power = jnp.abs(source_specs) ** 2
    denom = jnp.sum(power, axis=-3)
    if residual_spec is not None:
        denom = denom + jnp.abs(residual_spec) ** 2
    return power / (denom[..., None, :, :] + eps)


@functools.partial(jax.jit, static_argnames=("kind", "stft_config", "theta"))
def _oracle_jit(mixture: jnp.ndarray, sources: jnp.ndarray, kind: str, stft_config: StftConfig,
                theta: float) -> jnp.ndarray:
    length = mixture.shape[-1]
    mix_spec = stft_config.stft(mixture)
    src_spec = stft_config.stft(sources)
    if kind == "ibm":
        masks = ideal_binary_mask(src_spec, mix_spec, theta=theta)
    else:
        residual = stft_config.stft(mixture - jnp.sum(sources, axis=-2))
        masks = ideal_ratio_mask(src_spec, residual)
    return stft_config.istft(apply_masks(masks, mix_spec), length=length)


def oracle_estimates(mixture: np.ndarray, sources: np.ndarray, kind: OracleKind,
                     stft_config: StftConfig, *, theta: float = 0.5) -> np.ndarray:
    """Oracle separation of one or more mixtures.

    Args:
      mixture: float32[..., samples].
      sources: float32[..., n_inst, samples], the true target stems (may not sum to the mixture;
        the remainder is treated as one more source for the IRM).
      kind: 'mixture', 'ibm' or 'irm'.
      stft_config: the separator's STFT settings.
      theta: IBM threshold.

    Returns: float32[..., n_inst, samples].
    """
    mixture = np.asarray(mixture, np.float32)
    sources = np.asarray(sources, np.float32)
    if kind == "mixture":
        return np.broadcast_to(mixture[..., None, :], sources.shape).copy()
    if kind not in ORACLE_KINDS:
        from mt3x.errors import Mt3xError
        raise Mt3xError(f"oracle kind {kind!r}: expected one of {ORACLE_KINDS}")
    out = _oracle_jit(jnp.asarray(mixture), jnp.asarray(sources), kind, stft_config, float(theta))
    return np.asarray(out, np.float32)

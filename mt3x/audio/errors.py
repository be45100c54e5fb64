"""Errors of the audio package (numpy- and JAX-free, so host-side code can raise them)."""

from __future__ import annotations

from mt3x.errors import Mt3xError


class SpectralError(Mt3xError):
    """Invalid argument to a spectral kernel (frame/hop/FFT sizes, window, mel parameters)."""

"""mt3x: multi-instrument music transcription (MT3) and source separation in JAX/Flax."""

__version__ = "0.1.0"

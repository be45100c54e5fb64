"""Context stacking with gamma normalisation (Uhlich, Giron, Mitsufuji, ICASSP 2015).

The DNN's input for frame t is the magnitudes of frames t - C*skip, ..., t, ..., t + C*skip stacked
into one vector of (2C+1) * bins values, frame-major (oldest frame first). With 50 % overlapping
frames, skip = 2 makes the context frames non-overlapping as in the paper; skip = 1 uses adjacent
frames. Frames beyond either end of the signal are zeros.

gamma_t = mean over the 2C+1 stacked frames of each frame's Euclidean norm; the network sees
stacked / gamma and its output is multiplied back by gamma, so a linear first layer is
level-independent. Pure jax.numpy, jit-able.
"""

from __future__ import annotations

import jax.numpy as jnp


def stack_context(magnitude: jnp.ndarray, context: int = 3, frame_skip: int = 1) -> jnp.ndarray:
    """Stacks neighbouring frames.

    Args:
      magnitude: float32[..., frames, bins].
      context: C, frames on each side.
      frame_skip: distance in frames between stacked frames.
    Returns:
      float32[..., frames, 2C+1, bins]; index C along axis -2 is the centre frame.
    """
    reach = context * frame_skip
    frames = magnitude.shape[-2]
    pad = [(0, 0)] * (magnitude.ndim - 2) + [(reach, reach), (0, 0)]
    padded = jnp.pad(magnitude, pad)
    slices = [padded[..., reach + k * frame_skip: reach + k * frame_skip + frames, :]
              for k in range(-context, context + 1)]
    return jnp.stack(slices, axis=-2)


def normalized_context(magnitude: jnp.ndarray, context: int = 3, frame_skip: int = 1,
                       eps: float = 1e-8) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Stacked, gamma-normalised DNN input.

    Args:
      magnitude: float32[..., frames, bins] mixture magnitudes.
    Returns:
      (inputs float32[..., frames, (2C+1) * bins], gamma float32[..., frames, 1]); inputs =
      stacked / max(gamma, eps). Multiply a network output by gamma to get magnitudes.
    """
    stacked = stack_context(magnitude, context, frame_skip)
    gamma = jnp.mean(jnp.sqrt(jnp.sum(stacked * stacked, axis=-1)), axis=-1, keepdims=True)
    flat = jnp.reshape(stacked, stacked.shape[:-2] + (-1,))
    return flat / jnp.maximum(gamma, eps), gamma


def centre_frame(inputs: jnp.ndarray, num_bins: int, context: int = 3) -> jnp.ndarray:
    """The centre frame of stacked inputs: float32[..., (2C+1)*bins] -> float32[..., bins].

    This is the identity baseline's estimate (copy the mixture frame).
    """
    return inputs[..., context * num_bins:(context + 1) * num_bins]

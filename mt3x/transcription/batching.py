"""Segments -> tokens in fixed-size batches: the decoding loop that a checkpoint's
`mt3x.transcription.decoder.SegmentDecoder` and a bundle's `BundleTranscriber` share.

Every call of the decode function has one shape (the last batch is padded with all-zero,
full-length segments whose tokens are dropped), so a jitted step compiles once; all batches are
dispatched before any result is fetched.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np


def decode_in_batches(run_batch: Callable[[np.ndarray, np.ndarray], Any], frames: np.ndarray,
                      lengths: np.ndarray | None, batch_size: int, decode_length: int
                      ) -> np.ndarray:
    """Decodes segments in fixed-size batches.

    Args:
      run_batch: (float32[batch_size, frames, 128], int32[batch_size] valid frames) -> int32
        [batch_size, decode_length] tokens (a device array; calls are dispatched before any
        result is fetched).
      frames: float32[n, frames, 128] sample frames.
      lengths: int32[n] valid frames per segment (None: all full).
      batch_size: segments per call; the last batch is padded with all-zero full-length
        segments (their tokens are dropped), so every call has one shape.
      decode_length: tokens per segment (the width of the result when n = 0).

    Returns:
      int32[n, decode_length] model ids.
    """
    frames = np.asarray(frames, np.float32)
    count, per_segment = frames.shape[0], frames.shape[1]
    lengths = (np.full(count, per_segment, np.int32) if lengths is None
               else np.asarray(lengths, np.int32))
    outputs = []
    for start in range(0, count, batch_size):
        chunk, chunk_lengths = frames[start:start + batch_size], lengths[start:start + batch_size]
        missing = batch_size - chunk.shape[0]
        if missing:
            chunk = np.concatenate([chunk, np.zeros((missing,) + chunk.shape[1:], np.float32)])
            chunk_lengths = np.concatenate([chunk_lengths,
                                            np.full(missing, per_segment, np.int32)])
        outputs.append(run_batch(chunk, chunk_lengths))
    tokens = [np.asarray(jax.device_get(out)) for out in outputs]
    if not tokens:
        return np.zeros((0, decode_length), np.int32)
    return np.concatenate(tokens)[:count].astype(np.int32)

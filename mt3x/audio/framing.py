"""Framing and overlap-add: the two reshaping kernels under the STFT and its inverse.

Both are pure `jax.numpy`, jit- and vmap-able, differentiable, and act on the last axis (any
leading batch dims). They avoid per-frame Python loops and scatter/gather where they can:

- `frame` cuts the signal into hop-sized chunks (one reshape) and builds each frame from
  `ceil(frame_length / hop_length)` consecutive chunks with one gather of whole rows, which XLA
  fuses with the frames' consumer. Only when a frame spans very many hops (tiny hops) does it
  gather single samples instead.
- `overlap_add` is the transpose: frames are split into hop-sized pieces and piece `q` of every frame
  is added, shifted by `q` chunks, into the output; again a few pads and adds, with a scatter-add
  fallback for tiny hops.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from mt3x.audio.errors import SpectralError

# Frames spanning more hops than this are gathered (`frame`) sample by sample rather than chunk by
# chunk, and overlap-added (`overlap_add`) with a scatter-add rather than shifted slices.
_MAX_SLICES = 64




def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise SpectralError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def num_frames(num_samples: int, frame_length: int, hop_length: int, pad_end: bool) -> int:
    """Number of frames `frame` returns for a signal of `num_samples` samples.

    With `pad_end` (tf.signal.frame semantics) it is `ceil(num_samples / hop_length)`; without,
    `1 + (num_samples - frame_length) // hop_length`, or 0 when the signal is shorter than a frame.
    """
    if pad_end:
        return -(-num_samples // hop_length)
    if num_samples < frame_length:
        return 0
    return 1 + (num_samples - frame_length) // hop_length


def frame(
    signal: Array,
    frame_length: int,
    hop_length: int,
    pad_end: bool = False,
    pad_value: float = 0.0,
) -> Array:
    """Slices the last axis into overlapping frames (like `tf.signal.frame`).

    Args:
      signal: `[..., samples]` array of any dtype.
      frame_length: samples per frame.
      hop_length: samples between the starts of consecutive frames.
      pad_end: pad the end with `pad_value` so that a frame starts at every hop inside the
        signal: the result has `ceil(samples / hop_length)` frames, the last ones reading
        `pad_value` past the end.
        Without it, only whole frames are returned (`1 + (samples - frame_length) // hop_length`).
      pad_value: value used for `pad_end` padding.

    Returns:
      `[..., frames, frame_length]` array, same dtype as `signal`; frame `i` holds samples
      `i * hop_length ... i * hop_length + frame_length - 1`.
    """
    frame_length = _check_positive_int("frame_length", frame_length)
    hop_length = _check_positive_int("hop_length", hop_length)
    signal = jnp.asarray(signal)
    if signal.ndim == 0:
        raise SpectralError("signal: expected an array with a samples axis, got a scalar")
    batch_shape = signal.shape[:-1]
    n = signal.shape[-1]
    count = num_frames(n, frame_length, hop_length, pad_end)
    if count == 0:
        return jnp.zeros((*batch_shape, 0, frame_length), signal.dtype)

    chunks_per_frame = -(-frame_length // hop_length)
    if chunks_per_frame > _MAX_SLICES:
        needed = (count - 1) * hop_length + frame_length
        if needed > n:
            signal = _pad_last(signal, needed - n, pad_value)
        index = (np.arange(count)[:, None] * hop_length + np.arange(frame_length)[None, :])
        return jnp.take(signal, jnp.asarray(index.astype(np.int32)), axis=-1)

    # Cut into hop-sized chunks; frame i is chunks i .. i + chunks_per_frame - 1, truncated.
    num_chunks = count - 1 + chunks_per_frame
    total = num_chunks * hop_length
    if total > n:
        signal = _pad_last(signal, total - n, pad_value)
    elif total != n:  # (not `<`: equality of symbolic sizes may be undecidable)
        signal = signal[..., :total]
    chunks = signal.reshape(*batch_shape, num_chunks, hop_length)
    if chunks_per_frame == 1:
        frames = chunks[..., :count, :]
    else:
        # One gather of whole hop-sized rows: XLA emits it as a single loop that fuses with
        # what consumes the frames (e.g. the window product), where stacking shifted slices
        # materialises every slice and then concatenates them (~2x slower on CPU, forward and
        # backward).
        frames = chunks[..., chunk_index(count, chunks_per_frame), :].reshape(
            *batch_shape, count, chunks_per_frame * hop_length)
    return frames[..., :frame_length]


def chunk_index(count: Any, chunks_per_frame: int) -> np.ndarray | Array:
    """int32 `[count, chunks_per_frame]`: frame `i` is made of hop-sized chunks `i + q`.

    A constant (numpy) for an integer `count`; computed on device for a symbolic one (a
    length-polymorphic `jax.export`)."""
    if not isinstance(count, int):
        shape = (count, chunks_per_frame)
        return (jax.lax.broadcasted_iota(jnp.int32, shape, 0)
                + jax.lax.broadcasted_iota(jnp.int32, shape, 1))
    return (np.arange(count)[:, None] + np.arange(chunks_per_frame)[None, :]).astype(np.int32)


def overlap_add(frames: Array, hop_length: int) -> Array:
    """Sums overlapping frames back into a signal (the transpose of `frame` without padding).

    Args:
      frames: `[..., frames, frame_length]` array.
      hop_length: samples between the starts of consecutive frames.

    Returns:
      `[..., (frames - 1) * hop_length + frame_length]` array, same dtype as `frames`; output
      sample `t` is the sum of `frames[..., i, t - i * hop_length]` over the frames covering `t`.
    """
    hop_length = _check_positive_int("hop_length", hop_length)
    frames = jnp.asarray(frames)
    if frames.ndim < 2:
        raise SpectralError(f"frames: expected [..., frames, frame_length], got shape "
                            f"{frames.shape}")
    *batch_shape, count, frame_length = frames.shape
    out_length = max(count - 1, 0) * hop_length + frame_length
    if count == 0:
        return jnp.zeros((*batch_shape, 0), frames.dtype)

    chunks_per_frame = -(-frame_length // hop_length)
    if chunks_per_frame > _MAX_SLICES:
        index = (np.arange(count)[:, None] * hop_length + np.arange(frame_length)[None, :])
        out = jnp.zeros((*batch_shape, out_length), frames.dtype)
        flat = frames.reshape(*batch_shape, count * frame_length)
        return out.at[..., jnp.asarray(index.reshape(-1).astype(np.int32))].add(flat)

    padded_length = chunks_per_frame * hop_length
    if padded_length > frame_length:
        frames = _pad_last(frames, padded_length - frame_length, 0.0)
    pieces = frames.reshape(*batch_shape, count, chunks_per_frame, hop_length)
    num_chunks = count - 1 + chunks_per_frame
    no_pad = [(0, 0)] * len(batch_shape)
    total = None
    for q in range(chunks_per_frame):
        shifted = jnp.pad(pieces[..., q, :], [*no_pad, (q, chunks_per_frame - 1 - q), (0, 0)])
        total = shifted if total is None else total + shifted
    signal = total.reshape(*batch_shape, num_chunks * hop_length)
    return signal[..., :out_length]


def _pad_last(x: Array, amount: int, value: float) -> Array:
    widths = [(0, 0)] * (x.ndim - 1) + [(0, amount)]
    return jnp.pad(x, widths, constant_values=jnp.asarray(value, x.dtype))


# ----------------------------------------------------------------------------------------------
# CPU evaluation in steps

# Each step of `map_in_steps` handles about this many float32 frame samples per device (4 MiB,
# i.e. 512 frames of 2048), so the frames, spectrum and magnitude of a step stay small and their
# buffers are reused from step to step.
CPU_STEP_FRAME_SAMPLES = 1 << 20


def cpu_step_plan(num_items: int, frame_samples_per_item: int) -> tuple[int, int]:
    """How `map_in_steps` splits `num_items` independent items into sequential steps.

    XLA:CPU gives every intermediate of a jitted call its own fresh allocation, and glibc serves
    large ones with new mmaps whose pages are faulted in one 4 KiB page at a time: transforming a
    large batch at once writes and faults in ~12 KiB of frames and spectrum per STFT frame of
    2048, ~3 GiB for 1000 s of 16 kHz audio at hop 128, which costs more than the FFTs. Steps keep
    the working set to a few MiB. On GPU/TPU (pooled memory, wide parallelism) it is one step.

    Returns `(groups, per_step)`: items are split into `groups` contiguous groups (one per device
    when the count allows, so a batch sharded over the devices keeps its sharding) and each step
    takes `per_step` items of every group; `per_step` divides the group size, so nothing is
    padded or copied. `(1, num_items)` means a single step; so does a symbolic `num_items`
    (a batch-polymorphic `jax.export`, whose module must suit every size and platform).
    """
    single = (1, num_items)
    if not isinstance(num_items, int) or num_items == 0 or jax.default_backend() != "cpu":
        return single
    groups = jax.device_count()
    if num_items % groups:
        groups = 1
    per_group = num_items // groups
    target = max(1, CPU_STEP_FRAME_SAMPLES // max(1, frame_samples_per_item))
    per_step = max(d for d in range(1, min(target, per_group) + 1) if per_group % d == 0)
    if per_step == per_group:
        return single
    return groups, per_step


def map_in_steps(fn: Callable[[Array], Array], items: Array, frame_samples_per_item: int,
                 plan: tuple[int, int] | None = None) -> Array:
    """`fn(items)` for an `fn` that treats `items[i]` independently, run a few items per step.

    Args:
      fn: maps `[k, *item_shape]` to `[k, *out_shape]`, item by item (e.g. one segment's
        log-mel); it is traced once, for `k = groups * per_step`.
      items: `[n, *item_shape]`.
      frame_samples_per_item: STFT frames x frame length that `fn` materialises per item; sizes
        the steps (see `cpu_step_plan`).
      plan: `(groups, per_step)` to use instead of `cpu_step_plan`'s (tests).

    Returns:
      `fn(items)`: `[n, *out_shape]`, computed by `jax.lax.map` over steps; bit for bit the
      single-call result whenever `fn`'s per-item arithmetic does not depend on `k`.
    """
    num_items = items.shape[0]
    groups, per_step = plan or cpu_step_plan(num_items, frame_samples_per_item)
    if groups * per_step >= num_items:
        return fn(items)
    steps = num_items // (groups * per_step)
    item_shape = items.shape[1:]
    # [groups, steps, per_step, ...] -> steps first; with one group the moves are free reshapes.
    stepped = jnp.moveaxis(items.reshape(groups, steps, per_step, *item_shape), 1, 0)

    def one_step(chunk: Array) -> Array:  # [groups, per_step, *item_shape]
        out = fn(chunk.reshape(groups * per_step, *item_shape))
        return out.reshape(groups, per_step, *out.shape[1:])

    out = jax.lax.map(one_step, stepped)  # [steps, groups, per_step, *out_shape]
    return jnp.moveaxis(out, 0, 1).reshape(num_items, *out.shape[3:])


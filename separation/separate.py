"""Audio of any length -> stems: chunked separation with overlap and cross-fade.

The mixture is cut into chunks of `chunk_samples` (all but the last of equal length, so one
compiled shape serves them; the last is separated at its true length so it sees the signal's real
end), separated `chunks_per_call` at a time, and put back together with weights that
- are 0 over the first and last `margin_samples` of a chunk (where the model sees the chunk edge:
  STFT padding, missing context), and
- ramp linearly over `fade_samples` next to those margins, complementary between neighbours,
so the weights sum to 1 everywhere. Consecutive chunks start `chunk - 2 * margin - fade` samples
apart. When the margin covers the model's receptive field (about n_fft + C * skip * hop for the
DNN), the result equals one-piece separation up to float rounding. Working memory is bounded by
`chunks_per_call` chunks; the output array is the only buffer that grows with the input.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from mt3x.errors import Mt3xError

SeparateFn = Callable[[np.ndarray], np.ndarray]
"""float32[n_chunks, samples] mixtures -> float32[n_chunks, n_inst, samples] stems."""


@dataclasses.dataclass(frozen=True)
class ChunkPlan:
    """Chunking of a signal: `starts[i]` is chunk i's first sample in the zero-padded signal."""
    chunk_samples: int
    margin_samples: int
    fade_samples: int
    starts: tuple[int, ...]
    padded_length: int

    def weights(self, index: int) -> np.ndarray:
        """float32[chunk_samples] cross-fade weights of chunk `index`."""
        w = np.ones(self.chunk_samples, np.float32)
        m, f, n = self.margin_samples, self.fade_samples, self.chunk_samples
        ramp = (np.arange(f, dtype=np.float32) + 0.5) / max(f, 1)
        if index > 0:
            w[:m] = 0.0
            w[m:m + f] = ramp
        if index < len(self.starts) - 1:
            w[n - m - f:n - m] = 1.0 - ramp
            w[n - m:] = 0.0
        return w


def plan_chunks(num_samples: int, chunk_samples: int, margin_samples: int, fade_samples: int,
                align_samples: int = 1) -> ChunkPlan:
    """The chunk starts covering `num_samples`. Raises Mt3xError for impossible settings.

    `align_samples` (e.g. the STFT hop): chunk starts are multiples of it, so every chunk's STFT
    frames coincide with the one-piece STFT's frames; the fade is lengthened to make it so.
    """
    overlap = 2 * margin_samples + fade_samples
    if margin_samples < 0 or fade_samples < 0 or chunk_samples < 2 * overlap or chunk_samples <= 0:
        raise Mt3xError(f"chunking: chunk_samples ({chunk_samples}) must be at least "
                        f"2 * (2 * margin + fade) = {2 * overlap}")
    step = chunk_samples - overlap
    step -= step % max(align_samples, 1)
    if step <= 0 or chunk_samples < 2 * (chunk_samples - step):
        raise Mt3xError(f"chunking: chunk_samples ({chunk_samples}) too short for alignment "
                        f"to {align_samples} samples with margin {margin_samples}")
    fade_samples = chunk_samples - step - 2 * margin_samples
    count = 1 if num_samples <= chunk_samples else 1 + math.ceil((num_samples - chunk_samples) / step)
    starts = tuple(i * step for i in range(count))
    return ChunkPlan(chunk_samples, margin_samples, fade_samples, starts,
                     starts[-1] + chunk_samples)


def separate_long(separate_fn: SeparateFn, mixture: np.ndarray, *, chunk_samples: int,
                  margin_samples: int, fade_samples: int, chunks_per_call: int = 4,
                  align_samples: int = 1) -> np.ndarray:
    """Separates a mixture of any length chunk by chunk.

    Args:
      separate_fn: separator of a batch of equal-length chunks (see `SeparateFn`).
      mixture: float32[samples], mono, at the separator's sample rate.
      chunk_samples, margin_samples, fade_samples: see the module docstring.
      chunks_per_call: chunks per `separate_fn` call (bounds working memory).
      align_samples: chunk starts are multiples of this (pass the STFT hop).
    Returns: float32[n_inst, samples].
    """
    mixture = np.asarray(mixture, np.float32)
    if mixture.ndim != 1:
        raise Mt3xError(f"separate: expected a mono float32[samples] mixture, got shape "
                        f"{mixture.shape} (downmix or pick a channel first)")
    n = mixture.size
    if n == 0:
        raise Mt3xError("separate: the mixture is empty")
    plan = plan_chunks(n, chunk_samples, margin_samples, fade_samples, align_samples)
    last = len(plan.starts) - 1
    out: np.ndarray | None = None

    def add(indices: list[int], stems: np.ndarray) -> None:
        nonlocal out
        if out is None:
            out = np.zeros((stems.shape[1], n), np.float32)
        for k, i in enumerate(indices):
            s = plan.starts[i]
            length = min(chunk_samples, n - s)
            out[:, s:s + length] += stems[k, :, :length] * plan.weights(i)[:length]

    # every chunk but the last has the full length (one compiled shape); the last one is
    # separated at its true length so that its end sees the signal's real end, as one piece does
    for first in range(0, last, chunks_per_call):
        idx = list(range(first, min(first + chunks_per_call, last)))
        chunks = np.stack([mixture[plan.starts[i]:plan.starts[i] + chunk_samples] for i in idx])
        if len(idx) < chunks_per_call:
            chunks = np.concatenate(
                [chunks, np.zeros((chunks_per_call - len(idx), chunk_samples), np.float32)])
        add(idx, np.asarray(separate_fn(chunks), np.float32)[:len(idx)])
    add([last], np.asarray(separate_fn(mixture[None, plan.starts[last]:]), np.float32))
    assert out is not None
    return out


def model_separate_fn(model: Any, params: Any) -> SeparateFn:
    """A `SeparateFn` from a separator Model object (`predict(params, {'mixture'})['sources']`);
    the jitted predict is shared by every call for the same model (compiled once per shape)."""
    predict = _jitted_predict(model)

    def fn(chunks: np.ndarray) -> np.ndarray:
        return np.asarray(predict(params, jnp.asarray(chunks)))
    return fn


@functools.lru_cache(maxsize=16)
def _jitted_predict(model: Any) -> Callable[[Any, jax.Array], jax.Array]:
    return jax.jit(lambda p, m: model.predict(p, {"mixture": m})["sources"])


def receptive_margin(model: Any) -> int:
    """A margin (samples) covering a separator's receptive field along time, with headroom.

    DNN: n_fft + C * skip * hop (STFT window + stacked context). U-Net: n_fft plus the time
    kernels' reach ((time_kernel // 2) * 2 * layers frames)."""
    n_fft, hop = model.n_fft, model.hop_length
    if hasattr(model, "context"):
        frames = model.context * model.frame_skip + 1
    else:
        frames = 2 * len(model.channels) + 1
    return int(n_fft + frames * hop)


DEFAULT_CHUNK_SECONDS = 10.0
DEFAULT_FADE_SECONDS = 0.1
DEFAULT_CHUNKS_PER_CALL = 2


def separate_in_chunks(separate_fn: SeparateFn, mixture: np.ndarray, *, sample_rate: int,
                       hop_length: int, margin_samples: int,
                       chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
                       fade_seconds: float = DEFAULT_FADE_SECONDS,
                       chunks_per_call: int = DEFAULT_CHUNKS_PER_CALL) -> np.ndarray:
    """`separate_long` with the default chunking of a separator (the checkpoint path and the
    bundle runtime share it, so their chunk boundaries coincide): chunks of `chunk_seconds`
    (at least two margins and a fade on each side), starts aligned to the STFT hop."""
    fade = int(fade_seconds * sample_rate)
    chunk = max(int(chunk_seconds * sample_rate), 2 * (2 * margin_samples + fade))
    return separate_long(separate_fn, mixture, chunk_samples=chunk, margin_samples=margin_samples,
                         fade_samples=fade, chunks_per_call=chunks_per_call,
                         align_samples=hop_length)


def separate_with_model(model: Any, params: Any, mixture: np.ndarray, *,
                        chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
                        fade_seconds: float = DEFAULT_FADE_SECONDS,
                        chunks_per_call: int = DEFAULT_CHUNKS_PER_CALL) -> np.ndarray:
    """float32[samples] at model.sample_rate -> float32[n_inst, samples] with default chunking."""
    return separate_in_chunks(model_separate_fn(model, params), mixture,
                              sample_rate=model.sample_rate, hop_length=model.hop_length,
                              margin_samples=receptive_margin(model), chunk_seconds=chunk_seconds,
                              fade_seconds=fade_seconds, chunks_per_call=chunks_per_call)

"""Separation from a separator bundle alone: no model code, no checkpoint, no Flax/Orbax.

    >>> separator = BundleSeparator('bundles/unet')
    >>> stems = separator.separate(mixture)        # f32[samples] @ separator.sample_rate
    >>> stems.shape                                # (len(separator.instruments), samples)

Imports jax (to run the exported StableHLO), numpy, `mt3x.bundles.bundle` and
`separation.separate` / `separation.data`, never `separation.model_objects`, `separation.models`,
`separation.checkpoints`, `separation.training`, `mt3x.trainer` or flax (tested in a fresh
process that blocks them).

Chunking is the checkpoint path's (`separation.separate.separate_in_chunks`): the same margin
(stored in the bundle), chunk length, fade and hop alignment, so the chunk boundaries coincide
and the stems equal the checkpoint's to float rounding. The exported function takes any length
from `min_samples` (n_fft // 2 + 1) up, so every chunk, the last one included, is separated at
its true length.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
import numpy as np

from mt3x.bundles.bundle import BundleError, read_bundle
from mt3x.data.instrument_groups import groups_from_json
from separation.separate import separate_in_chunks

SEPARATOR_KIND = "separator"


class BundleSeparator:
    """A separator bundle, loaded and ready to separate.

    Attributes:
      path: the bundle folder. kind: 'dnn' or 'unet'. instruments: stem names (output order).
      groups: the instrument groups it was trained for (or None). sample_rate (Hz), n_fft,
      hop_length: STFT settings. margin (samples): the receptive margin used for chunking.
      min_samples: shortest call of the exported function. stored_dtype: 'float32'/'bfloat16'.
      step: the checkpoint step it was exported from.

    Raises:
      BundleError: not a bundle, not a separator bundle, corrupt files (checksums), or a function
        not lowered for this machine's platform; each names the path.
    """

    def __init__(self, bundle: str | os.PathLike) -> None:
        loaded = read_bundle(bundle, kind=SEPARATOR_KIND, function_names=("separate",))
        manifest = loaded.manifest
        self.path: Path = loaded.path
        try:
            separator, audio, chunking = (manifest["separator"], manifest["audio"],
                                          manifest["chunking"])
            self.kind = str(separator["kind"])
            self.settings = dict(separator["settings"])
            self.instruments = tuple(str(name) for name in separator["instruments"])
            self.groups = groups_from_json(separator.get("instrument_groups"))
            self.sample_rate = int(audio["sample_rate"])
            self.n_fft = int(audio["n_fft"])
            self.hop_length = int(audio["hop_length"])
            self.margin = int(chunking["margin_samples"])
            self.chunk_seconds = float(chunking["chunk_seconds"])
            self.fade_seconds = float(chunking["fade_seconds"])
            self.chunks_per_call = int(chunking["chunks_per_call"])
            self.min_samples = int(chunking["min_samples"])
        except (KeyError, TypeError, ValueError) as err:
            raise BundleError(f"{self.path}/bundle.json: malformed separator fields "
                              f"({err!r})") from None
        self.manifest = manifest
        self.step = manifest.get("source", {}).get("step")
        self.stored_dtype = manifest.get("stored_dtype")
        self.params = jax.device_put(loaded.params)
        exported = loaded.functions["separate"]
        self._run = jax.jit(lambda params, mixture: exported.call(params, mixture))

    def separate_chunks(self, chunks: np.ndarray) -> np.ndarray:
        """float32[n, samples] mixtures -> float32[n, n_inst, samples] (a `SeparateFn`).

        Raises BundleError for another shape or fewer than `min_samples` samples."""
        chunks = np.asarray(chunks, np.float32)
        if chunks.ndim != 2:
            raise BundleError(f"separate_chunks: expected float32[n, samples], got shape "
                              f"{chunks.shape}")
        if chunks.shape[1] < self.min_samples:
            raise BundleError(f"{self.path}: needs at least {self.min_samples} samples (n_fft // 2"
                              f" + 1 at {self.sample_rate} Hz) per call, got {chunks.shape[1]}")
        return np.asarray(self._run(self.params, chunks))

    def separate(self, mixture: np.ndarray, *, chunk_seconds: float | None = None,
                 fade_seconds: float | None = None,
                 chunks_per_call: int | None = None) -> np.ndarray:
        """float32[samples] at `sample_rate` -> float32[n_inst, samples], chunked like
        `separation.separate.separate_with_model` (defaults stored in the bundle)."""
        return separate_in_chunks(
            self.separate_chunks, mixture, sample_rate=self.sample_rate,
            hop_length=self.hop_length, margin_samples=self.margin,
            chunk_seconds=self.chunk_seconds if chunk_seconds is None else chunk_seconds,
            fade_seconds=self.fade_seconds if fade_seconds is None else fade_seconds,
            chunks_per_call=self.chunks_per_call if chunks_per_call is None else chunks_per_call)

    def describe(self) -> str:
        """One line: path, kind, source step, stored dtype, instruments, rate."""
        return (f"bundle {self.path} ({self.kind} separator, step {self.step}, "
                f"{self.stored_dtype} params, {', '.join(self.instruments)} at "
                f"{self.sample_rate} Hz)")

"""A separator run directory -> an inference bundle (`mt3x-export --checkpoint DIR --out BUNDLE`).

One exported function (parameters first, in the stored dtype; `b` (batch) and `n` (samples,
at least `n_fft // 2 + 1`, what the STFT's reflect padding needs) are symbolic):

- `separate(params, mixture f32[b, n]) -> f32[b, n_inst, n]`: the separator's `predict` (STFT,
  network, masks/Wiener, iSTFT) on float32 parameters (bfloat16 ones are upcast inside).

Any length exports (the shared kernels in `mt3x.audio` are written for symbolic sizes; the
iSTFT's window-sum normalisation is then computed on device in float32, within ~2e-7 of the
float64 constant a concrete length gets). The bundle also records the chunking the checkpoint
path uses (`separation.separate.separate_in_chunks`: receptive margin, default chunk and fade),
so the runtime cuts a file into the same chunks and gives the same stems.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import jax
import numpy as np

from mt3x.bundles.bundle import (DEFAULT_PLATFORMS, cast_params, export_function, param_specs,
                                 upcast_params, write_bundle)
from mt3x.data.instrument_groups import groups_to_json
from separation.bundle_runtime import SEPARATOR_KIND
from separation.checkpoints import FORMAT_VERSION, load_separator, model_kind, model_settings
from separation.separate import (DEFAULT_CHUNK_SECONDS, DEFAULT_CHUNKS_PER_CALL,
                                 DEFAULT_FADE_SECONDS, receptive_margin)


def min_samples(n_fft: int) -> int:
    """Shortest input of the exported function: the STFT's reflect padding of n_fft // 2 samples
    needs a longer signal (the checkpoint path refuses shorter ones too)."""
    return n_fft // 2 + 1


def separator_function(model: Any, params: Any,
                       platforms: Sequence[str] = DEFAULT_PLATFORMS) -> jax.export.Exported:
    """`jax.export` of `separate(params, mixture f32[b, n]) -> f32[b, n_inst, n]`.

    `params` (numpy, float32 or bfloat16) fixes the parameter signature; batch and length
    (at least `min_samples(n_fft)`) are symbolic.
    """
    batch, length = jax.export.symbolic_shape(
        "b, n", constraints=(f"n >= {min_samples(model.n_fft)}",))

    def separate(stored: Any, mixture: jax.Array) -> jax.Array:
        return model.predict(upcast_params(stored), {"mixture": mixture})["sources"]

    mixture = jax.ShapeDtypeStruct((batch, length), np.float32)
    return export_function(separate, (param_specs(params), mixture), platforms)


def export_separator_bundle(checkpoint_dir: str | os.PathLike, out: str | os.PathLike, *,
                            dtype: str = "float32", step: int | None = None,
                            platforms: Sequence[str] = DEFAULT_PLATFORMS,
                            overwrite: bool = False) -> Path:
    """Writes the bundle of a separator run directory; returns its folder.

    Args:
      checkpoint_dir: a separator run directory (separator.json + checkpoints/).
      out: the bundle folder (written atomically; must not exist unless `overwrite`).
      dtype: stored parameter dtype, 'float32' or 'bfloat16' (half the size; the function
        computes in float32 from the rounded weights).
      step: checkpoint step (default: the latest committed one).
      platforms: lowering platforms (any of cpu, cuda, rocm, tpu).

    Raises:
      SeparatorCheckpointError (missing/partial checkpoint), BundleError (bad dtype or
      platforms, `out` exists).
    """
    model, params, info = load_separator(checkpoint_dir, step)
    stored = cast_params(params, dtype)
    function = separator_function(model, stored, platforms)
    groups = None if info.groups is None else groups_to_json(info.groups)
    hop = int(model.hop_length)
    config = {
        "separator": {"format": FORMAT_VERSION, "kind": model_kind(model),
                      "settings": model_settings(model),
                      "instruments": list(model.instruments), "instrument_groups": groups},
        "audio": {"sample_rate": int(model.sample_rate), "n_fft": int(model.n_fft),
                  "hop_length": hop},
        "chunking": {"margin_samples": receptive_margin(model),
                     "chunk_seconds": DEFAULT_CHUNK_SECONDS,
                     "fade_seconds": DEFAULT_FADE_SECONDS,
                     "chunks_per_call": DEFAULT_CHUNKS_PER_CALL,
                     "align_samples": hop,
                     "min_samples": min_samples(model.n_fft)},
        "stored_dtype": dtype,
    }
    source = {"checkpoint": str(Path(checkpoint_dir).absolute()), "step": _restored_step(
        checkpoint_dir, step)}
    return write_bundle(out, kind=SEPARATOR_KIND, config=config, params=stored,
                        functions={"separate": function}, source=source, overwrite=overwrite)


def _restored_step(checkpoint_dir: str | os.PathLike, step: int | None) -> int | None:
    """The step `load_separator` restored: `step`, else the latest committed one."""
    if step is not None:
        return int(step)
    from mt3x.trainer.checkpoints import finalized_steps

    steps = finalized_steps(Path(checkpoint_dir) / "checkpoints")[0]
    return steps[-1] if steps else None

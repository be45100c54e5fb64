"""A trained MT3 checkpoint -> an inference bundle (`mt3x-export --checkpoint DIR --out BUNDLE`).

Exported functions (all take the parameter tree first, in the stored dtype; `b` is a symbolic
batch size, F the frames per segment (256 for mt3), L the decode length):

- `encoder(params, frames f32[b, F, 128], lengths i32[b]) -> cross_kv`: raw 16 kHz sample frames
  (and each segment's valid frames: log-mel rows past them are zeroed, as MT3 pads a short last
  segment) -> MT3 log-mel (inside) -> encoder -> per decoder layer the cross-attention (keys,
  values), `dtype`[b, heads, F, head_dim].
- `decoder(params, cross_kv) -> i32[b, L]`: greedy decoding with a self-attention cache, in one
  while loop that stops when every segment has emitted EOS (EOS kept, 0 after it).
- `decoder_step(params, tokens i32[b], position i32[], cache, cross_kv) -> (logits f32[b, V],
  cache)`: one cached step, for callers who run their own search (sampling, beams, constraints);
  the cache starts as zeros of the shapes in bundle.json (`decoder_cache`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import jax
import numpy as np

from mt3x.bundles.bundle import (DEFAULT_PLATFORMS, cast_params, export_function, param_specs,
                                 upcast_params, write_bundle)
from mt3x.bundles.mt3_runtime import MT3_KIND, codec_description
from mt3x.audio.mt3_config import MT3_SPECTROGRAM_CONFIG
from mt3x.models.decoding import EOS_ID, cached_greedy_decode
from mt3x.models.network import Transformer, init_decoder_cache
from mt3x.trainer import Partitioner
from mt3x.transcription.checkpoint import load_model_and_params, model_spec
from mt3x.transcription.segments import segment_frames


def mt3_functions(model: Any, params: Any, *, frames_per_segment: int,
                  platforms: Sequence[str] = DEFAULT_PLATFORMS) -> dict[str, Any]:
    """The three exported functions of an `Mt3Model` for params stored like `params`.

    `params` (numpy, any float dtype) fixes the parameter signature; the batch is symbolic.
    """
    (batch,) = jax.export.symbolic_shape("b")
    length = model.max_decode_length
    network = model.network

    def encoder(stored: Any, frames: jax.Array, lengths: jax.Array) -> Any:
        weights = upcast_params(stored)
        encoded = model.encode(weights, {"encoder_input_tokens": frames,
                                         "encoder_input_lengths": lengths})
        return network.apply({"params": weights}, encoded, method=Transformer.cross_key_values)

    def decoder(stored: Any, cross_kv: Any) -> jax.Array:
        return cached_greedy_decode(network, upcast_params(stored), cross_kv, length)

    def decoder_step(stored: Any, tokens: jax.Array, position: jax.Array, cache: Any,
                     cross_kv: Any) -> tuple[jax.Array, Any]:
        return network.apply({"params": upcast_params(stored)}, tokens, position, cache, cross_kv,
                             method=Transformer.decode_step)

    specs = param_specs(params)
    frames = jax.ShapeDtypeStruct((batch, frames_per_segment, MT3_SPECTROGRAM_CONFIG.hop_width),
                                  np.float32)
    lengths = jax.ShapeDtypeStruct((batch,), np.int32)
    exported_encoder = export_function(encoder, (specs, frames, lengths), platforms)
    cross_kv = jax.tree.unflatten(exported_encoder.out_tree, exported_encoder.out_avals)
    cache = jax.eval_shape(lambda: init_decoder_cache(model.config, 1, length))
    cache = jax.tree.map(lambda a: jax.ShapeDtypeStruct((batch,) + a.shape[1:], a.dtype), cache)
    tokens = jax.ShapeDtypeStruct((batch,), np.int32)
    position = jax.ShapeDtypeStruct((), np.int32)
    return {"encoder": exported_encoder,
            "decoder": export_function(decoder, (specs, cross_kv), platforms),
            "decoder_step": export_function(decoder_step,
                                            (specs, tokens, position, cache, cross_kv), platforms)}


def export_mt3_bundle(checkpoint: str | os.PathLike, out: str | os.PathLike, *,
                      dtype: str = "float32", step: int | None = None, model: Any = None,
                      vocab: str | None = None, max_decode_length: int | None = None,
                      platforms: Sequence[str] = DEFAULT_PLATFORMS,
                      overwrite: bool = False) -> Path:
    """Writes the bundle of a train_mt3 checkpoint; returns its folder.

    Args:
      checkpoint: a train_mt3 workdir, its checkpoints/ folder or one checkpoints/<step>.
      out: the bundle folder (written atomically; must not exist unless `overwrite`).
      dtype: stored parameter dtype, 'float32' or 'bfloat16' (half the size; the functions
        compute in float32 from the rounded weights).
      step, model, vocab: see `mt3x.transcription.checkpoint.load_model_and_params`.
      max_decode_length: tokens per segment of `decoder` (default: the model's).
      platforms: lowering platforms.

    Raises:
      TranscriptionError / CheckpointError (bad checkpoint), BundleError (bad dtype, out exists).
    """
    model, params, vocab, step = load_model_and_params(
        checkpoint, model=model, vocab=vocab, step=step, max_decode_length=max_decode_length,
        partitioner=Partitioner(devices=jax.devices()[:1]))
    stored = cast_params(jax.device_get(params), dtype)
    frames_per_segment = segment_frames(vocab)
    functions = mt3_functions(model, stored, frames_per_segment=frames_per_segment,
                              platforms=platforms)
    cache_shape = [model.config.num_heads, model.max_decode_length, model.config.head_dim]
    config = {
        "model": model_spec(model, vocab),
        "codec": codec_description(vocab),
        "audio": {"sample_rate": MT3_SPECTROGRAM_CONFIG.sample_rate,
                  "hop_width": MT3_SPECTROGRAM_CONFIG.hop_width,
                  "frames_per_segment": frames_per_segment},
        "decoding": {"max_decode_length": model.max_decode_length, "eos_id": EOS_ID,
                     "pad_id": 0},
        "decoder_cache": {"layers": model.config.num_decoder_layers,
                          "shape": ["b", *cache_shape],
                          "dtype": str(np.dtype(model.config.activation_dtype))},
        "stored_dtype": dtype,
    }
    source = {"checkpoint": str(Path(checkpoint).absolute()), "step": step}
    return write_bundle(out, kind=MT3_KIND, config=config, params=stored, functions=functions,
                        source=source, overwrite=overwrite)

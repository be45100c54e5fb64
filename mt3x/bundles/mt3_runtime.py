"""Transcription from an MT3 bundle alone: no model code, no checkpoint, no TensorFlow.

    >>> transcriber = BundleTranscriber('bundles/mt3')
    >>> result = transcriber.transcribe(audio)              # f32[samples] @ 16 kHz
    >>> transcribe_files(['a.flac'], transcriber=transcriber, out_dir='out')

Imports jax (to run the exported StableHLO), numpy, the codec (numpy) and the model-free
transcription modules (`segments`, `batching`, `notes`), never `mt3x.models`, `mt3x.trainer` or
`mt3x.transcription.checkpoint` (tests/transcription/test_runtime_imports.py; the bundle CLI runs
in a fresh process that blocks them). Segments of all files are decoded in fixed-size batches
(the last one zero-padded) so the exported encoder+decoder compile once per process; each batch
is split over this process's devices (data parallel: the single-device StableHLO is partitioned
by XLA, parameters replicated), giving the same tokens as one device.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Sequence

import jax
import numpy as np

from mt3x.bundles.bundle import BundleError, read_bundle
from mt3x import codec
from mt3x.transcription.batching import decode_in_batches
from mt3x.transcription.notes import Transcription, transcribe_waveforms

MT3_KIND = "mt3"


def codec_description(vocab: str) -> dict[str, Any]:
    """What fixes a vocabulary's token ids (JSON-normalised); stored in the bundle and compared
    with this installation's codec when the bundle is loaded."""
    config = codec.get_config(vocab)
    description = {
        "name": config.name, "vocab": dataclasses.asdict(config.vocab),
        "program_granularity": config.program_granularity, "use_ties": config.use_ties,
        "onsets_only": config.onsets_only, "inputs_length": config.inputs_length,
        "steps_per_second": config.codec.steps_per_second,
        "event_ranges": [[r.type, r.min_value, r.max_value] for r in config.codec.event_ranges],
        "num_embeddings": config.vocabulary.num_embeddings,
    }
    return json.loads(json.dumps(description))


class BundleTranscriber:
    """An MT3 bundle, loaded and ready to transcribe (same interface as `Transcriber`).

    Args:
      bundle: the bundle folder written by `mt3x-export`.
      batch_size: segments per call of the exported functions (every call has this shape);
        rounded up to a multiple of the number of devices.
      devices: the devices a batch is split over (default: all of this process's devices).

    Raises:
      BundleError: not an MT3 bundle, corrupt files, or a codec that differs from this
        installation's (token ids would be misread).
    """

    def __init__(self, bundle: str | os.PathLike, *, batch_size: int = 8,
                 devices: Sequence[Any] | None = None) -> None:
        if batch_size < 1:
            raise BundleError(f"batch_size must be >= 1, got {batch_size}")
        loaded = read_bundle(bundle, kind=MT3_KIND, function_names=("encoder", "decoder"))
        manifest = loaded.manifest
        self.path = loaded.path
        try:
            self.vocab = str(manifest["codec"]["name"])
            self.frames_per_segment = int(manifest["audio"]["frames_per_segment"])
            self.max_decode_length = int(manifest["decoding"]["max_decode_length"])
        except (KeyError, TypeError, ValueError) as err:
            raise BundleError(f"{self.path}/bundle.json: malformed MT3 fields ({err!r})") from None
        expected = codec_description(self.vocab)
        if manifest["codec"] != expected:
            differing = sorted(k for k in expected if manifest["codec"].get(k) != expected[k])
            raise BundleError(f"{self.path}: its {self.vocab!r} codec differs from this "
                              f"installation's in {differing}; token ids would be misread")
        self.manifest = manifest
        self.step = manifest.get("source", {}).get("step")
        self.stored_dtype = manifest.get("stored_dtype")
        devices = list(devices) if devices is not None else jax.local_devices()
        mesh = jax.sharding.Mesh(np.array(devices), ("data",))
        replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
        self.batch_size = len(devices) * -(-int(batch_size) // len(devices))
        self.params = jax.device_put(loaded.params, replicated)
        encoder, decoder = loaded.functions["encoder"], loaded.functions["decoder"]
        self._run = jax.jit(
            lambda params, frames, lengths: decoder.call(params,
                                                         encoder.call(params, frames, lengths)),
            in_shardings=(replicated, split, split), out_shardings=split)
        self.segments_decoded = 0
        self.decode_seconds = 0.0

    def decode_segments(self, frames: np.ndarray, lengths: np.ndarray | None = None
                        ) -> np.ndarray:
        """float32[n, frames_per_segment, 128] sample frames (+ int32[n] valid frames per
        segment; default all) -> int32[n, max_decode_length] model ids."""
        start_time = time.perf_counter()
        tokens = decode_in_batches(lambda chunk, n: self._run(self.params, chunk, n), frames,
                                   lengths, self.batch_size, self.max_decode_length)
        self.decode_seconds += time.perf_counter() - start_time
        self.segments_decoded += len(tokens)
        return tokens

    def transcribe_many(self, audios: Sequence[np.ndarray],
                        names: Sequence[str] | None = None) -> list[Transcription]:
        """Transcribes several 16 kHz waveforms, batching their segments together."""
        return transcribe_waveforms(self.decode_segments, audios, names,
                                    frames_per_segment=self.frames_per_segment, vocab=self.vocab)

    def transcribe(self, audio: np.ndarray) -> Transcription:
        """Transcribes one float32[samples] waveform at 16 kHz."""
        return self.transcribe_many([audio])[0]

    def describe(self) -> str:
        """One line: path, source step, stored dtype, vocabulary."""
        return (f"bundle {self.path} (step {self.step}, {self.stored_dtype} params, vocab "
                f"{self.vocab}, {self.max_decode_length} tokens/segment)")

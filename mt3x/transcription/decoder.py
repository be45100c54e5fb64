"""A checkpoint's decoder: segments greedy-decoded by one jitted `Mt3Model.predict` on a
`Partitioner`'s mesh, and the `Transcriber` built on it.

    >>> transcriber = load_transcriber('runs/demo')            # a train_mt3 workdir
    >>> result = transcriber.transcribe(audio)                 # f32[samples] @ 16 kHz
    >>> write_midi(result.note_sequence, 'song.mid')          # mt3x.transcription.midi_output
    >>> transcribe_files(['a.flac'], transcriber=transcriber, out_dir='out')  # .files

Pipeline: the waveform is cut into segments (`mt3x.transcription.segments`), segments of every
file are decoded together in fixed-size batches (`mt3x.transcription.batching`; the last batch
is padded, so the step compiles once) by the model's encoder + cached greedy decoding, and the
tokens of each file are stitched into one NoteSequence (`mt3x.transcription.notes`). The
model-free pieces are shared with the bundle runtime; this module adds the model and the mesh.
"""

from __future__ import annotations

import functools
import math
import os
import time
from typing import Any, Sequence

import jax
import numpy as np

from mt3x.trainer import Partitioner
from mt3x.transcription.batching import decode_in_batches
from mt3x.transcription.checkpoint import check_vocab, load_model_and_params
from mt3x.transcription.errors import TranscriptionError
from mt3x.transcription.notes import Transcription, transcribe_waveforms
from mt3x.transcription.segments import segment_frames


class SegmentDecoder:
    """Greedy-decodes segments in fixed-size batches with one jitted `model.predict`.

    Args:
      model: an `Mt3Model` (raw-audio inputs).
      batch_size: segments per call; rounded up to a multiple of the data-parallel shards. Every
        call has this shape (the last batch is zero-padded), so the step compiles once.
      partitioner: the mesh the params live on (default: all devices).
      max_decode_length: tokens per segment (default: the model's).
    """

    def __init__(self, model: Any, *, batch_size: int = 8,
                 partitioner: Partitioner | None = None,
                 max_decode_length: int | None = None) -> None:
        if batch_size < 1:
            raise TranscriptionError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.partitioner = partitioner or Partitioner()
        shards = self.partitioner.data_size
        self.batch_size = shards * math.ceil(batch_size / shards)
        self.max_decode_length = int(max_decode_length or model.max_decode_length)
        self._predict = jax.jit(
            functools.partial(model.predict, max_decode_length=self.max_decode_length),
            out_shardings=self.partitioner.replicated)
        self.segments_decoded = 0
        self.decode_seconds = 0.0

    def decode(self, params: Any, frames: np.ndarray, lengths: np.ndarray | None = None
               ) -> np.ndarray:
        """float32[n, frames, 128] sample frames (+ int32[n] valid frames per segment; default
        all) -> int32[n, max_decode_length] model ids.

        `params` are the model's unboxed params, placed on this decoder's partitioner's mesh.
        """
        batch = self.batch_size
        processes, me = jax.process_count(), jax.process_index()
        if batch % processes:
            raise TranscriptionError(f"batch_size {batch} does not divide over "
                                     f"{processes} processes")
        mine = slice(me * batch // processes, (me + 1) * batch // processes)

        def run_batch(chunk: np.ndarray, chunk_lengths: np.ndarray) -> jax.Array:
            global_batch = self.partitioner.make_global_batch(
                {"encoder_input_tokens": chunk[mine], "encoder_input_lengths": chunk_lengths[mine]})
            return self._predict(params, global_batch)

        start_time = time.perf_counter()
        with self.partitioner.activate():
            tokens = decode_in_batches(run_batch, frames, lengths, batch, self.max_decode_length)
        self.decode_seconds += time.perf_counter() - start_time
        self.segments_decoded += len(tokens)
        return tokens


class Transcriber:
    """A model with restored params, ready to transcribe waveforms (see `load_transcriber`)."""

    def __init__(self, model: Any, params: Any, *, vocab: str = "mt3", batch_size: int = 8,
                 partitioner: Partitioner | None = None, step: int | None = None
                 ) -> None:
        check_vocab(model, vocab)
        self.model = model
        self.vocab = vocab
        self.params = params
        self.step = step
        self.frames_per_segment = segment_frames(vocab)
        self.decoder = SegmentDecoder(model, batch_size=batch_size, partitioner=partitioner)

    def transcribe_many(self, audios: Sequence[np.ndarray],
                        names: Sequence[str] | None = None) -> list[Transcription]:
        """Transcribes several 16 kHz waveforms, batching their segments together.

        Raises:
          TranscriptionError: a waveform is too short, silent or not finite (named by `names`).
        """
        return transcribe_waveforms(
            lambda frames, lengths: self.decoder.decode(self.params, frames, lengths),
            audios, names, frames_per_segment=self.frames_per_segment, vocab=self.vocab)

    def transcribe(self, audio: np.ndarray) -> Transcription:
        """Transcribes one float32[samples] waveform at 16 kHz."""
        return self.transcribe_many([audio])[0]


def load_transcriber(checkpoint: str | os.PathLike, *, model: Any = None,
                     vocab: str | None = None, step: int | None = None, batch_size: int = 8,
                     max_decode_length: int | None = None,
                     partitioner: Partitioner | None = None
                     ) -> Transcriber:
    """A Transcriber from a checkpoint (see `load_model_and_params` for the arguments)."""
    partitioner = partitioner or Partitioner()
    model, params, vocab, step = load_model_and_params(
        checkpoint, model=model, vocab=vocab, step=step, partitioner=partitioner,
        max_decode_length=max_decode_length)
    return Transcriber(model, params, vocab=vocab, batch_size=batch_size,
                       partitioner=partitioner, step=step)

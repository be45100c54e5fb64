"""Audio -> notes -> multi-track MIDI with a trained MT3 model.

    >>> transcriber = load_transcriber('runs/demo')            # a train_mt3 workdir
    >>> result = transcriber.transcribe(audio)                 # f32[samples] @ 16 kHz
    >>> write_midi(result.note_sequence, 'song.mid')          # mt3x.transcription.midi_output
    >>> transcribe_files(['a.flac', 'b.wav'], checkpoint='runs/demo', out_dir='out')

Pipeline: the waveform is cut into MT3's 128-sample frames and non-overlapping 256-frame
segments (2.048 s; the last one zero-padded), segments of every file are decoded together in
fixed-size batches by one jitted `Mt3Model.predict` (encoder + cached greedy decoding; the last
batch is padded, so the step compiles once), the tokens of each file are stitched into one
NoteSequence by MT3's decoding state machine (`mt3x.codec.tokens_to_note_sequence`), and the
notes are written as a MIDI file with one named General MIDI instrument per program (drums on
channel 10).

A checkpoint is a `train_mt3` work directory (or its `checkpoints/` folder, or one
`checkpoints/<step>` folder): the model's configuration is read from `mt3x_model.json` beside
the checkpoints (see `save_model_spec`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple, Sequence

import jax
import note_seq
import numpy as np

from mt3x.errors import Mt3xError
from mt3x.util.files import atomic_path
from mt3x.transcription.midi_output import plot_notes, write_midi

SAMPLE_RATE = 16000
HOP_WIDTH = 128
FRAMES_PER_SEGMENT = 256
SEGMENT_SECONDS = FRAMES_PER_SEGMENT * HOP_WIDTH / SAMPLE_RATE  # 2.048 s
MIN_AUDIO_SECONDS = 0.1
SILENCE_PEAK = 1e-4  # -80 dBFS
MODEL_SPEC_FILE = "mt3x_model.json"
MODEL_SPEC_FORMAT = "mt3x-model/1"


class TranscriptionError(Mt3xError):
    """Audio that cannot be transcribed (too short, silent) or an unusable checkpoint/model."""


# ---- model spec (which network a checkpoint holds) --------------------------------------------
def model_spec(model: Any, vocab: str) -> dict[str, Any]:
    """The JSON-able description of an `Mt3Model` that `model_from_spec` rebuilds."""
    return {"format": MODEL_SPEC_FORMAT, "vocab": vocab,
            "config": dataclasses.asdict(model.config), "inputs": model.inputs,
            "z_loss": model.z_loss, "label_smoothing": model.label_smoothing,
            "loss_normalization": model.loss_normalization,
            "max_decode_length": model.max_decode_length}


def save_model_spec(workdir: str | os.PathLike, model: Any, vocab: str) -> Path:
    """Writes `<workdir>/mt3x_model.json` (atomically); returns its path."""
    path = Path(workdir) / MODEL_SPEC_FILE
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(model_spec(model, vocab), indent=1) + "\n")
    return path


def model_from_spec(spec: dict[str, Any], *, max_decode_length: int | None = None,
                    source: str = "model spec") -> tuple[Any, str]:
    """(Mt3Model, vocab name) from a `model_spec` dict; `source` names the file in errors."""
    from mt3x.models import Mt3Model, T5Config

    if not isinstance(spec, dict) or spec.get("format") != MODEL_SPEC_FORMAT:
        raise TranscriptionError(f"{source}: not an mt3x model spec (expected 'format': "
                                 f"{MODEL_SPEC_FORMAT!r})")
    try:
        config = T5Config(**spec["config"])
        model = Mt3Model(config, inputs=spec["inputs"], z_loss=spec["z_loss"],
                         label_smoothing=spec["label_smoothing"],
                         loss_normalization=spec["loss_normalization"],
                         max_decode_length=max_decode_length or spec["max_decode_length"])
    except (KeyError, TypeError) as err:
        raise TranscriptionError(f"{source}: malformed model spec ({err!r})") from err
    return model, str(spec["vocab"])


def check_vocab(model: Any, vocab: str) -> None:
    """Raises TranscriptionError unless the model's logit width fits the codec vocabulary."""
    from mt3x import codec

    try:
        width = codec.get_config(vocab).vocabulary.num_embeddings
    except (KeyError, ValueError) as err:
        raise TranscriptionError(f"vocab {vocab!r} is unknown: {err}") from err
    if model.config.vocab_size != width:
        raise TranscriptionError(
            f"model vocab_size {model.config.vocab_size} does not match the {vocab!r} "
            f"vocabulary ({width} ids); use vocab='ismir2021' with 1664 or 'mt3' with 1536")


def resolve_checkpoint(checkpoint: str | os.PathLike) -> tuple[Path, Path, int | None]:
    """(run workdir, checkpoints dir, step or None for the latest) of a checkpoint path.

    Accepts a `train_mt3` workdir, its `checkpoints/` folder or one `checkpoints/<step>` folder.
    """
    path = Path(checkpoint).absolute()
    if not path.exists():
        raise TranscriptionError(f"checkpoint {path} does not exist")
    if not path.is_dir():
        raise TranscriptionError(f"checkpoint {path} is a file; expected a train_mt3 work "
                                 "directory (holding checkpoints/ and mt3x_model.json)")
    if (path / "checkpoints").is_dir():
        return path, path / "checkpoints", None
    if path.name.isdigit() and (path / "state").exists():
        return path.parent.parent, path.parent, int(path.name)
    if any(child.name.isdigit() for child in path.iterdir()):
        return path.parent, path, None
    raise TranscriptionError(
        f"checkpoint {path} holds no checkpoints (expected checkpoints/<step>/ as written by "
        "train_mt3 / launch/train.py)")


def load_model_and_params(checkpoint: str | os.PathLike, *, model: Any = None,
                          vocab: str | None = None, step: int | None = None,
                          partitioner: Any = None, max_decode_length: int | None = None
                          ) -> tuple[Any, Any, str, int]:
    """Restores a checkpoint's params for inference.

    Args:
      checkpoint: a train_mt3 workdir, its checkpoints/ folder, or one checkpoints/<step>.
      model: an `Mt3Model` (default: rebuilt from `mt3x_model.json` in the workdir).
      vocab: 'mt3' or 'ismir2021' (default: from the spec, else 'mt3').
      step: a committed step (default: the latest, or the step of a step folder).
      partitioner: mesh for the params (default: all devices, data parallel).
      max_decode_length: overrides the model's decode length.

    Returns:
      (model, params (sharded, unboxed), vocab, step).

    Raises:
      TranscriptionError / CheckpointError: missing, partial or mismatching checkpoint.
    """
    from mt3x.trainer import Partitioner
    from mt3x.trainer.checkpoints import Checkpointer

    workdir, ckpt_dir, step_in_path = resolve_checkpoint(checkpoint)
    step = step if step is not None else step_in_path
    spec_path = workdir / MODEL_SPEC_FILE
    if model is None:
        if not spec_path.is_file():
            raise TranscriptionError(
                f"checkpoint {workdir} has no {MODEL_SPEC_FILE}, so its model configuration is "
                "unknown; pass the model explicitly (e.g. --model_config small_cpu)")
        try:
            spec = json.loads(spec_path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise TranscriptionError(f"{spec_path}: unreadable model spec ({err})") from err
        model, spec_vocab = model_from_spec(spec, max_decode_length=max_decode_length,
                                            source=str(spec_path))
        vocab = vocab or spec_vocab
    elif max_decode_length:
        model = replace_model(model, max_decode_length=max_decode_length)
    vocab = vocab or "mt3"
    check_vocab(model, vocab)
    partitioner = partitioner or Partitioner()
    shapes = {"encoder_input_tokens": jax.ShapeDtypeStruct(
        (partitioner.data_size, segment_frames(vocab), HOP_WIDTH), np.float32)}
    abstract = partitioner.abstract_params(model.init, shapes)
    checkpointer = Checkpointer(ckpt_dir, read_only=True)
    try:
        params = checkpointer.restore_params(abstract, step)  # clear errors: empty, partial, shape
        step = step if step is not None else checkpointer.latest_step()
    finally:
        checkpointer.close()
    return model, params, vocab, step


def replace_model(model: Any, **changes: Any) -> Any:
    """A copy of an `Mt3Model` with constructor arguments replaced (e.g. max_decode_length)."""
    from mt3x.models import Mt3Model

    kwargs = dict(inputs=model.inputs, z_loss=model.z_loss,
                  label_smoothing=model.label_smoothing,
                  loss_normalization=model.loss_normalization,
                  max_decode_length=model.max_decode_length, decoder=model.decoder,
                  logical_axis_rules=model.logical_axis_rules)
    kwargs.update(changes)
    return Mt3Model(model.config, **kwargs)


# ---- audio -> segments -------------------------------------------------------------------------
def check_audio(audio: np.ndarray, *, source: str = "audio") -> np.ndarray:
    """Returns `audio` as float32[samples]; raises TranscriptionError when it is too short,
    silent or not finite. `source` names the file in the message."""
    audio = np.asarray(audio, np.float32)
    if audio.ndim != 1:
        raise TranscriptionError(f"{source}: expected mono audio f32[samples], got shape "
                                 f"{audio.shape}")
    if audio.size < MIN_AUDIO_SECONDS * SAMPLE_RATE:
        raise TranscriptionError(
            f"{source}: audio is too short ({audio.size / SAMPLE_RATE:.3f} s); need at least "
            f"{MIN_AUDIO_SECONDS} s")
    if not np.all(np.isfinite(audio)):
        raise TranscriptionError(f"{source}: audio holds NaN or Inf samples")
    peak = float(np.max(np.abs(audio)))
    if peak < SILENCE_PEAK:
        raise TranscriptionError(
            f"{source}: audio is silent (peak {peak:.2e} < {SILENCE_PEAK:g}, i.e. below -80 "
            "dBFS); nothing to transcribe")
    return audio


def segment_frames(vocab: str) -> int:
    """Frames per segment of a vocabulary preset (256 for 'mt3', 512 for 'ismir2021')."""
    from mt3x import codec

    return int(codec.get_config(vocab).inputs_length)


class Segments(NamedTuple):
    """One waveform cut into MT3's inference segments.

    frames: float32[num_segments, frames_per_segment, 128] raw sample frames, the last segment
      zero-padded. start_times: float64[num_segments] seconds. lengths: int32[num_segments]
      valid frames per segment (frames_per_segment except for the last one); the model zeroes
      the log-mel rows past them, as MT3 does.
    """

    frames: np.ndarray
    start_times: np.ndarray
    lengths: np.ndarray


def audio_to_segments(audio: np.ndarray, frames_per_segment: int = FRAMES_PER_SEGMENT
                      ) -> Segments:
    """Cuts 16 kHz audio (float32[samples]) into MT3's inference segments of 256 (mt3) or 512
    (ismir2021) frames: MT3's frames (one zero frame appended), split without overlap."""
    from mt3x.audio import mt3_sample_frames

    frames = mt3_sample_frames(audio)  # [n, 128], one zero frame appended as in MT3
    total = frames.shape[0]
    count = math.ceil(total / frames_per_segment)
    padded = np.zeros((count * frames_per_segment, HOP_WIDTH), np.float32)
    padded[:total] = frames
    starts = np.arange(count) * frames_per_segment * HOP_WIDTH / SAMPLE_RATE
    lengths = np.minimum(total - np.arange(count) * frames_per_segment,
                         frames_per_segment).astype(np.int32)
    return Segments(padded.reshape(count, frames_per_segment, HOP_WIDTH), starts, lengths)


# ---- batched decoding --------------------------------------------------------------------------
class SegmentDecoder:
    """Greedy-decodes segments in fixed-size batches with one jitted `model.predict`.

    Args:
      model: an `Mt3Model` (raw-audio inputs).
      batch_size: segments per call; rounded up to a multiple of the data-parallel shards. Every
        call has this shape (the last batch is zero-padded), so the step compiles once.
      partitioner: the mesh the params live on (default: all devices).
      max_decode_length: tokens per segment (default: the model's).
    """

    def __init__(self, model: Any, *, batch_size: int = 8, partitioner: Any = None,
                 max_decode_length: int | None = None) -> None:
        from mt3x.trainer import Partitioner

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


def decode_in_batches(run_batch: Callable[[np.ndarray, np.ndarray], Any], frames: np.ndarray,
                      lengths: np.ndarray | None, batch_size: int, decode_length: int
                      ) -> np.ndarray:
    """Decodes segments in fixed-size batches (a checkpoint's `SegmentDecoder` and a bundle's
    `BundleTranscriber` share this loop).

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


def tokens_to_notes(tokens: np.ndarray, start_times: Sequence[float], vocab: str) -> Any:
    """Stitches one file's segments: int32[segments, length] model ids + start times (s) ->
    `mt3x.codec.DecodeResult` (note_sequence, invalid_events, dropped_events)."""
    from mt3x.codec import tokens_to_note_sequence

    return tokens_to_note_sequence(list(zip(start_times, tokens)), vocab, from_model_ids=True)


@dataclasses.dataclass
class Transcription:
    """One transcribed file or waveform.

    note_sequence: the notes (seconds; program / is_drum per note).
    invalid_events, dropped_events: MT3's decoding counters.
    num_segments: 2.048 s segments decoded.
    audio_seconds: length of the audio.
    """

    note_sequence: note_seq.NoteSequence
    invalid_events: int
    dropped_events: int
    num_segments: int
    audio_seconds: float


def transcribe_waveforms(decode_segments: Callable[[np.ndarray, np.ndarray], np.ndarray],
                         audios: Sequence[np.ndarray], names: Sequence[str] | None = None, *,
                         frames_per_segment: int, vocab: str) -> list[Transcription]:
    """Waveforms -> segments -> `decode_segments` (all files' segments at once) -> stitched notes.

    Args:
      decode_segments: (float32[n, frames_per_segment, 128] sample frames, int32[n] valid
        frames) -> int32[n, length] model ids (a checkpoint's `SegmentDecoder` or a bundle's
        exported functions).
      audios: float32[samples] waveforms at 16 kHz.
      names: one per waveform, for error messages.
      frames_per_segment, vocab: of the model.

    Raises:
      TranscriptionError: a waveform is too short, silent or not finite (named by `names`).
    """
    names = list(names) if names is not None else [f"audio[{i}]" for i in range(len(audios))]
    checked = [check_audio(a, source=n) for a, n in zip(audios, names)]
    cut = [audio_to_segments(a, frames_per_segment) for a in checked]
    if not cut:
        return []
    tokens = decode_segments(np.concatenate([c.frames for c in cut]),
                             np.concatenate([c.lengths for c in cut]))
    results, offset = [], 0
    for audio, segments in zip(checked, cut):
        count = len(segments.frames)
        decoded = tokens_to_notes(tokens[offset:offset + count], segments.start_times, vocab)
        offset += count
        results.append(Transcription(decoded.note_sequence, decoded.invalid_events,
                                     decoded.dropped_events, count, audio.size / SAMPLE_RATE))
    return results


class Transcriber:
    """A model with restored params, ready to transcribe waveforms (see `load_transcriber`)."""

    def __init__(self, model: Any, params: Any, *, vocab: str = "mt3", batch_size: int = 8,
                 partitioner: Any = None, step: int | None = None) -> None:
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
                     max_decode_length: int | None = None, partitioner: Any = None
                     ) -> Transcriber:
    """A Transcriber from a checkpoint (see `load_model_and_params` for the arguments)."""
    from mt3x.trainer import Partitioner

    partitioner = partitioner or Partitioner()
    model, params, vocab, step = load_model_and_params(
        checkpoint, model=model, vocab=vocab, step=step, partitioner=partitioner,
        max_decode_length=max_decode_length)
    return Transcriber(model, params, vocab=vocab, batch_size=batch_size,
                       partitioner=partitioner, step=step)


@dataclasses.dataclass
class FileTranscription:
    """What `transcribe_files` wrote for one audio file (`stems`: `RenderedStem`s, with
    `stems=True`)."""

    audio_path: Path
    midi_path: Path
    pianoroll_path: Path | None
    num_notes: int
    num_instruments: int
    invalid_events: int
    dropped_events: int
    audio_seconds: float
    stems: list[Any] = dataclasses.field(default_factory=list)


def transcribe_files(audio_paths: Iterable[str | os.PathLike], *,
                     checkpoint: str | os.PathLike | None = None,
                     out_dir: str | os.PathLike, transcriber: Any = None,
                     model: Any = None, vocab: str | None = None, step: int | None = None,
                     batch_size: int = 8, max_decode_length: int | None = None,
                     references: Sequence[note_seq.NoteSequence | None] | None = None,
                     pianoroll: bool = True, files_per_group: int = 16,
                     on_error: Callable[[Path, Mt3xError], None] | None = None,
                     stems: bool = False, soundfont: str | os.PathLike | None = None,
                     stems_sample_rate: int = 44100) -> list[FileTranscription]:
    """Transcribes audio files to `<out_dir>/<stem>.mid` (+ `<stem>.png` piano roll).

    Args:
      audio_paths: audio files (any rate; resampled to 16 kHz, mixed to mono).
      checkpoint: a train_mt3 workdir (or checkpoints dir); ignored when `transcriber` given.
      out_dir: output folder (created).
      transcriber: a loaded `Transcriber` or `mt3x.bundles.mt3_runtime.BundleTranscriber`
        (anything with `transcribe_many`); the checkpoint is then not read.
      model, vocab, step, batch_size, max_decode_length: see `load_transcriber`.
      references: optional reference NoteSequence per file; the piano roll then marks true
        positives, false positives and false negatives per instrument.
      pianoroll: write the PNGs.
      files_per_group: files whose segments are batched together (bounds memory).
      on_error: called with (path, error) for a file that cannot be read or transcribed (too
        short, silent, unreadable; it is then skipped) or whose stems cannot be rendered (its
        MIDI is kept); None: such a file raises.
      stems: also render each transcribed instrument through `soundfont` to
        `<out_dir>/<stem>/<instrument>.wav` (+ mix.wav) at `stems_sample_rate`, as long as the
        input (see `mt3x.transcription.resynthesis.render_stems`).

    Returns:
      one FileTranscription per transcribed file, in input order. Output names are the file
      stems, made unique over all inputs (e.g. Track00001_mix, Track00002_mix).

    Raises:
      AudioError / TranscriptionError / CheckpointError naming the file or checkpoint.
    """
    from mt3x.audio.io import read_audio

    paths = [Path(p) for p in audio_paths]
    if references is not None and len(references) != len(paths):
        raise TranscriptionError(f"got {len(references)} references for {len(paths)} files")
    if transcriber is None:
        if checkpoint is None:
            raise TranscriptionError("transcribe_files needs a checkpoint or a transcriber")
        transcriber = load_transcriber(checkpoint, model=model, vocab=vocab, step=step,
                                       batch_size=batch_size,
                                       max_decode_length=max_decode_length)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    output_names = _unique_stems(paths)
    written: list[FileTranscription] = []
    for group_start in range(0, len(paths), max(files_per_group, 1)):
        group = list(range(group_start, min(group_start + files_per_group, len(paths))))
        audios, kept = [], []
        for i in group:
            try:
                audio = read_audio(paths[i], sample_rate=SAMPLE_RATE)[0]
                audios.append(check_audio(audio, source=str(paths[i])))
                kept.append(i)
            except Mt3xError as err:
                if on_error is None:
                    raise
                on_error(paths[i], err)
        results = transcriber.transcribe_many(audios, [str(paths[i]) for i in kept])
        for i, result in zip(kept, results):
            ns = result.note_sequence
            midi_path = write_midi(ns, out_dir / f"{output_names[i]}.mid")
            png = None
            if pianoroll:
                png = out_dir / f"{output_names[i]}.png"
                reference = references[i] if references is not None else None
                if reference is not None:
                    from mt3x.transcription.pianoroll import plot_transcription

                    plot_transcription(reference, ns, png, title=paths[i].name)
                else:
                    plot_notes(ns, png, title=f"{paths[i].name}: {len(ns.notes)} notes")
            rendered = []
            if stems:
                from mt3x.transcription.resynthesis import render_stems

                try:
                    rendered = render_stems(
                        ns, out_dir / output_names[i],
                        num_samples=round(result.audio_seconds * stems_sample_rate),
                        sample_rate=stems_sample_rate, soundfont=soundfont)
                except Mt3xError as err:  # e.g. the soundfont lacks a transcribed program
                    if on_error is None:
                        raise
                    on_error(paths[i], err)
            instruments = {(n.is_drum, 0 if n.is_drum else n.program) for n in ns.notes}
            written.append(FileTranscription(
                audio_path=paths[i], midi_path=midi_path, pianoroll_path=png,
                num_notes=len(ns.notes), num_instruments=len(instruments),
                invalid_events=result.invalid_events, dropped_events=result.dropped_events,
                audio_seconds=result.audio_seconds, stems=rendered))
    return written


def _unique_stems(paths: Sequence[Path]) -> list[str]:
    """Output names: the file stem; stems shared by several inputs get their folder's name in
    front (mix.flac of several Slakh tracks -> Track00001_mix), then a counter if still equal."""
    counts: dict[str, int] = {}
    for p in paths:
        counts[p.stem] = counts.get(p.stem, 0) + 1
    stems = [f"{p.parent.name}_{p.stem}" if counts[p.stem] > 1 and p.parent.name else p.stem
             for p in paths]
    seen: dict[str, int] = {}
    unique = []
    for stem in stems:
        count = seen.get(stem, 0)
        seen[stem] = count + 1
        unique.append(stem if count == 0 else f"{stem}_{count}")
    return unique

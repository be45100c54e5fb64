"""Transcription metrics of a model on whole files: the evaluator used for best-k checkpoints.

The tracks of a dataset split (`dataset_eval_files`, numpy only; or a seqio inference-evaluation
task, `mt3x.runs.seqio_input.load_eval_files`) are cut into consecutive 256-frame segments, decoded in
fixed-size batches (one jitted predict, see `mt3x.transcription.decoder.SegmentDecoder`), stitched
per file into one NoteSequence and scored against the file's reference notes with MT3's metrics
(`mt3x.transcription.metrics.transcription_metrics`), averaged over files as MT3 does.

`TranscriptionEvaluator` is an `(params, step) -> {name: value}` callable for `mt3x.trainer.train`
(`evaluators=[...]`); its short metric names (`SHORT_METRIC_NAMES`) become 'eval/<name>', e.g.
'eval/multi_instrument_f1' for best-k selection.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import note_seq
import numpy as np

from mt3x.errors import Mt3xError
from mt3x.audio.mt3_config import MT3_SPECTROGRAM_CONFIG
from mt3x.codec import vocabulary as codec_vocabulary
from mt3x.data.slakh import list_track_dirs, read_track, track_note_sequence
from mt3x.tasks import examples
from mt3x.transcription.decoder import SegmentDecoder
from mt3x.transcription.metrics import SUMMARY_ROWS, average_metrics, transcription_metrics
from mt3x.transcription.notes import tokens_to_notes
from mt3x.transcription.segments import segment_frames

log = logging.getLogger(__name__)

#: Short names reported to the trainer -> MT3's metric names (`mt3x.transcription.metrics`).
SHORT_METRIC_NAMES: dict[str, str] = {
    "onset_f1": "Onset F1",
    "onset_offset_f1": "Onset + offset F1",
    "frame_f1": "Frame F1",
    "multi_instrument_f1": "Onset + offset + program F1 (full)",
    "multi_instrument_f1_midi_class": "Onset + offset + program F1 (midi_class)",
    "multi_instrument_f1_flat": "Onset + offset + program F1 (flat)",
    "drum_onset_f1": "Drum onset F1 (full)",
    "nondrum_multi_instrument_f1": "Nondrum onset + offset + program F1 (full)",
    "agnostic_onset_f1": "Agnostic onset F1",
}


class EvaluationError(Mt3xError):
    """Evaluation data that cannot be used (no files, a file without segment 0)."""


@dataclasses.dataclass
class EvalFile:
    """One file of an evaluation split.

    file_id: the task's sequence id ('validation/Track00007').
    frames: float32[segments, 256, 128] raw 16 kHz sample frames (last segment zero-padded).
    start_times: float64[segments] segment start times (s).
    reference: the reference NoteSequence.
    lengths: int32[segments] valid frames per segment (None: all full).
    """

    file_id: str
    frames: np.ndarray
    start_times: np.ndarray
    reference: note_seq.NoteSequence
    lengths: np.ndarray | None = None

    @property
    def valid_frames(self) -> np.ndarray:
        """int32[segments] valid frames per segment."""
        if self.lengths is not None:
            return np.asarray(self.lengths, np.int32)
        return np.full(len(self.frames), self.frames.shape[1], np.int32)


@dataclasses.dataclass
class FileResult:
    """A decoded evaluation file and its metrics (MT3 names)."""

    file: EvalFile
    estimate: note_seq.NoteSequence
    metrics: dict[str, float]
    invalid_events: int
    dropped_events: int
    truncated_segments: int = 0
    duplicate_notes: int = 0

    def health(self) -> dict[str, int]:
        """Decoding-health counters of this file (see `HEALTH_NAMES`)."""
        return {"invalid_events": self.invalid_events, "dropped_events": self.dropped_events,
                "duplicate_notes": self.duplicate_notes,
                "truncated_segments": self.truncated_segments,
                "segments": len(self.file.frames), "estimated_notes": len(self.estimate.notes)}


#: Per-file decoding-health counters (`FileResult.health`) -> their averaged score names.
HEALTH_NAMES: dict[str, str] = {
    "invalid_events": "Invalid events",
    "dropped_events": "Dropped events",
    "duplicate_notes": "Duplicate notes",
    "truncated_segments": "Truncated segments",
    "estimated_notes": "Estimated notes",
}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def group_segments(segments: Sequence[Mapping[str, Any]], *, max_files: int | None = None,
                   frames_per_segment: int = MT3_SPECTROGRAM_CONFIG.frames_per_segment
                   ) -> list[EvalFile]:
    """Groups eval-task segments (`mt3x.tasks.registry.eval_segments` dicts) into files, in
    file order.

    Args:
      segments: dicts with inputs f32[<=256, 128], start_time, segment_index, id or track_id,
        sequence (serialized reference on segment 0).
      max_files: keep at most this many files (the first ones).
      frames_per_segment: the task's input length (256 for 'mt3', 512 for 'ismir2021').
    """
    by_file: dict[str, list[Mapping[str, Any]]] = {}
    for seg in segments:
        key = _text(seg.get("id", seg.get("track_id", seg.get("unique_id"))))
        if key not in by_file:
            if max_files is not None and len(by_file) >= max_files:
                continue
            by_file[key] = []
        by_file[key].append(seg)
    files = []
    for key, segs in by_file.items():
        segs = sorted(segs, key=lambda s: int(s["segment_index"]))
        first = segs[0]
        if int(first["segment_index"]) != 0 or not first["sequence"]:
            raise EvaluationError(f"eval file {key}: segment 0 with the reference is missing")
        depth = np.asarray(first["inputs"]).shape[-1]
        hop = MT3_SPECTROGRAM_CONFIG.hop_width
        if depth != hop:
            raise EvaluationError(
                f"eval file {key}: inputs have depth {depth}; the transcription evaluator needs "
                f"raw sample frames ({hop}), i.e. tasks registered with inputs='frames'")
        frames = np.zeros((len(segs), frames_per_segment, hop), np.float32)
        lengths = np.zeros(len(segs), np.int32)
        for i, seg in enumerate(segs):
            x = np.asarray(seg["inputs"], np.float32)
            frames[i, :x.shape[0]] = x
            lengths[i] = x.shape[0]
        files.append(EvalFile(
            file_id=key, frames=frames,
            start_times=np.asarray([float(s["start_time"]) for s in segs]),
            reference=note_seq.NoteSequence.FromString(first["sequence"]), lengths=lengths))
    return files


def dataset_eval_files(root: str | os.PathLike, split: str, *, vocab: str = "mt3",
                       program_source: str = "slakh_class", max_files: int | None = None
                       ) -> list[EvalFile]:
    """The tracks of `root/split` (Slakh layout) as MT3's inference-evaluation files, first
    `max_files` in id order, read with the numpy chain (no TensorFlow): the mix at 16 kHz ->
    `tokenize_track(is_training=False)` -> `split_into_segments` -> `group_segments`, as seqio's
    eval task `{name}_{split}` cuts them (tests/transcription/test_eval_files.py compares both).

    Returns: EvalFile per track: frames f32[segments, L, 128] (L = `segment_frames(vocab)`),
      start times in seconds, the reference `track_note_sequence(track, program_source)`.
    Raises:
      EvaluationError: the split has no Track* folders.
    """
    dirs = list_track_dirs(root, split)[:max_files]
    if not dirs:
        raise EvaluationError(f"{Path(root) / split}: no Track* folders to evaluate on")
    config = codec_vocabulary.get_config(vocab)
    length = segment_frames(vocab)
    segments = []
    for track_dir in dirs:
        track = read_track(track_dir)
        audio = track.load_mix(sample_rate=MT3_SPECTROGRAM_CONFIG.sample_rate)
        sequence = track_note_sequence(track, program_source=program_source)
        tokenized = examples.tokenize_track(audio, sequence, config, is_training=False)
        tokenized.update(track_id=track.track_id, id=f"{split}/{track.track_id}")
        segments.extend(examples.split_into_segments(tokenized, length))
    return group_segments(segments, max_files=max_files, frames_per_segment=length)


def format_domains_table(by_domain: Mapping[str, Mapping[str, float]]) -> str:
    """F1 of MT3's main metrics (and the instrument-agnostic onset F1), then the decoding-health
    counters per file, one column per domain ('in-domain', 'out-of-domain', ...).

    `by_domain`: {domain: `TranscriptionEvaluator.scores`-style dict (MT3 names)}; a metric
    missing from a domain prints '-'.
    """
    domains = list(by_domain)
    width = max([14] + [len(d) + 2 for d in domains])
    rows: list[tuple[str, str, str]] = []
    for label, prefix, suffix in SUMMARY_ROWS:
        key = "Frame F1" if prefix == "Frame" else f"{prefix} F1{suffix}"
        rows.append((f"{label} F1", key, ".4f"))
    rows.append(("files", "Files", ".0f"))
    rows.extend((f"{name.lower()} / file", name, ".1f") for name in HEALTH_NAMES.values())
    lines = [f"{'metric':<40}" + "".join(f"{d:>{width}}" for d in domains)]
    for label, key, fmt in rows:
        if not any(key in scores for scores in by_domain.values()):
            continue
        cells = [format(float(by_domain[d][key]), fmt) if key in by_domain[d] else "-"
                 for d in domains]
        lines.append(f"{label:<40}" + "".join(f"{c:>{width}}" for c in cells))
    return "\n".join(lines)


def short_metrics(scores: Mapping[str, float]) -> dict[str, float]:
    """The MT3-named average scores renamed to `SHORT_METRIC_NAMES` (those present)."""
    return {short: float(scores[long]) for short, long in SHORT_METRIC_NAMES.items()
            if long in scores}


class TranscriptionEvaluator:
    """Decodes evaluation files and scores them; an evaluator callback for the trainer.

    Args:
      model: the `Mt3Model` being trained.
      files: the evaluation files, or a zero-argument callable returning them (loaded on the
        first call, then kept).
      vocab: codec vocabulary of the model's outputs ('mt3' or 'ismir2021').
      batch_size: segments per decoding batch.
      partitioner: the trainer's partitioner (the params' mesh).
      max_decode_length: tokens per segment (default: the model's).
      granularities: program granularities of the multi-instrument F1.
    """

    def __init__(self, *, model: Any, files: Sequence[EvalFile] | Callable[[], Sequence[EvalFile]],
                 vocab: str = "mt3", batch_size: int = 8, partitioner: Any = None,
                 max_decode_length: int | None = None,
                 granularities: Sequence[str] = ("flat", "midi_class", "full")) -> None:
        self.vocab = vocab
        self.granularities = tuple(granularities)
        self.decoder = SegmentDecoder(model, batch_size=batch_size, partitioner=partitioner,
                                      max_decode_length=max_decode_length)
        self._files = files if not callable(files) else None
        self._load_files = files if callable(files) else None
        self.last_results: list[FileResult] = []

    @property
    def files(self) -> list[EvalFile]:
        if self._files is None:
            self._files = list(self._load_files())
        if not self._files:
            raise EvaluationError("the transcription evaluator has no files")
        return list(self._files)

    def evaluate_files(self, params: Any) -> list[FileResult]:
        """Decodes every file and scores it; returns per-file results."""
        files = self.files
        tokens = self.decoder.decode(params, np.concatenate([f.frames for f in files]),
                                     np.concatenate([f.valid_frames for f in files]))
        results, offset = [], 0
        for f in files:
            decoded = tokens_to_notes(tokens[offset:offset + len(f.frames)], f.start_times,
                                      self.vocab)
            offset += len(f.frames)
            scores = transcription_metrics(f.reference, decoded.note_sequence,
                                           granularities=self.granularities)
            results.append(FileResult(f, decoded.note_sequence, scores,
                                      decoded.invalid_events, decoded.dropped_events,
                                      truncated_segments=decoded.truncated_segments,
                                      duplicate_notes=decoded.duplicate_notes))
        return results

    def scores(self, params: Any) -> dict[str, float]:
        """MT3-named metrics averaged over files, plus the decoding-health counters per file
        (`HEALTH_NAMES`: 'Invalid events', 'Dropped events', 'Duplicate notes', 'Truncated
        segments', 'Estimated notes')."""
        results = self.evaluate_files(params)
        self.last_results = results
        scores = average_metrics(r.metrics for r in results)
        for key, name in HEALTH_NAMES.items():
            scores[name] = float(np.mean([r.health()[key] for r in results]))
        return scores

    def __call__(self, params: Any, step: int) -> dict[str, float]:
        """Trainer callback: short metric names (see SHORT_METRIC_NAMES) + decoding counters."""
        start = time.perf_counter()
        scores = self.scores(params)
        out = short_metrics(scores)
        out.update({key: scores[name] for key, name in HEALTH_NAMES.items()})
        out["transcribe_seconds"] = time.perf_counter() - start
        log.info("step %d: transcription eval on %d files: %s", step, len(self.last_results),
                 ", ".join(f"{k}={v:.4g}" for k, v in out.items()))
        return out

"""Transcription metrics of a model on whole files: the evaluator used for best-k checkpoints.

The files of an inference-evaluation task (`mt3x.tasks.registry`, e.g.
`slakh_notes_ties_vb1_validation`) are cut into consecutive 256-frame segments, decoded in
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
import time
from typing import Any, Callable, Mapping, Sequence

import note_seq
import numpy as np

from mt3x.errors import Mt3xError
from mt3x.audio.mt3_config import MT3_SPECTROGRAM_CONFIG
from mt3x.tasks import registry as task_registry
from mt3x.transcription.decoder import SegmentDecoder
from mt3x.transcription.metrics import average_metrics, transcription_metrics
from mt3x.transcription.notes import tokens_to_notes

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


def load_eval_files(task_name: str, *, split: str = "eval", max_files: int | None = None,
                    frames_per_segment: int = MT3_SPECTROGRAM_CONFIG.frames_per_segment
                    ) -> list[EvalFile]:
    """The files of a registered inference-evaluation task (see `group_segments`).

    Raises:
      EvaluationError: the task yields no files.
    """
    files = group_segments(task_registry.eval_segments(task_name, split), max_files=max_files,
                           frames_per_segment=frames_per_segment)
    if not files:
        raise EvaluationError(f"eval task {task_name!r} (split {split!r}) has no files")
    return files


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
                                      decoded.invalid_events, decoded.dropped_events))
        return results

    def scores(self, params: Any) -> dict[str, float]:
        """MT3-named metrics averaged over files, plus 'Invalid events' / 'Dropped events'
        (per file) and 'Estimated notes' (per file)."""
        results = self.evaluate_files(params)
        self.last_results = results
        scores = average_metrics(r.metrics for r in results)
        scores["Invalid events"] = float(np.mean([r.invalid_events for r in results]))
        scores["Dropped events"] = float(np.mean([r.dropped_events for r in results]))
        scores["Estimated notes"] = float(np.mean([len(r.estimate.notes) for r in results]))
        return scores

    def __call__(self, params: Any, step: int) -> dict[str, float]:
        """Trainer callback: short metric names (see SHORT_METRIC_NAMES) + decoding counters."""
        start = time.perf_counter()
        scores = self.scores(params)
        out = short_metrics(scores)
        out["invalid_events"] = scores["Invalid events"]
        out["estimated_notes"] = scores["Estimated notes"]
        out["transcribe_seconds"] = time.perf_counter() - start
        log.info("step %d: transcription eval on %d files: %s", step, len(self.last_results),
                 ", ".join(f"{k}={v:.4g}" for k, v in out.items()))
        return out

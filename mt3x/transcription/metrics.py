"""Transcription metrics on NoteSequences, as magenta/mt3 computes them (`mt3/metrics.py`).

Per example (`transcription_metrics(ref_ns, est_ns)`), with MT3's metric names:

- `Onset precision/recall/F1`: mir_eval note matching on onsets (50 ms) and pitch; drums removed,
  programs ignored.
- `Onset + offset ...`: also offsets (within 20 % of the reference duration, at least 50 ms).
- `Onset + velocity ...`, `Onset + offset + velocity ...`: mir_eval.transcription_velocity.
- `Frame Precision/Recall/F1`: piano rolls at 62.5 frames/s (notes extended to at least 50 ms,
  velocities summed as pretty_midi does); reference cells count when their summed velocity is
  > 30, estimated cells when > 0.
- `Onset + offset + program precision/recall/F1 (<granularity>)`: the multi-instrument F1. Per
  (program, is_drum) track after mapping programs to the granularity (flat / midi_class / full),
  onset+offset matching for non-drums and onset-only for drums; precision and recall are averaged
  over tracks weighted by the number of estimated / reference notes. `Drum onset ...` and
  `Nondrum onset + offset + program ...` split the same sums.
- `Agnostic onset precision/recall/F1`: instrument-agnostic onset F1 (`agnostic_onset_scores`):
  every note (drums included) merged into one track, programs ignored, mir_eval onset-only
  matching at 50 ms and pitch; the metric basic-pitch reports, so the two compare.
- `Onset + offset precision/recall/F1 (<tol>)`: onset tolerance sweep (offset minimum tolerance =
  onset tolerance) on the drumless sequences. As in MT3 these use the sequences after the frame
  metric has extended their notes to at least 50 ms.

`average_metrics` averages each metric over examples (plain mean, as MT3).
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from typing import Iterable, Mapping, Sequence

import mir_eval
import note_seq
import numpy as np

from mt3x.codec.vocabulary import PROGRAM_GRANULARITY_NAMES, program_map_fn

NoteSequence = note_seq.NoteSequence

DEFAULT_FRAME_FPS = 62.5
DEFAULT_FRAME_VELOCITY_THRESHOLD = 30
DEFAULT_TOLERANCES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
PIANOROLL_MIN_NOTE_SECONDS = 0.05


@dataclasses.dataclass(frozen=True)
class TrackSpec:
    """A named instrument track for per-track metrics (MT3's `TrackSpec`)."""

    name: str
    program: int = 0
    is_drum: bool = False


# -- helpers --------------------------------------------------------------------------------------
def extract_track(ns: NoteSequence, program: int, is_drum: bool) -> NoteSequence:
    """The notes of one (program, is_drum) track as a new NoteSequence."""
    track = NoteSequence(ticks_per_quarter=220)
    track.notes.extend(n for n in ns.notes if n.program == program and n.is_drum == is_drum)
    track.total_time = max((n.end_time for n in track.notes), default=0.0)
    return track


def remove_drums(ns: NoteSequence) -> NoteSequence:
    out = NoteSequence()
    out.CopyFrom(ns)
    del out.notes[:]
    out.notes.extend(n for n in ns.notes if not n.is_drum)
    return out


def note_intervals(ns: NoteSequence) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """mir_eval inputs: intervals float[n, 2] (s), pitches float[n] (Hz), velocities int[n].

    Zero-length notes are skipped (note_seq's `sequence_to_valued_intervals`).
    """
    return note_seq.sequences_lib.sequence_to_valued_intervals(ns)


def _prf(fn, **kwargs) -> tuple[float, float, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mir_eval warns on empty reference/estimate
        precision, recall, f_measure, _ = fn(**kwargs)
    return float(precision), float(recall), float(f_measure)


def extend_short_notes(ns: NoteSequence, all_notes: bool = False,
                       min_seconds: float = PIANOROLL_MIN_NOTE_SECONDS) -> None:
    """In place: notes shorter than `min_seconds` (all notes if `all_notes`) end at start + min."""
    for note in ns.notes:
        if all_notes or note.end_time - note.start_time < min_seconds:
            note.end_time = note.start_time + min_seconds


def pianoroll(ns: NoteSequence, fps: float = DEFAULT_FRAME_FPS,
              is_drum: bool = False) -> np.ndarray:
    """float64[128, frames] summed velocities at `fps` frames/s (MT3's pretty_midi piano roll).

    Works on a copy: notes shorter than 50 ms (every note when `is_drum`) are extended to 50 ms.
    """
    ns = copy.deepcopy(ns)
    extend_short_notes(ns, all_notes=is_drum)
    return _pianoroll_of_extended(ns, fps)


def _pianoroll_of_extended(ns: NoteSequence, fps: float) -> np.ndarray:
    """Every note adds its velocity to cells [int(start * fps), int(end * fps)) of its pitch.

    The same cells as MT3's `pretty_midi` piano roll (`note_sequence_to_pretty_midi(ns)
    .get_piano_roll(fps)`) for sequences whose programs have distinct instrument numbers (MT3's
    decoder and datasets assign them), without note_seq's merging of different programs that
    share an instrument number. Control changes are ignored: apply sustain first (MT3's
    references have it applied and their control changes removed).
    """
    width = max((int(fps * n.end_time) for n in ns.notes), default=0)
    roll = np.zeros((128, width))
    for n in ns.notes:
        roll[n.pitch, int(n.start_time * fps):int(n.end_time * fps)] += n.velocity
    return roll


def frame_metrics(ref_pianoroll: np.ndarray, est_pianoroll: np.ndarray,
                  velocity_threshold: float) -> tuple[float, float, float]:
    """Frame precision, recall, F1 of two float[128, frames] piano rolls.

    The shorter roll is zero-padded; reference cells count when > velocity_threshold, estimated
    cells when > 0. Undefined ratios are 0 (sklearn's zero_division behaviour in MT3).
    """
    n = max(ref_pianoroll.shape[1], est_pianoroll.shape[1])
    ref = np.zeros((128, n), dtype=bool)
    est = np.zeros((128, n), dtype=bool)
    ref[:, :ref_pianoroll.shape[1]] = ref_pianoroll > velocity_threshold
    est[:, :est_pianoroll.shape[1]] = est_pianoroll > 0
    tp = int(np.count_nonzero(ref & est))
    n_est, n_ref = int(np.count_nonzero(est)), int(np.count_nonzero(ref))
    precision = tp / n_est if n_est else 0.0
    recall = tp / n_ref if n_ref else 0.0
    denom = n_est + n_ref
    f1 = 2 * tp / denom if denom and tp else 0.0
    return precision, recall, f1


# -- metric groups --------------------------------------------------------------------------------
def program_aware_note_scores(ref_ns: NoteSequence, est_ns: NoteSequence,
                              granularity: str) -> dict[str, float]:
    """Multi-instrument precision/recall/F1 at one program granularity (MT3's
    `_program_aware_note_scores`): onset+offset per non-drum track, onset-only for drums."""
    map_program = program_map_fn(granularity)
    ref_ns = copy.deepcopy(ref_ns)
    est_ns = copy.deepcopy(est_ns)
    for ns in (ref_ns, est_ns):
        for note in ns.notes:
            if not note.is_drum:
                note.program = map_program(note.program)
    tracks = ({(n.program, n.is_drum) for n in ref_ns.notes}
              | {(n.program, n.is_drum) for n in est_ns.notes})
    sums = {k: [0.0, 0, 0.0, 0] for k in (True, False)}  # is_drum -> [P sum, #est, R sum, #ref]
    for program, is_drum in sorted(tracks):
        est_iv, est_p, _ = note_intervals(extract_track(est_ns, program, is_drum))
        ref_iv, ref_p, _ = note_intervals(extract_track(ref_ns, program, is_drum))
        kwargs = dict(ref_intervals=ref_iv, ref_pitches=ref_p, est_intervals=est_iv,
                      est_pitches=est_p)
        if is_drum:
            kwargs["offset_ratio"] = None
        precision, recall, _ = _prf(mir_eval.transcription.precision_recall_f1_overlap,
                                    **kwargs)
        s = sums[is_drum]
        s[0] += precision * len(est_iv)
        s[1] += len(est_iv)
        s[2] += recall * len(ref_iv)
        s[3] += len(ref_iv)

    def prf(p_sum, p_count, r_sum, r_count):
        p = p_sum / p_count if p_count else 0.0
        r = r_sum / r_count if r_count else 0.0
        return p, r, float(mir_eval.util.f_measure(p, r))

    total = [sums[True][i] + sums[False][i] for i in range(4)]
    g = granularity
    out = {}
    for prefix, values in ((f"Onset + offset + program", prf(*total)),
                           (f"Drum onset", prf(*sums[True])),
                           (f"Nondrum onset + offset + program", prf(*sums[False]))):
        out[f"{prefix} precision ({g})"] = values[0]
        out[f"{prefix} recall ({g})"] = values[1]
        out[f"{prefix} F1 ({g})"] = values[2]
    return out


def onset_tolerance_sweep(ref_ns: NoteSequence, est_ns: NoteSequence,
                          tolerances: Iterable[float] = DEFAULT_TOLERANCES) -> dict[str, float]:
    """Onset + offset P/R/F1 at several onset tolerances (s); offset_min_tolerance = tolerance."""
    est_iv, est_p, _ = note_intervals(est_ns)
    ref_iv, ref_p, _ = note_intervals(ref_ns)
    out = {}
    for tol in tolerances:
        p, r, f = _prf(mir_eval.transcription.precision_recall_f1_overlap,
                       ref_intervals=ref_iv, ref_pitches=ref_p, est_intervals=est_iv,
                       est_pitches=est_p, onset_tolerance=tol, offset_min_tolerance=tol)
        out[f"Onset + offset precision ({tol})"] = p
        out[f"Onset + offset recall ({tol})"] = r
        out[f"Onset + offset F1 ({tol})"] = f
    return out


AGNOSTIC_ONSET_TOLERANCE = 0.05


def agnostic_onset_scores(ref_ns: NoteSequence, est_ns: NoteSequence,
                          onset_tolerance: float = AGNOSTIC_ONSET_TOLERANCE
                          ) -> dict[str, float]:
    """Instrument-agnostic onset P/R/F1: all notes of each sequence (drums included) as one
    track, programs ignored, mir_eval onset-only note matching (`onset_tolerance` s, 50 cents).

    Comparable with basic-pitch's reported note-onset F1 (one pitch track per file).
    """
    est_iv, est_p, _ = note_intervals(est_ns)
    ref_iv, ref_p, _ = note_intervals(ref_ns)
    p, r, f = _prf(mir_eval.transcription.precision_recall_f1_overlap, ref_intervals=ref_iv,
                   ref_pitches=ref_p, est_intervals=est_iv, est_pitches=est_p,
                   onset_tolerance=onset_tolerance, offset_ratio=None)
    return {"Agnostic onset precision": p, "Agnostic onset recall": r,
            "Agnostic onset F1": f}


def _note_scores(ref_ns: NoteSequence, est_ns: NoteSequence, use_offsets: bool,
                 use_velocities: bool) -> dict[str, float]:
    est_iv, est_p, est_v = note_intervals(est_ns)
    ref_iv, ref_p, ref_v = note_intervals(ref_ns)
    base = dict(ref_intervals=ref_iv, ref_pitches=ref_p, est_intervals=est_iv, est_pitches=est_p)
    vel = dict(base, ref_velocities=ref_v, est_velocities=est_v)
    groups = [("Onset", mir_eval.transcription.precision_recall_f1_overlap,
               dict(base, offset_ratio=None))]
    if use_offsets:
        groups.append(("Onset + offset", mir_eval.transcription.precision_recall_f1_overlap,
                       base))
    if use_velocities:
        groups.append(("Onset + velocity",
                       mir_eval.transcription_velocity.precision_recall_f1_overlap,
                       dict(vel, offset_ratio=None)))
    if use_offsets and use_velocities:
        groups.append(("Onset + offset + velocity",
                       mir_eval.transcription_velocity.precision_recall_f1_overlap, vel))
    out = {}
    for name, fn, kwargs in groups:
        p, r, f = _prf(fn, **kwargs)
        out[f"{name} precision"], out[f"{name} recall"], out[f"{name} F1"] = p, r, f
    return out


def transcription_metrics(
    ref_ns: NoteSequence,
    est_ns: NoteSequence,
    *,
    onsets_only: bool = False,
    frame_fps: float = DEFAULT_FRAME_FPS,
    frame_velocity_threshold: float = DEFAULT_FRAME_VELOCITY_THRESHOLD,
    granularities: Sequence[str] = PROGRAM_GRANULARITY_NAMES,
    tolerances: Iterable[float] = DEFAULT_TOLERANCES,
    track_specs: Sequence[TrackSpec] | None = None,
) -> dict[str, float]:
    """MT3's metric set for one example (reference vs estimate); keys as in MT3's summaries.

    Args:
      ref_ns, est_ns: NoteSequences in seconds (sustain already applied; MT3's references are).
      onsets_only: only onset metrics (MT3's onsets-only models).
      frame_fps: piano-roll rate for frame metrics.
      frame_velocity_threshold: reference cells count when summed velocity > this.
      granularities: program granularities for the multi-instrument F1.
      tolerances: onset tolerances (s) for the sweep.
      track_specs: optional named tracks scored separately ('<name>/<metric>' keys).
    Returns:
      {metric name: float}.
    """
    scores: dict[str, float] = agnostic_onset_scores(ref_ns, est_ns)
    est_drumless = remove_drums(est_ns)
    ref_drumless = remove_drums(ref_ns)
    tracks = [("", est_drumless, ref_drumless, not onsets_only, not onsets_only)]
    for spec in track_specs or ():
        tracks.append((spec.name, extract_track(est_ns, spec.program, spec.is_drum),
                       extract_track(ref_ns, spec.program, spec.is_drum),
                       not onsets_only and not spec.is_drum, not onsets_only))
    for name, est, ref, use_offsets, use_velocities in tracks:
        track_scores = _note_scores(ref, est, use_offsets, use_velocities)
        is_drum = all(n.is_drum for n in ref.notes)
        # In place, as MT3: the tolerance sweep below sees the extended drumless notes.
        extend_short_notes(ref, all_notes=is_drum)
        extend_short_notes(est, all_notes=is_drum)
        ref_roll = _pianoroll_of_extended(ref, frame_fps)
        est_roll = _pianoroll_of_extended(est, frame_fps)
        p, r, f = frame_metrics(ref_roll, est_roll, frame_velocity_threshold)
        track_scores.update({"Frame Precision": p, "Frame Recall": r, "Frame F1": f})
        for key, value in track_scores.items():
            scores[f"{name}/{key}" if name else key] = value
    for granularity in granularities:
        scores.update(program_aware_note_scores(ref_ns, est_ns, granularity))
    scores.update(onset_tolerance_sweep(ref_drumless, est_drumless, tolerances))
    return scores


def average_metrics(per_example: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Mean of every metric over the examples that report it (MT3 averages per example)."""
    values: dict[str, list[float]] = {}
    for example in per_example:
        for key, value in example.items():
            values.setdefault(key, []).append(float(value))
    return {key: float(np.mean(v)) for key, v in values.items()}


def evaluate_pairs(pairs: Iterable[tuple[NoteSequence, NoteSequence]],
                   **kwargs) -> dict[str, float]:
    """`transcription_metrics` on each (ref, est) pair, averaged over pairs."""
    return average_metrics(transcription_metrics(ref, est, **kwargs) for ref, est in pairs)


# Rows of the summary table printed by `mt3x-eval-midi`: (label, metric prefix, suffix).
SUMMARY_ROWS = (
    ("Agnostic onset (all notes, 50 ms)", "Agnostic onset", ""),
    ("Onset", "Onset", ""),
    ("Onset + offset", "Onset + offset", ""),
    ("Onset + velocity", "Onset + velocity", ""),
    ("Onset + offset + velocity", "Onset + offset + velocity", ""),
    ("Frame", "Frame", ""),
    ("Multi-instrument (flat)", "Onset + offset + program", " (flat)"),
    ("Multi-instrument (midi_class)", "Onset + offset + program", " (midi_class)"),
    ("Multi-instrument (full)", "Onset + offset + program", " (full)"),
    ("Drum onset (full)", "Drum onset", " (full)"),
    ("Non-drum multi-instrument (full)", "Nondrum onset + offset + program", " (full)"),
)


def format_table(scores: Mapping[str, float]) -> str:
    """A plain-text P / R / F1 table of the main metrics and the tolerance sweep."""
    lines = [f"{'metric':<34}{'precision':>10}{'recall':>10}{'F1':>10}"]

    def row(label, p_key, r_key, f_key):
        if f_key in scores:
            lines.append(f"{label:<34}{scores[p_key]:>10.4f}{scores[r_key]:>10.4f}"
                         f"{scores[f_key]:>10.4f}")

    for label, prefix, suffix in SUMMARY_ROWS:
        if prefix == "Frame":
            row(label, "Frame Precision", "Frame Recall", "Frame F1")
        else:
            row(label, f"{prefix} precision{suffix}", f"{prefix} recall{suffix}",
                f"{prefix} F1{suffix}")
    sweep = sorted({float(k.rsplit("(", 1)[1][:-1]) for k in scores
                    if k.startswith("Onset + offset F1 (") and k[-2].isdigit()})
    for tol in sweep:
        row(f"Onset + offset @ {tol:g} s", f"Onset + offset precision ({tol})",
            f"Onset + offset recall ({tol})", f"Onset + offset F1 ({tol})")
    return "\n".join(lines)

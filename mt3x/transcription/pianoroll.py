"""Piano-roll plot of an estimated transcription against its reference, per instrument.

Notes are matched per (program, is_drum) track as the multi-instrument F1 does (mir_eval; onset
within 50 ms and offset within 20 % / 50 ms for non-drums, onset only for drums). In the PNG,
each instrument gets one panel: true positives (matched estimated notes) green, false positives
(unmatched estimated notes) red, false negatives (unmatched reference notes) as blue outlines;
matched reference notes are drawn faintly underneath.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import warnings
from typing import Sequence

import mir_eval
import note_seq
import numpy as np
import pretty_midi
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import MaxNLocator

from mt3x.codec.vocabulary import program_map_fn
from mt3x.util.files import atomic_path

TP_COLOR = "#2ca02c"
FP_COLOR = "#d62728"
FN_COLOR = "#1f3fbf"
REF_COLOR = "#bbbbbb"


@dataclasses.dataclass(frozen=True)
class TrackMatch:
    """Matched notes of one instrument track.

    Attributes:
      program, is_drum: the track (program after the granularity map; 0 for drums).
      name: display name ('Drums', 'Acoustic Grand Piano', ...).
      ref_intervals, est_intervals: float[n, 2] onset/offset seconds.
      ref_pitches, est_pitches: int[n] MIDI pitches.
      ref_matched, est_matched: bool[n] whether each note has a partner.
    """

    program: int
    is_drum: bool
    name: str
    ref_intervals: np.ndarray
    ref_pitches: np.ndarray
    est_intervals: np.ndarray
    est_pitches: np.ndarray
    ref_matched: np.ndarray
    est_matched: np.ndarray

    @property
    def true_positives(self) -> int:
        return int(self.est_matched.sum())

    @property
    def false_positives(self) -> int:
        return int((~self.est_matched).sum())

    @property
    def false_negatives(self) -> int:
        return int((~self.ref_matched).sum())


def _track_arrays(ns: note_seq.NoteSequence, program: int, is_drum: bool):
    notes = [n for n in ns.notes if n.program == program and n.is_drum == is_drum
             and n.end_time > n.start_time]
    intervals = np.array([[n.start_time, n.end_time] for n in notes], dtype=np.float64)
    return intervals.reshape(-1, 2), np.array([n.pitch for n in notes], dtype=np.int64)


def match_tracks(ref_ns: note_seq.NoteSequence, est_ns: note_seq.NoteSequence,
                 granularity: str = "full") -> list[TrackMatch]:
    """Per-track note matching, tracks sorted by (is_drum, program)."""
    map_program = program_map_fn(granularity)
    mapped = []
    for ns in (ref_ns, est_ns):
        ns = copy.deepcopy(ns)
        for n in ns.notes:
            if not n.is_drum:
                n.program = map_program(n.program)
        mapped.append(ns)
    ref_ns, est_ns = mapped
    keys = sorted({(n.is_drum, n.program) for n in ref_ns.notes}
                  | {(n.is_drum, n.program) for n in est_ns.notes})
    out = []
    for is_drum, program in keys:
        ref_iv, ref_p = _track_arrays(ref_ns, program, is_drum)
        est_iv, est_p = _track_arrays(est_ns, program, is_drum)
        ref_matched = np.zeros(len(ref_p), dtype=bool)
        est_matched = np.zeros(len(est_p), dtype=bool)
        if len(ref_p) and len(est_p):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pairs = mir_eval.transcription.match_notes(
                    ref_iv, pretty_midi.note_number_to_hz(ref_p), est_iv,
                    pretty_midi.note_number_to_hz(est_p),
                    offset_ratio=None if is_drum else 0.2)
            for i, j in pairs:
                ref_matched[i] = True
                est_matched[j] = True
        name = "Drums" if is_drum else pretty_midi.program_to_instrument_name(program)
        out.append(TrackMatch(program, is_drum, name, ref_iv, ref_p, est_iv, est_p,
                              ref_matched, est_matched))
    return out


def _draw_notes(ax, intervals, pitches, mask, **style) -> None:
    for (start, end), pitch in zip(intervals[mask], pitches[mask]):
        ax.add_patch(Rectangle((start, pitch - 0.4), max(end - start, 0.01), 0.8, **style))


def plot_transcription(ref_ns: note_seq.NoteSequence, est_ns: note_seq.NoteSequence,
                       path: str | os.PathLike, *, granularity: str = "full",
                       title: str | None = None, max_tracks: int | None = 16,
                       dpi: int = 100) -> list[TrackMatch]:
    """Writes a PNG (atomically) with one panel per instrument; returns the per-track matches.

    Args:
      ref_ns, est_ns: reference and estimated NoteSequences (seconds).
      path: output .png file.
      granularity: program map used to form tracks ('flat' | 'midi_class' | 'full').
      title: figure title.
      max_tracks: panels drawn at most (tracks with most notes first); None for all.
    """
    tracks = match_tracks(ref_ns, est_ns, granularity)
    shown = tracks
    if max_tracks is not None and len(tracks) > max_tracks:
        shown = sorted(tracks, key=lambda t: -(len(t.ref_pitches) + len(t.est_pitches)))
        shown = sorted(shown[:max_tracks], key=lambda t: (t.is_drum, t.program))
    n_panels = max(1, len(shown))
    fig = Figure(figsize=(12, 1.0 + 2.2 * n_panels), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(n_panels, 1, sharex=True, squeeze=False)[:, 0]
    end_time = max([n.end_time for n in ref_ns.notes] + [n.end_time for n in est_ns.notes]
                   + [1.0])
    if not shown:
        axes[0].text(0.5, 0.5, "no notes in reference or estimate", ha="center",
                     va="center", transform=axes[0].transAxes)
    for ax, t in zip(axes, shown):
        _draw_notes(ax, t.ref_intervals, t.ref_pitches, t.ref_matched, facecolor=REF_COLOR,
                    edgecolor="none", alpha=0.6)
        _draw_notes(ax, t.est_intervals, t.est_pitches, t.est_matched, facecolor=TP_COLOR,
                    edgecolor="none")
        _draw_notes(ax, t.est_intervals, t.est_pitches, ~t.est_matched, facecolor=FP_COLOR,
                    edgecolor="none")
        _draw_notes(ax, t.ref_intervals, t.ref_pitches, ~t.ref_matched, facecolor="none",
                    edgecolor=FN_COLOR, linewidth=1.2)
        pitches = np.concatenate([t.ref_pitches, t.est_pitches])
        lo, hi = (int(pitches.min()), int(pitches.max())) if pitches.size else (60, 72)
        ax.set_ylim(lo - 2, hi + 2)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        label = t.name if t.is_drum else f"{t.name} (program {t.program})"
        ax.set_title(f"{label}: TP {t.true_positives}  FP {t.false_positives}  "
                     f"FN {t.false_negatives}", fontsize=9, loc="left")
        ax.set_ylabel("pitch")
    axes[-1].set_xlim(0, end_time * 1.02)
    axes[-1].set_xlabel("time (s)")
    fig.legend(handles=[Patch(facecolor=TP_COLOR, label="true positive (estimate)"),
                        Patch(facecolor=FP_COLOR, label="false positive (estimate)"),
                        Patch(facecolor="none", edgecolor=FN_COLOR,
                              label="false negative (reference)"),
                        Patch(facecolor=REF_COLOR, label="matched reference")],
               loc="upper right", ncol=4, fontsize=8)
    if title:
        fig.suptitle(title, x=0.01, ha="left", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / (1.0 + 2.2 * n_panels)))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return tracks


def summarize_matches(tracks: Sequence[TrackMatch]) -> list[dict]:
    """JSON-friendly per-track counts."""
    return [{"name": t.name, "program": t.program, "is_drum": t.is_drum,
             "true_positives": t.true_positives, "false_positives": t.false_positives,
             "false_negatives": t.false_negatives} for t in tracks]

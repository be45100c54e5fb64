"""Notes -> files a person opens: multi-track MIDI (named General MIDI instruments, drums on
channel 10) and a piano-roll PNG of an estimate without a reference
(`mt3x.transcription.pianoroll` draws one against a reference)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import note_seq
import numpy as np
import pretty_midi
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from mt3x.util.files import atomic_path


def instrument_name(program: int, is_drum: bool) -> str:
    """General MIDI name of a program ('Drums' for drum tracks)."""
    return "Drums" if is_drum else pretty_midi.program_to_instrument_name(int(program))


def note_sequence_to_pretty_midi(ns: note_seq.NoteSequence) -> Any:
    """One pretty_midi Instrument per (program, is_drum), named by its General MIDI name.

    pretty_midi writes drum instruments on MIDI channel 10 (index 9) and gives the others the
    remaining channels.
    """
    pm = pretty_midi.PrettyMIDI(resolution=220, initial_tempo=120.0)
    tracks: dict[tuple[bool, int], Any] = {}
    for note in sorted(ns.notes, key=lambda n: (n.start_time, n.pitch)):
        key = (bool(note.is_drum), 0 if note.is_drum else int(note.program))
        if key not in tracks:
            tracks[key] = pretty_midi.Instrument(program=key[1], is_drum=key[0],
                                                 name=instrument_name(key[1], key[0]))
        velocity = int(np.clip(note.velocity or 100, 1, 127))
        tracks[key].notes.append(pretty_midi.Note(velocity=velocity, pitch=int(note.pitch),
                                                  start=float(note.start_time),
                                                  end=float(max(note.end_time,
                                                                note.start_time + 0.01))))
    pm.instruments = [tracks[key] for key in sorted(tracks)]
    return pm


def write_midi(ns: note_seq.NoteSequence, path: str | os.PathLike) -> Path:
    """Writes a multi-track MIDI file (atomically); returns its path."""
    pm = note_sequence_to_pretty_midi(ns)
    with atomic_path(path) as tmp:
        pm.write(str(tmp))
    return Path(path)


def plot_notes(ns: note_seq.NoteSequence, path: str | os.PathLike, *,
               title: str | None = None) -> Path:
    """Piano roll of an estimate without a reference: one colour per instrument (PNG)."""
    fig = Figure(figsize=(12, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    keys = sorted({(bool(n.is_drum), 0 if n.is_drum else int(n.program)) for n in ns.notes})
    colors = {key: f"C{i % 10}" for i, key in enumerate(keys)}
    for note in ns.notes:
        key = (bool(note.is_drum), 0 if note.is_drum else int(note.program))
        ax.add_patch(Rectangle((note.start_time, note.pitch - 0.4),
                               max(note.end_time - note.start_time, 0.01), 0.8,
                               facecolor=colors[key], edgecolor="none"))
    pitches = [n.pitch for n in ns.notes] or [60]
    ax.set_xlim(0, max([n.end_time for n in ns.notes] + [1.0]) * 1.02)
    ax.set_ylim(min(pitches) - 2, max(pitches) + 2)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("pitch")
    if keys:
        ax.legend(handles=[Patch(color=colors[k], label=instrument_name(k[1], k[0]))
                           for k in keys], loc="upper right", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no notes transcribed", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_title(title or f"{len(ns.notes)} notes", loc="left", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)

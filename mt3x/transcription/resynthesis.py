"""Separation by transcription: each transcribed instrument rendered through a soundfont.

    >>> stems = render_stems(transcription.note_sequence, 'out/song', num_samples=len(audio))
    >>> [s.path.name for s in stems]          # ['acoustic_grand_piano.wav', 'drums.wav', 'mix.wav']

The notes (with their transcribed velocities) of each (program, is_drum) track are rendered
alone by the dataset builder's renderer (`mt3x.data.render.render_instrument`: FluidSynth, or
tinysoundfont where libfluidsynth is missing) and written as 16-bit WAVs, one per instrument,
plus `mix.wav`, their sum. One gain for all stems puts the louder of the mix and the stems at
`peak_db`, so the stems keep their relative levels and sum to the mix.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from mt3x.audio.io import write_audio
from mt3x.data.render import render_instrument
from mt3x.transcription.midi_output import note_sequence_to_pretty_midi

MIX_NAME = "mix"


@dataclasses.dataclass(frozen=True)
class RenderedStem:
    """One written stem: General MIDI program (0 for drums), drum flag, name, WAV, note count."""

    program: int
    is_drum: bool
    name: str
    path: Path
    num_notes: int


def instrument_slug(name: str) -> str:
    """'Electric Bass (finger)' -> 'electric_bass_finger' (file-name safe)."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "instrument"


def render_stems(note_sequence: Any, out_dir: str | os.PathLike, *, num_samples: int,
                 sample_rate: int = 44100, soundfont: str | os.PathLike | None = None,
                 backend: str = "auto", peak_db: float = -1.0) -> list[RenderedStem]:
    """Renders every instrument of a NoteSequence to `<out_dir>/<instrument>.wav` + `mix.wav`.

    Args:
      note_sequence: transcribed notes (seconds, program, is_drum, velocity).
      out_dir: folder for the WAVs (created).
      num_samples: length of every stem at `sample_rate` (normally the input audio's length,
        so stems line up with the mixture; notes past it are cut).
      sample_rate: Hz of the stems.
      soundfont: .sf2/.sf3 (None: TimGM6mb.sf2 from pretty_midi).
      backend: 'auto', 'fluidsynth' or 'tinysoundfont'.
      peak_db: dBFS of the loudest of mix and stems.

    Returns:
      the stems written (the mix last, with program -1); [] when there are no notes.

    Raises:
      RenderError: missing/invalid soundfont, or one without a transcribed program.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    tracks = note_sequence_to_pretty_midi(note_sequence).instruments
    if not tracks:
        return []
    audio = [render_instrument(track, num_samples=num_samples, sample_rate=sample_rate,
                               soundfont=soundfont, backend=backend) for track in tracks]
    mix = np.sum(audio, axis=0)
    peak = max(float(np.abs(mix).max()), max(float(np.abs(a).max()) for a in audio))
    gain = 10.0 ** (peak_db / 20.0) / peak if peak > 0.0 else 1.0
    out_dir = Path(out_dir)
    written = []
    for track, samples in zip(tracks, audio):
        path = write_audio(out_dir / f"{instrument_slug(track.name)}.wav", samples * gain,
                           sample_rate)
        written.append(RenderedStem(int(track.program), bool(track.is_drum), track.name, path,
                                    len(track.notes)))
    path = write_audio(out_dir / f"{MIX_NAME}.wav", mix * gain, sample_rate)
    written.append(RenderedStem(-1, False, "mix", path, sum(len(t.notes) for t in tracks)))
    return written

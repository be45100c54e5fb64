"""The one MIDI -> NoteSequence reader of mt3x (numpy / note_seq only, no JAX or TensorFlow).

Every path that turns a MIDI file into notes for transcription goes through
`read_midi_note_sequence`: the Slakh reader's stems (`mt3x.data.slakh`), evaluation references
(`mt3x-eval-midi`, `mt3x-transcribe --reference`). Rendering MIDI to audio reads files with
pretty_midi into `Piece`s instead (`mt3x.data.sources.load_midi_file`).
"""

from __future__ import annotations

import os
from pathlib import Path

import note_seq

from mt3x.codec.note_events import apply_sustain
from mt3x.errors import Mt3xError


class MidiReadError(Mt3xError):
    """A MIDI file that does not exist or cannot be parsed."""


def read_midi_note_sequence(path: str | os.PathLike, *, sustain: bool = True
                            ) -> note_seq.NoteSequence:
    """A MIDI file's notes as a NoteSequence (times in seconds).

    Args:
      path: a .mid / .midi file.
      sustain: apply the sustain pedal (CC 64) per instrument, extending held notes, as MT3's
        references and training targets do. Either way the control changes are removed.

    Returns:
      The NoteSequence as note_seq reads it (programs, drum flags, pitch bends and tempos from
      the file), without control changes.

    Raises:
      MidiReadError: the file is missing or does not parse; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise MidiReadError(f"{path}: no such MIDI file")
    try:
        ns = note_seq.midi_file_to_note_sequence(str(path))
    except Exception as err:  # note_seq/pretty_midi/mido raise many types on corrupt files
        raise MidiReadError(f"{path}: not a readable MIDI file "
                            f"({type(err).__name__}: {err})") from err
    if sustain:
        return apply_sustain(ns)
    del ns.control_changes[:]
    return ns

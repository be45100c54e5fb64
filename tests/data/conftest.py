"""Shared fixtures for mt3x.data tests: the demo dataset (built once per session) and tiny MIDI."""

from __future__ import annotations

from pathlib import Path

import pretty_midi
import pytest

from mt3x.data.presets import build_demo


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory) -> Path:
    """The `demo` preset (6/2/2 tracks, 13 s each at 16 kHz), built once per test session."""
    return build_demo(tmp_path_factory.mktemp("demo") / "demo", seed=0, jobs=1)


def write_piece(path: Path, parts: list[tuple[int, bool, list[tuple[int, float, float]]]]) -> Path:
    """Writes a MIDI file: parts = [(program, is_drum, [(pitch, start_s, end_s), ...]), ...]."""
    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    for program, is_drum, notes in parts:
        inst = pretty_midi.Instrument(program=program, is_drum=is_drum)
        inst.notes = [pretty_midi.Note(100, pitch, start, end) for pitch, start, end in notes]
        midi.instruments.append(inst)
    path.parent.mkdir(parents=True, exist_ok=True)
    midi.write(str(path))
    return path


def scale(base: int, count: int, step: float = 0.25, offset: float = 0.0):
    return [(base + (2 * k) % 12, offset + k * step, offset + (k + 1) * step) for k in range(count)]


@pytest.fixture(scope="session")
def midi_dir(tmp_path_factory) -> Path:
    """Six 2-s three-part pieces (one with drums) as .mid files."""
    root = tmp_path_factory.mktemp("midi")
    for i in range(6):
        parts = [(0, False, scale(60 + i, 8)), (32, False, scale(36 + i, 4, 0.5)),
                 (48, False, scale(67 + i, 2, 1.0))]
        if i == 0:
            parts[2] = (0, True, [(36, 0.0, 0.1), (38, 0.5, 0.6), (36, 1.0, 1.1), (38, 1.5, 1.6)])
        write_piece(root / f"piece{i}.mid", parts)
    return root

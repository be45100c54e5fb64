"""Small synthetic tracks with the `mt3x.data.slakh.SlakhTrack` interface, for the tagging tests."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np


@dataclasses.dataclass
class FakeNote:
    start_time: float
    end_time: float
    is_drum: bool = False
    pitch: int = 60


@dataclasses.dataclass
class FakeNoteSequence:
    notes: list


@dataclasses.dataclass
class FakeStem:
    name: str
    program: int
    is_drum: bool
    inst_class: str
    audio: np.ndarray
    notes: list
    audio_rendered: bool = True


@dataclasses.dataclass
class FakeTrack:
    """Duck-typed `mt3x.data.slakh.SlakhTrack` holding audio at one rate (16 kHz)."""

    track_id: str
    stems: list
    sample_rate: int = 16000
    path: Path = Path("/nonexistent")

    def load_mix(self, sample_rate=None):
        assert sample_rate in (None, self.sample_rate)
        return np.sum([s.audio for s in self.stems if s.audio_rendered], axis=0).astype(np.float32)

    def load_stem(self, name, sample_rate=None):
        assert sample_rate in (None, self.sample_rate)
        return next(s.audio for s in self.stems if s.name == name)

    def stem_note_sequence(self, name):
        return FakeNoteSequence(next(s.notes for s in self.stems if s.name == name))


def tone(freq_hz: float, seconds: float, amplitude: float = 0.3, sample_rate: int = 16000,
         start: float = 0.0, stop: float | None = None) -> np.ndarray:
    """A sine of `seconds` total length that sounds only in [start, stop) seconds."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    stop = seconds if stop is None else stop
    gate = (t >= start) & (t < stop)
    return (amplitude * np.sin(2 * np.pi * freq_hz * t) * gate).astype(np.float32)

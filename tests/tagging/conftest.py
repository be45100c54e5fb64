"""Fixtures and helpers for the tagging tests.

- `write_slakh_track` writes a hand-made track in real Slakh2100 layout (stems/SXX.flac, mix.flac =
  the integer sum of the rendered stems, MIDI/SXX.mid, all_src.mid, metadata.yaml with Slakh's
  keys), which the tests read back with `mt3x.data.slakh.read_split`, like any Slakh folder.
- `tone` / `tone_stem` make sine stems whose MIDI notes say where they sound.
- `demo_root` builds (FluidSynth) a small variant of the demo dataset once per session.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import yaml

from mt3x.audio.io import quantize_pcm16, write_audio
from mt3x.data.instruments import inst_class, program_name
from mt3x.data.loudness import integrated_loudness
from tests.data.conftest import write_piece

SR = 16000
SLAKH_DRUM_PROGRAM = 128   # what Slakh's metadata gives drum stems as program_num


def tone(freq_hz: float, seconds: float, amplitude: float = 0.3, sample_rate: int = SR,
         start: float = 0.0, stop: float | None = None) -> np.ndarray:
    """f32[round(seconds * sample_rate)]: a sine of `freq_hz` that sounds only in [start, stop) s."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    stop = seconds if stop is None else stop
    gate = (t >= start) & (t < stop)
    return (amplitude * np.sin(2 * np.pi * freq_hz * t) * gate).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class StemSpec:
    """One source of a hand-made track.

    Attributes:
      program: 0-based GM program (ignored for drums, which get Slakh's 128).
      notes: (MIDI pitch, start s, end s) written to MIDI/SXX.mid and all_src.mid.
      audio: f32[samples] in [-1, 1] at the track's rate; None = MIDI only (audio_rendered: false).
      is_drum: a drum stem (inst_class 'Drums').
    """

    program: int
    notes: Sequence[tuple[int, float, float]]
    audio: np.ndarray | None
    is_drum: bool = False


def tone_stem(program: int, pitch: int, seconds: float, start: float, stop: float,
              amplitude: float = 0.3) -> StemSpec:
    """A stem holding one note of `pitch` from `start` to `stop` s and its sine at the pitch's
    frequency (track length `seconds`, 16 kHz)."""
    audio = tone(pretty_midi.note_number_to_hz(pitch), seconds, amplitude, start=start, stop=stop)
    return StemSpec(program, [(pitch, start, stop)], audio)


def write_slakh_track(root: Path, split: str, track_id: str, stems: Sequence[StemSpec], *,
                      sample_rate: int = SR) -> Path:
    """Writes root/split/track_id in Slakh2100's layout; stems are named S00, S01, ... in order.

    Stems are quantised to 16 bits first and the mix is their integer sum, as the builder does, so
    the mix read back equals the sum of the rendered stems read back. Returns the track folder.
    """
    folder = Path(root) / split / track_id
    (folder / "stems").mkdir(parents=True)
    names = [f"S{k:02d}" for k in range(len(stems))]
    mix = np.zeros(0, np.int64)
    meta = {}
    for name, stem in zip(names, stems):
        midi_program = 0 if stem.is_drum else stem.program
        write_piece(folder / "MIDI" / f"{name}.mid", [(midi_program, stem.is_drum, list(stem.notes))])
        rendered = stem.audio is not None
        loudness = None
        if rendered:
            ints = quantize_pcm16(stem.audio)
            write_audio(folder / "stems" / f"{name}.flac", ints, sample_rate)
            loudness = round(integrated_loudness(ints / 32768.0, sample_rate), 6)
            if mix.size < ints.size:
                mix = np.pad(mix, (0, ints.size - mix.size))
            mix[:ints.size] += ints
        meta[name] = {
            "audio_rendered": rendered, "inst_class": inst_class(stem.program, stem.is_drum),
            "integrated_loudness": loudness, "is_drum": stem.is_drum,
            "midi_program_name": program_name(stem.program, stem.is_drum), "midi_saved": True,
            "plugin_name": "sine", "program_num": SLAKH_DRUM_PROGRAM if stem.is_drum else stem.program,
        }
    if np.abs(mix).max() > 32767:
        raise ValueError(f"{folder}: the stems' sum exceeds 16 bits; lower their amplitudes")
    write_audio(folder / "mix.flac", mix.astype(np.int16), sample_rate)
    write_piece(folder / "all_src.mid", [(0 if s.is_drum else s.program, s.is_drum, list(s.notes))
                                         for s in stems])
    metadata = {"UUID": hashlib.md5(track_id.encode()).hexdigest(), "audio_dir": "stems",
                "lmd_midi_dir": f"hand-made/{track_id}.mid", "midi_dir": "MIDI",
                "normalization_factor": -13.0, "normalized": False, "overall_gain": 1.0,
                "target_peak": -1.0, "stems": meta}
    (folder / "metadata.yaml").write_text(yaml.safe_dump(metadata, sort_keys=True))
    return folder


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """The demo preset (10 Bach chorales split 6/2/2 by piece, 16 kHz), with instruments drawn from
    the default pool per track (instead of one fixed quartet), drums on every second track, two
    6-second mixes per piece: so every instrument is present in some tracks and absent in others,
    which is what a tagger can learn. 20 tracks, 140 s of audio (with the 1 s release tails).

    Size: loading the 11 chorales is a fixed cost; the 30-track, 8-second variant used before
    took 1.6x the CPU time for 2x the audio; every demo assertion holds on both (the margins on
    this one are written next to each demo test)."""
    from mt3x.data.instruments import Recipe
    from mt3x.data.presets import build_demo

    return build_demo(tmp_path_factory.mktemp("tagging") / "demo", seed=0,
                      recipe=Recipe(kind="pool"), drums_every=2, mixes_per_piece=2,
                      segment_seconds=6.0)


@pytest.fixture(scope="session")
def demo_examples(demo_root):
    """{'train', 'validation', 'test'}: SnippetExamples of the demo data (inst_class grouping)."""
    from tagging.pipeline import load_split_examples

    train = load_split_examples(demo_root, "train")
    out = {"train": train}
    for split in ("validation", "test"):
        out[split] = load_split_examples(demo_root, split, instruments=train.instruments)
    return out


@pytest.fixture(scope="session")
def demo_tagger(demo_examples):
    from tagging.model import TrainConfig, train_tagger

    return train_tagger(demo_examples["train"], demo_examples["validation"],
                        config=TrainConfig(seed=0))

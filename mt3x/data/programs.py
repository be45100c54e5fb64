"""Slakh-style instrument draws: class frequencies, program pitch ranges, training/evaluation sets.

Slakh2100 renders each MIDI instrument with a patch drawn from the instrument's General MIDI class,
so its stems follow Lakh MIDI's class distribution: guitar, piano, bass, drums and strings dominate,
and every GM class appears. `CLASS_WEIGHTS` approximates that distribution as a share of stems
(from the class counts published with Slakh2100; approximate, not measured on the data here).

A draw (`choose_programs`) picks, for every pitched part, a class by those weights (a part whose
source names a bass program stays in the Bass class, as Slakh keeps the source's class), then a
program of that class from the allowed set, then the octave transposition that brings the part's
notes into the program's playable range (`PROGRAM_RANGES`); a part that fits no octave is redrawn.

Program sets: `OOD_PROGRAMS` (one program per class but Sound Effects, plus two drum kits) are held
out for the `ood-eval` preset; `TRAIN_PROGRAMS` are all the others.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from mt3x.data.instruments import DRUMS_CLASS, GM_FAMILIES, InstrumentChoice, inst_class
from mt3x.errors import Mt3xError

# Share of stems per class (GM family), drums included; sums to 1 after normalisation.
CLASS_WEIGHTS: dict[str, float] = {
    "Guitar": 0.19, "Piano": 0.15, "Bass": 0.13, DRUMS_CLASS: 0.12, "Strings": 0.05,
    "Strings (continued)": 0.07, "Organ": 0.05, "Synth Pad": 0.04, "Synth Lead": 0.04,
    "Brass": 0.04, "Reed": 0.035, "Chromatic Percussion": 0.03, "Pipe": 0.025,
    "Synth Effects": 0.01, "Ethnic": 0.01, "Percussive": 0.005, "Sound Effects": 0.005,
}

# Playable MIDI pitch range (low, high) per family, with per-program exceptions below.
_FAMILY_RANGES: dict[str, tuple[int, int]] = {
    "Piano": (21, 108), "Chromatic Percussion": (48, 96), "Organ": (24, 96), "Guitar": (40, 88),
    "Bass": (28, 67), "Strings": (28, 100), "Strings (continued)": (28, 100), "Brass": (34, 86),
    "Reed": (34, 91), "Pipe": (60, 96), "Synth Lead": (36, 96), "Synth Pad": (36, 96),
    "Synth Effects": (36, 96), "Ethnic": (48, 88), "Percussive": (36, 84), "Sound Effects": (36, 84),
}
_PROGRAM_EXCEPTIONS: dict[int, tuple[int, int]] = {
    8: (60, 108), 9: (72, 108), 10: (60, 96), 11: (53, 89), 12: (45, 96), 13: (60, 96),
    14: (60, 84), 15: (50, 84), 40: (55, 100), 41: (48, 88), 42: (36, 76), 43: (28, 60),
    44: (36, 96), 45: (28, 96), 46: (24, 103), 47: (40, 57), 56: (54, 86), 57: (40, 72),
    58: (28, 58), 59: (54, 82), 60: (34, 77), 61: (34, 86), 62: (28, 96), 63: (28, 96),
    64: (56, 88), 65: (49, 81), 66: (44, 76), 67: (36, 69), 68: (58, 91), 69: (52, 81),
    70: (34, 72), 71: (50, 91), 72: (74, 108), 73: (60, 96), 104: (48, 77), 105: (48, 84),
    107: (55, 91), 108: (60, 96), 116: (36, 60), 117: (36, 72), 118: (36, 72),
}
PROGRAM_RANGES: dict[int, tuple[int, int]] = {
    p: _PROGRAM_EXCEPTIONS.get(p, _FAMILY_RANGES[GM_FAMILIES[p // 8]]) for p in range(128)
}

# Held out for evaluation: one program per class but Sound Effects, and two drum kits.
OOD_PROGRAMS: tuple[int, ...] = (1, 11, 19, 25, 32, 42, 49, 60, 69, 74, 81, 89, 99, 105, 114)
OOD_DRUM_KITS: tuple[int, ...] = (32, 40)  # Jazz, Brush
TRAIN_PROGRAMS: tuple[int, ...] = tuple(p for p in range(128) if p not in OOD_PROGRAMS)
TRAIN_DRUM_KITS: tuple[int, ...] = (0, 8, 16, 24, 25)  # Standard, Room, Power, Electronic, TR-808
PROGRAM_SETS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "train": (TRAIN_PROGRAMS, TRAIN_DRUM_KITS),
    "ood": (OOD_PROGRAMS, OOD_DRUM_KITS),
    "all": (tuple(range(128)), TRAIN_DRUM_KITS + OOD_DRUM_KITS),
}
MAX_REDRAWS = 12


@dataclasses.dataclass(frozen=True)
class PartInfo:
    """What the draw needs to know about a part: its source program/drum flag and pitch span."""

    program: int
    is_drum: bool
    low: int
    high: int


def program_set(name: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(pitched programs, drum kits) of a named set ('train', 'ood', 'all')."""
    if name not in PROGRAM_SETS:
        raise Mt3xError(f"program set: expected one of {sorted(PROGRAM_SETS)}, got {name!r}")
    return PROGRAM_SETS[name]


def octave_shift(low: int, high: int, program: int) -> int | None:
    """Semitones (a multiple of 12, |shift| <= 36) putting [low, high] inside the program's range,
    the smallest such; None when the span is wider than the range allows."""
    lo, hi = PROGRAM_RANGES[int(program)]
    for k in (0, 12, -12, 24, -24, 36, -36):
        if lo <= low + k and high + k <= hi:
            return k
    return None


def _classes_of(programs: Sequence[int]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for p in programs:
        out.setdefault(GM_FAMILIES[p // 8], []).append(int(p))
    return out


def choose_programs(parts: Sequence[PartInfo], rng: np.random.Generator, *, set_name: str = "train",
                    keep_bass: bool = True) -> list[tuple[InstrumentChoice, int]]:
    """Draws (instrument, octave transposition in semitones) for every part, Slakh-style.

    Drum parts keep their drum flag and get a kit from the set. A pitched part draws a class by
    `CLASS_WEIGHTS` (drums excluded; Bass kept when `keep_bass` and the source program is a bass),
    then a program of that class; the draw is repeated (up to MAX_REDRAWS) until an octave shift
    fits the part into the program's range; a part that never fits gets the widest-range program of
    the set (a piano when allowed), with the shift that fits or 0.
    """
    programs, kits = program_set(set_name)
    by_class = _classes_of(programs)
    names = [c for c in CLASS_WEIGHTS if c in by_class]
    weights = np.asarray([CLASS_WEIGHTS[c] for c in names], float)
    weights /= weights.sum()
    widest = max(programs, key=lambda p: (PROGRAM_RANGES[p][1] - PROGRAM_RANGES[p][0], -p))
    out: list[tuple[InstrumentChoice, int]] = []
    for part in parts:
        if part.is_drum:
            out.append((InstrumentChoice(int(kits[int(rng.integers(len(kits)))]), True, DRUMS_CLASS), 0))
            continue
        source_is_bass = keep_bass and 32 <= part.program < 40 and "Bass" in by_class
        picked = None
        for _ in range(MAX_REDRAWS):
            family = "Bass" if source_is_bass else names[int(rng.choice(len(names), p=weights))]
            options = by_class[family]
            program = options[int(rng.integers(len(options)))]
            shift = octave_shift(part.low, part.high, program)
            if shift is not None:
                picked = (program, shift)
                break
        if picked is None:
            picked = (widest, octave_shift(part.low, part.high, widest) or 0)
        program, shift = picked
        out.append((InstrumentChoice(int(program), False, inst_class(program, False)), int(shift)))
    return out

"""General MIDI programs, Slakh instrument classes and the recipes that give parts an instrument.

A recipe decides, for every part of a track, which GM program (and drum flag) renders it:

- `fixed`: one program per part index (`programs=(0, 48, 24, 33)`), cycling if there are more parts;
- `pool`: each part draws a program from `pool` with the track's seed;
- `classes`: each part draws one of MT3's Slakh classes (`SLAKH_CLASS_PROGRAMS`), rendered with that
  class's program;
- `source`: keep the program (and drum flag) the source MIDI gives the part;
- `slakh`: Slakh2100-style draws (a class by Slakh's class frequencies, a program of it from the
  `program_set`, an octave transposition into the program's range): see mt3x.data.programs.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import pretty_midi

from mt3x.errors import Mt3xError

# MT3's Slakh class -> GM program map (0-based programs).
SLAKH_CLASS_PROGRAMS: dict[str, int] = {
    "Acoustic Piano": 0, "Electric Piano": 4, "Chromatic Percussion": 8, "Organ": 16,
    "Acoustic Guitar": 24, "Clean Electric Guitar": 26, "Distorted Electric Guitar": 29,
    "Acoustic Bass": 32, "Electric Bass": 33, "Violin": 40, "Viola": 41, "Cello": 42,
    "Contrabass": 43, "Orchestral Harp": 46, "Timpani": 47, "String Ensemble": 48,
    "Synth Strings": 50, "Choir and Voice": 52, "Orchestral Hit": 55, "Trumpet": 56,
    "Trombone": 57, "Tuba": 58, "French Horn": 60, "Brass Section": 61, "Soprano/Alto Sax": 64,
    "Tenor Sax": 66, "Baritone Sax": 67, "Oboe": 68, "English Horn": 69, "Bassoon": 70,
    "Clarinet": 71, "Pipe": 73, "Synth Lead": 80, "Synth Pad": 88,
}

# Slakh's `inst_class` values: the sixteen General MIDI families of eight programs.
GM_FAMILIES: tuple[str, ...] = (
    "Piano", "Chromatic Percussion", "Organ", "Guitar", "Bass", "Strings", "Strings (continued)",
    "Brass", "Reed", "Pipe", "Synth Lead", "Synth Pad", "Synth Effects", "Ethnic", "Percussive",
    "Sound Effects",
)
DRUMS_CLASS = "Drums"

RECIPES = ("fixed", "pool", "classes", "source", "slakh")
PROGRAM_SET_NAMES = ("train", "ood", "all")


def inst_class(program: int, is_drum: bool) -> str:
    """Slakh `inst_class` of a GM program (0-127): its GM family, or 'Drums'."""
    if is_drum:
        return DRUMS_CLASS
    _check_program(program, "program")
    return GM_FAMILIES[program // 8]


def program_name(program: int, is_drum: bool) -> str:
    """Slakh `midi_program_name`: the GM instrument name ('Acoustic Grand Piano'), or 'Drums'."""
    if is_drum:
        return DRUMS_CLASS
    _check_program(program, "program")
    return pretty_midi.program_to_instrument_name(program)


def _check_program(program: int, field: str) -> None:
    if not 0 <= int(program) <= 127:
        raise Mt3xError(f"{field}: expected a General MIDI program in 0..127, got {program}")


@dataclasses.dataclass(frozen=True)
class InstrumentChoice:
    """What renders one part: GM program, drum flag and the class recorded in metadata."""

    program: int
    is_drum: bool
    inst_class: str


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How parts get instruments (see the module docstring).

    Attributes:
      kind: one of RECIPES.
      programs: `fixed` programs by part index.
      pool: `pool` programs to draw from.
      classes: `classes` names (keys of SLAKH_CLASS_PROGRAMS) to draw from.
      distinct: draws within a track avoid repeating an instrument while the pool allows.
      program_set: `slakh` programs and drum kits ('train', 'ood' or 'all'; mt3x.data.programs).
    """

    kind: str = "fixed"
    programs: tuple[int, ...] = (0, 48, 24, 33)
    pool: tuple[int, ...] = (0, 4, 24, 26, 32, 33, 40, 42, 48, 56, 68, 71, 73)
    classes: tuple[str, ...] = tuple(SLAKH_CLASS_PROGRAMS)
    distinct: bool = True
    program_set: str = "train"

    def __post_init__(self) -> None:
        if self.kind not in RECIPES:
            raise Mt3xError(f"recipe: expected one of {RECIPES}, got {self.kind!r}")
        for program in (*self.programs, *self.pool):
            _check_program(program, f"recipe {self.kind} program")
        unknown = [c for c in self.classes if c not in SLAKH_CLASS_PROGRAMS]
        if unknown:
            raise Mt3xError(f"recipe classes: unknown Slakh classes {unknown}; "
                            f"expected names from {sorted(SLAKH_CLASS_PROGRAMS)}")
        if self.program_set not in PROGRAM_SET_NAMES:
            raise Mt3xError(f"recipe program_set: expected one of {PROGRAM_SET_NAMES}, got {self.program_set!r}")
        if self.kind == "fixed" and not self.programs:
            raise Mt3xError("recipe fixed: needs at least one program")

    def choose(
        self, source_programs: Sequence[tuple[int, bool]], rng: np.random.Generator
    ) -> list[InstrumentChoice]:
        """Instruments for parts whose source (program, is_drum) pairs are given.

        Drum parts stay drums (program kept) under every recipe.
        """
        choices: list[InstrumentChoice] = []
        pitched = [i for i, (_, drum) in enumerate(source_programs) if not drum]
        drawn = self._draw(len(pitched), rng)
        by_part = dict(zip(pitched, drawn))
        for i, (program, is_drum) in enumerate(source_programs):
            if is_drum:
                choices.append(InstrumentChoice(int(program), True, DRUMS_CLASS))
            elif self.kind == "source":
                choices.append(InstrumentChoice(int(program), False, inst_class(program, False)))
            else:
                choices.append(by_part[i])
        return choices

    def _draw(self, count: int, rng: np.random.Generator) -> list[InstrumentChoice]:
        if self.kind == "fixed":
            return [_by_program(self.programs[i % len(self.programs)]) for i in range(count)]
        if self.kind in ("source", "slakh"):
            return [_by_program(0)] * count  # unused (slakh draws in mt3x.data.programs)
        options = list(self.pool) if self.kind == "pool" else list(self.classes)
        replace = not self.distinct or count > len(options)
        picks = rng.choice(len(options), size=count, replace=replace) if count else []
        if self.kind == "pool":
            return [_by_program(options[int(k)]) for k in picks]
        return [InstrumentChoice(SLAKH_CLASS_PROGRAMS[options[int(k)]], False,
                                 inst_class(SLAKH_CLASS_PROGRAMS[options[int(k)]], False))
                for k in picks]


def _by_program(program: int) -> InstrumentChoice:
    return InstrumentChoice(int(program), False, inst_class(program, False))

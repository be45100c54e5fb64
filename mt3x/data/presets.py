"""Named build configurations: `demo` (seconds to build; README and tests), `chorales`,
`synth-slakh` (what to train on) and `ood-eval` (out-of-domain evaluation).

- demo: 10 Bach chorales (6 train / 2 validation / 2 test pieces, one track each), 12 s windows
  plus 1 s of release, 16 kHz; soprano on piano, alto on string ensemble, tenor on nylon guitar,
  bass on electric bass (fingered); a generated drum part on every fourth track (tracks 1, 5, 9).
- chorales: every four-part Bach chorale in music21's corpus (about 340), two mixes each
  (same-piece with the parts drawn from a pool of instruments, and random-mix), whole pieces.
- synth-slakh: procedurally generated multi-instrument music (75 % of the tracks) and Bach from
  music21's corpus (25 %), 30-s tracks sized by `hours`, Slakh-style program draws from the
  training program set (every GM class), one of the training soundfonts per stem (TimGM6mb,
  FluidR3Mono, MuseScore General Lite), generated drums on half of the tracks without drums,
  per-stem loudness normalisation, random EQ, rooms and gains; splits 80/10/10.
- ood-eval: string quartets by Mozart, Haydn and Beethoven from music21's corpus (pieces with at
  least three parts), two 30-s windows per movement, the held-out program set and drum kits
  (mt3x.data.programs.OOD_PROGRAMS), the held-out soundfont (csound's sf_GMbank.sf2); every track
  in the test split. Its soundfonts, music and programs share nothing with synth-slakh.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

from mt3x.data import soundfonts
from mt3x.data.augment import Augmentation
from mt3x.data.builder import BuildReport, build
from mt3x.data.generator import GeneratorConfig
from mt3x.data.instruments import Recipe
from mt3x.data.plan import BuildConfig, BuildError

DEMO_PROGRAMS = (0, 48, 24, 33)


def demo_config(seed: int = 0, **overrides) -> BuildConfig:
    """The demo preset's configuration (keyword overrides replace fields)."""
    config = BuildConfig(
        source="music21", composer="bach", collection="chorales", num_parts=4, max_pieces=11,
        modes=("same-piece",), mixes_per_piece=1, recipe=Recipe(kind="fixed", programs=DEMO_PROGRAMS),
        segment_seconds=12.0, tail_seconds=1.0, drums_every=4, sample_rate=16000,
        split_counts=(6, 2, 2), seed=seed,
    )
    return dataclasses.replace(config, **overrides)


def chorales_config(seed: int = 0, **overrides) -> BuildConfig:
    """The chorales preset's configuration (keyword overrides replace fields)."""
    config = BuildConfig(
        source="music21", composer="bach", collection="chorales", num_parts=4,
        modes=("same-piece", "random-mix"), mixes_per_piece=2, recipe=Recipe(kind="pool"),
        segment_seconds=None, tail_seconds=1.0, sample_rate=16000,
        split_fractions=(0.8, 0.1, 0.1), seed=seed,
    )
    return dataclasses.replace(config, **overrides)


TRACK_SECONDS = 30.0
BACH_SHARE = 0.25
OOD_COMPOSERS = "mozart,haydn,beethoven"


def synth_slakh_config(seed: int = 0, hours: float = 1.0, **overrides) -> BuildConfig:
    """The synth-slakh preset: about `hours` of 30-s tracks (plus 1 s of release each)."""
    tracks = _tracks_for(hours)
    bach = int(round(BACH_SHARE * tracks))
    config = BuildConfig(
        source="music21", composer="bach", collection="chorales", num_parts=None, min_parts=2,
        max_pieces=bach, sample_pieces=True, generated_pieces=tracks - bach,
        generator=GeneratorConfig(seconds=TRACK_SECONDS), modes=("same-piece",), mixes_per_piece=1,
        recipe=Recipe(kind="slakh", program_set="train"), segment_seconds=TRACK_SECONDS,
        tail_seconds=1.0, drums_probability=0.5, soundfonts=soundfonts.TRAIN_SOUNDFONTS,
        augmentation=Augmentation(ir="random", ir_probability=0.5, wet=0.3, eq=True,
                                  stem_ir_probability=0.2, gain_db=(-6.0, 3.0)),
        sample_rate=16000, split_fractions=(0.8, 0.1, 0.1), seed=seed,
    )
    return dataclasses.replace(config, **overrides)


def ood_eval_config(seed: int = 0, hours: float = 0.2, **overrides) -> BuildConfig:
    """The ood-eval preset: about `hours` of 30-s windows of string quartets, all in `test`."""
    pieces = max(1, math.ceil(_tracks_for(hours) / 2))
    config = BuildConfig(
        source="music21", composer=OOD_COMPOSERS, collection=None, num_parts=None, min_parts=3,
        max_pieces=pieces, sample_pieces=True, purpose="evaluation", modes=("same-piece",),
        mixes_per_piece=2, recipe=Recipe(kind="slakh", program_set="ood"),
        segment_seconds=TRACK_SECONDS, tail_seconds=1.0, drums_probability=0.3,
        soundfonts=soundfonts.OOD_SOUNDFONTS,
        augmentation=Augmentation(ir="room", ir_probability=0.5, wet=0.3, eq=True, gain_db=(-3.0, 3.0)),
        sample_rate=16000, split_fractions=(0.0, 0.0, 1.0), seed=seed,
    )
    return dataclasses.replace(config, **overrides)


def _tracks_for(hours: float) -> int:
    if not hours > 0:
        raise BuildError(f"hours: expected a positive number of hours, got {hours}")
    return max(1, math.ceil(hours * 3600.0 / TRACK_SECONDS))


PRESETS = {"demo": demo_config, "chorales": chorales_config, "synth-slakh": synth_slakh_config,
           "ood-eval": ood_eval_config}
SIZED_PRESETS = ("synth-slakh", "ood-eval")
TRAINING_PRESETS = ("demo", "chorales", "synth-slakh")


def preset_config(name: str, seed: int = 0, hours: float | None = None, **overrides) -> BuildConfig:
    """A preset's configuration; `hours` sizes synth-slakh and ood-eval (None: their default)."""
    if name not in PRESETS:
        raise BuildError(f"preset: expected one of {sorted(PRESETS)}, got {name!r}")
    if hours is not None:
        if name not in SIZED_PRESETS:
            raise BuildError(f"hours: only presets {SIZED_PRESETS} are sized in hours, not {name!r}")
        return PRESETS[name](seed=seed, hours=hours, **overrides)
    return PRESETS[name](seed=seed, **overrides)


def build_demo(out_dir: str | os.PathLike, seed: int = 0, *, jobs: int = 1, **overrides) -> Path:
    """Builds (or reuses) the demo dataset under `out_dir` and returns its root.

    Usable from tests and notebooks: `read_split(build_demo(tmp), 'train')`.
    """
    report: BuildReport = build(demo_config(seed=seed, **overrides), out_dir, jobs=jobs, on_error="fail")
    del report
    return Path(out_dir)

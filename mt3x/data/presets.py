"""Named build configurations: `demo` (seconds to build; README and tests) and `chorales`.

- demo: 10 Bach chorales (6 train / 2 validation / 2 test pieces, one track each), 12 s windows
  plus 1 s of release, 16 kHz; soprano on piano, alto on string ensemble, tenor on nylon guitar,
  bass on electric bass (fingered); a generated drum part on every fourth track (tracks 1, 5, 9).
- chorales: every four-part Bach chorale in music21's corpus (about 340), two mixes each
  (same-piece with the parts drawn from a pool of instruments, and random-mix), whole pieces.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from mt3x.data.builder import BuildReport, build
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


PRESETS = {"demo": demo_config, "chorales": chorales_config}


def preset_config(name: str, seed: int = 0, **overrides) -> BuildConfig:
    if name not in PRESETS:
        raise BuildError(f"preset: expected one of {sorted(PRESETS)}, got {name!r}")
    return PRESETS[name](seed=seed, **overrides)


def build_demo(out_dir: str | os.PathLike, seed: int = 0, *, jobs: int = 1, **overrides) -> Path:
    """Builds (or reuses) the demo dataset under `out_dir` and returns its root.

    Usable from tests and notebooks: `read_split(build_demo(tmp), 'train')`.
    """
    report: BuildReport = build(demo_config(seed=seed, **overrides), out_dir, jobs=jobs, on_error="fail")
    del report
    return Path(out_dir)

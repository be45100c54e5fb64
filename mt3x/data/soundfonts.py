"""General MIDI soundfonts known by name, where Debian puts them, and which are usable here.

Training and evaluation use disjoint soundfonts of separate lineages:

| name        | file                         | Debian package                      | role       |
|-------------|------------------------------|-------------------------------------|------------|
| timgm6mb    | TimGM6mb.sf2 (6 MB)          | timgm6mb-soundfont (or pretty_midi) | training   |
| fluidr3mono | FluidR3Mono_GM.sf3 (23 MB)   | fluidr3mono-gm-soundfont            | training   |
| musescore   | MuseScore_General_Lite.sf3   | musescore-general-soundfont-small   | training   |
| gmbank      | sf_GMbank.sf2 (4 MB)         | csound-soundfont                    | evaluation |

A soundfont is named either by one of these names or by a path to a .sf2/.sf3 file. TinySoundFont
(the pure-pip fallback renderer) cannot decode .sf3 (Ogg Vorbis) samples: `usable` drops such
soundfonts with a message when that backend renders.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Sequence

from mt3x.data import render as render_lib

KNOWN: dict[str, tuple[str, tuple[str, ...]]] = {
    "timgm6mb": ("timgm6mb-soundfont", ("/usr/share/sounds/sf2/TimGM6mb.sf2",)),
    "fluidr3mono": ("fluidr3mono-gm-soundfont", ("/usr/share/sounds/sf3/FluidR3Mono_GM.sf3",
                                                 "/usr/share/fluidr3mono-gm-soundfont/FluidR3Mono_GM.sf3")),
    "musescore": ("musescore-general-soundfont-small", ("/usr/share/sounds/sf3/MuseScore_General_Lite.sf3",)),
    "gmbank": ("csound-soundfont", ("/usr/share/sounds/sf2/sf_GMbank.sf2", "/usr/share/samples/sf_GMbank.sf2")),
}
TRAIN_SOUNDFONTS: tuple[str, ...] = ("timgm6mb", "fluidr3mono", "musescore")
OOD_SOUNDFONTS: tuple[str, ...] = ("gmbank",)


def locate(name: str) -> Path:
    """The file of a known soundfont name, or `name` itself as a path; checked (RIFF sfbk).

    Raises:
      RenderError: unknown name and no such file, or the known soundfont's package is missing.
    """
    if name in KNOWN:
        package, paths = KNOWN[name]
        if name == "timgm6mb":
            paths = paths + (str(render_lib.default_soundfont()),)
        for path in paths:
            if Path(path).is_file():
                return render_lib.check_soundfont(path)
        raise render_lib.RenderError(f"{paths[0]}: soundfont {name!r} not found; install it with "
                                     f"`apt-get install {package}` (./run setup does)")
    return render_lib.check_soundfont(name)


def usable(names: Sequence[str], backend: str, *, quiet: bool = False) -> tuple[Path, ...]:
    """Paths of `names` that `backend` ('fluidsynth' or 'tinysoundfont') can render.

    TinySoundFont cannot read .sf3: those are skipped with a message on stderr.

    Raises:
      RenderError: a soundfont is missing, or none is left.
    """
    paths = [locate(str(n)) for n in names]
    kept = []
    for path in paths:
        if backend == "tinysoundfont" and path.suffix.lower() == ".sf3":
            if not quiet:
                print(f"note: {path}: skipped, TinySoundFont cannot read .sf3 (Ogg Vorbis) soundfonts; "
                      f"install libfluidsynth3 to render with it", file=sys.stderr)
            continue
        kept.append(path)
    if not kept:
        raise render_lib.RenderError(f"{', '.join(map(str, paths))}: no soundfont the {backend} renderer can read")
    return tuple(kept)


def describe(path: str | os.PathLike) -> str:
    """The soundfont's file name, as recorded in metadata `plugin_name`."""
    return Path(path).name

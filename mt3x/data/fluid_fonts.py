"""Compressed (.sf3) soundfonts decoded once per process and shared by FluidSynth synthesizers.

With dynamic sample loading, FluidSynth decodes a preset's Ogg Vorbis samples at every
`program_select`: 6-65 ms per program for FluidR3Mono_GM.sf3 and over a second for the piano of
MuseScore_General_Lite.sf3, paid again by every fresh synthesizer (one per stem). Here the first
use in a process loads the whole .sf3 into a holder synthesizer (0.9 s and 1.4 s, ~150 MB each)
and every render adds that loaded `fluid_sfont_t` to its own fresh synthesizer
(`fluid_synth_add_sfont`) and removes it before deleting the synthesizer
(`fluid_synth_remove_sfont`, which leaves the font alone). Renders stay independent of each other
and identical to a synthesizer that loaded the font itself (tested byte for byte). .sf2 files are
not shared: their presets select in under 4 ms, and FluidSynth's sample data of some .sf2 drum
kits differs between dynamic and full loading, which would change existing builds.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
from pathlib import Path
from typing import Any

SHARED_SUFFIXES = (".sf3",)
_FLUID_WARN = 2  # FluidSynth's log level of warnings

_holders: dict[tuple[str, int], tuple[Any, int]] = {}


def is_shared(path: Path) -> bool:
    """Whether renders of `path` use the process-wide loaded font (compressed soundfonts)."""
    return path.suffix.lower() in SHARED_SUFFIXES


@functools.lru_cache(maxsize=1)
def _library() -> Any:
    """libfluidsynth with the signatures of the calls used here declared (once)."""
    import fluidsynth

    lib = fluidsynth._fl
    for name in ("fluid_synth_add_sfont", "fluid_synth_remove_sfont"):
        function = getattr(lib, name)
        function.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        function.restype = ctypes.c_int
    lib.fluid_synth_get_sfont_by_id.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.fluid_synth_get_sfont_by_id.restype = ctypes.c_void_p
    lib.fluid_set_log_function.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    lib.fluid_set_log_function.restype = ctypes.c_void_p
    return lib


def loaded_font(path: Path, sample_rate: int, settings: dict[str, Any]) -> int | None:
    """The address of `path`'s `fluid_sfont_t`, fully loaded by this process's holder
    synthesizer for (path, sample_rate) (made on first use with `settings`); None when
    FluidSynth cannot load the file."""
    key = (str(path), int(sample_rate))
    if key not in _holders:
        import fluidsynth

        holder = fluidsynth.Synth(gain=0.2, samplerate=float(sample_rate),
                                  **{**settings, "synth.dynamic-sample-loading": 0})
        font_id = holder.sfload(str(path))
        if font_id < 0:
            holder.delete()
            return None
        _holders[key] = (holder, _library().fluid_synth_get_sfont_by_id(holder.synth, font_id))
    return _holders[key][1]


def add_font(synth: Any, font: int) -> int:
    """Adds a loaded font to `synth` (a fluidsynth.Synth); returns its font id there."""
    return _library().fluid_synth_add_sfont(synth.synth, font)


def remove_font(synth: Any, font: int) -> None:
    """Takes a font added by `add_font` off `synth` without freeing it. (FluidSynth then
    re-selects a preset on each of the synthesizer's 256 channels and warns for every one that
    finds none; those warnings are muted for the call.)"""
    lib = _library()
    previous = lib.fluid_set_log_function(_FLUID_WARN, None, None)
    try:
        lib.fluid_synth_remove_sfont(synth.synth, font)
    finally:
        lib.fluid_set_log_function(_FLUID_WARN, previous, None)


@atexit.register
def release_all() -> None:
    """Deletes the holder synthesizers and their fonts (at exit, or to free the memory)."""
    while _holders:
        holder, _ = _holders.popitem()[1]
        holder.delete()

"""Rendering one instrument's MIDI to mono audio with a General MIDI soundfont.

Backends: FluidSynth in-process (pyfluidsynth over libfluidsynth, float output, reverb and chorus
off, one fresh synthesizer per stem, so a render depends only on its input and is byte-reproducible;
compressed .sf3 fonts are decoded once per process and shared, `mt3x.data.fluid_fonts`)
and, when libfluidsynth cannot be loaded, TinySoundFont (`pip install --no-deps tinysoundfont`).
`backend='auto'` picks FluidSynth when available. The backend's name goes into the metadata.
"""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pretty_midi

from mt3x.data import fluid_fonts
from mt3x.errors import Mt3xError

DRUM_CHANNEL = 9
DRUM_BANK = 128
BACKENDS = ("auto", "fluidsynth", "tinysoundfont")


class RenderError(Mt3xError):
    """A soundfont is missing or unusable, or lacks a program a stem needs."""


def default_soundfont() -> Path:
    """TimGM6mb.sf2, the small General MIDI soundfont bundled with pretty_midi."""
    return Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"


def check_soundfont(path: str | os.PathLike | None) -> Path:
    """Returns the soundfont path (default when None) after checking it exists and looks valid."""
    path = default_soundfont() if path is None else Path(path)
    if not path.is_file():
        raise RenderError(f"{path}: soundfont not found")
    if path.suffix.lower() not in (".sf2", ".sf3"):
        raise RenderError(f"{path}: expected a .sf2 or .sf3 soundfont")
    with open(path, "rb") as handle:
        header = handle.read(12)
    if header[:4] != b"RIFF" or header[8:12] != b"sfbk":
        raise RenderError(f"{path}: not a SoundFont file (no RIFF sfbk header)")
    return path


@functools.lru_cache(maxsize=1)
def fluidsynth_available() -> bool:
    """Whether pyfluidsynth imports and finds libfluidsynth."""
    try:
        import fluidsynth  # noqa: F401  (raises ImportError when the shared library is missing)
    except (ImportError, OSError):
        return False
    return True


def resolve_backend(backend: str = "auto") -> str:
    """'fluidsynth' or 'tinysoundfont' for `backend` ('auto' prefers FluidSynth)."""
    if backend not in BACKENDS:
        raise RenderError(f"renderer: expected one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "fluidsynth" if fluidsynth_available() else "tinysoundfont"
    if backend == "fluidsynth" and not fluidsynth_available():
        raise RenderError("renderer fluidsynth: libfluidsynth is not installed "
                          "(apt-get install libfluidsynth3) — or use --renderer tinysoundfont")
    if backend == "tinysoundfont":
        try:
            import tinysoundfont  # noqa: F401
        except ImportError as err:
            raise RenderError("renderer tinysoundfont: run `pip install --no-deps tinysoundfont`") from err
    return backend


def _events(inst: pretty_midi.Instrument, sample_rate: int) -> list[tuple[int, int, tuple]]:
    """(sample, order, event) sorted; at one instant: controls, then note-offs, then note-ons."""
    events: list[tuple[int, int, tuple]] = []
    for cc in inst.control_changes:
        events.append((int(round(cc.time * sample_rate)), 0, ("cc", cc.number, cc.value)))
    for bend in inst.pitch_bends:
        events.append((int(round(bend.time * sample_rate)), 0, ("bend", bend.pitch)))
    for note in inst.notes:
        events.append((int(round(note.end * sample_rate)), 1, ("off", note.pitch)))
        events.append((int(round(note.start * sample_rate)), 2, ("on", note.pitch, note.velocity)))
    events.sort(key=lambda e: (e[0], e[1], e[2][1:]))
    return events


def _play(inst: pretty_midi.Instrument, sample_rate: int, num_samples: int,
          advance: Callable[[int], None], handlers: Mapping[str, Callable[..., Any]]) -> None:
    """Renders `inst`'s events in time order: `advance(sample)` synthesises up to each event, then
    `handlers[kind](*args)` sends it ('on', 'off', 'cc', 'bend'); finally advances to the end."""
    for sample, _, event in _events(inst, sample_rate):
        if sample >= num_samples:
            break
        advance(sample)
        handlers[event[0]](*event[1:])
    advance(num_samples)


def render_instrument(
    inst: pretty_midi.Instrument,
    *,
    num_samples: int,
    sample_rate: int,
    soundfont: str | os.PathLike | None = None,
    backend: str = "auto",
    share_fonts: bool = True,
) -> np.ndarray:
    """Renders one instrument alone.

    Args:
      inst: notes in seconds, `program` (0-127) and `is_drum` (drums use bank 128, channel 10).
      num_samples: output length; notes after it are dropped, sound is cut at it.
      sample_rate: in Hz (FluidSynth accepts 8000..96000).
      soundfont: .sf2/.sf3 path; None = TimGM6mb.sf2 from pretty_midi.
      backend: 'auto', 'fluidsynth' or 'tinysoundfont'.
      share_fonts: FluidSynth renders an .sf3 with the font this process decoded once
        (`mt3x.data.fluid_fonts`; same samples); False loads the preset's samples afresh.

    Returns:
      `f32[num_samples]` mono (the average of the synthesizer's left and right outputs), linear
      amplitude at the synthesizer's gain (FluidSynth synth.gain 0.2); not normalised.

    Raises:
      RenderError: missing/invalid soundfont, or the soundfont lacks the program.
    """
    path = check_soundfont(soundfont)
    name = resolve_backend(backend)
    if name == "fluidsynth":
        stereo = _render_fluidsynth(inst, num_samples, sample_rate, path,
                                    share_fonts and fluid_fonts.is_shared(path))
    else:
        stereo = _render_tinysoundfont(inst, num_samples, sample_rate, path)
    return (0.5 * (stereo[:, 0] + stereo[:, 1])).astype(np.float32)


def _missing_program(path: Path, inst: pretty_midi.Instrument) -> RenderError:
    bank = DRUM_BANK if inst.is_drum else 0
    kind = "drum kit" if inst.is_drum else "program"
    return RenderError(f"{path}: soundfont has no {kind} {inst.program} in bank {bank} "
                       f"({pretty_midi.program_to_instrument_name(inst.program) if not inst.is_drum else 'drums'})")


def _render_fluidsynth(inst: pretty_midi.Instrument, num_samples: int, sample_rate: int,
                       path: Path, share_font: bool) -> np.ndarray:
    import fluidsynth

    settings = {
        "synth.reverb.active": 0, "synth.chorus.active": 0, "synth.cpu-cores": 1,
        "synth.polyphony": 256,
        # .sf2: load only the selected preset's samples. .sf3: the font is decoded once per
        # process and shared (`fluid_fonts`), so this synthesizer loads nothing itself.
        "synth.dynamic-sample-loading": 0 if share_font else 1,
    }
    shared = fluid_fonts.loaded_font(path, sample_rate, settings) if share_font else None
    if share_font and shared is None:
        raise RenderError(f"{path}: FluidSynth cannot load this soundfont")
    synth = fluidsynth.Synth(gain=0.2, samplerate=float(sample_rate), **settings)
    sfid = -1
    try:
        sfid = fluid_fonts.add_font(synth, shared) if shared else synth.sfload(str(path))
        if sfid < 0:
            raise RenderError(f"{path}: FluidSynth cannot load this soundfont")
        channel = DRUM_CHANNEL if inst.is_drum else 0
        bank = DRUM_BANK if inst.is_drum else 0
        if synth.program_select(channel, sfid, bank, int(inst.program)) < 0:
            raise _missing_program(path, inst)
        # The preset must really exist (FluidSynth may fall back to another one silently).
        can_list = getattr(fluidsynth, "fluid_synth_get_sfont_by_id", None) is not None
        if can_list and not synth.sfpreset_name(sfid, bank, int(inst.program)):
            raise _missing_program(path, inst)
        write_float = fluidsynth._fl.fluid_synth_write_float
        write_float.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int,
                                ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        write_float.restype = ctypes.c_int
        out = np.zeros((num_samples, 2), np.float32)
        cursor = 0

        def advance(to: int) -> None:
            nonlocal cursor
            to = min(to, num_samples)
            while cursor < to:
                n = min(to - cursor, 1 << 16)
                block = out[cursor:cursor + n]
                ptr = block.ctypes.data
                write_float(synth.synth, n, ptr, 0, 2, ptr + 4, 0, 2)
                cursor += n

        _play(inst, sample_rate, num_samples, advance, {
            "on": lambda pitch, velocity: synth.noteon(channel, pitch, velocity),
            "off": lambda pitch: synth.noteoff(channel, pitch),
            "cc": lambda number, value: synth.cc(channel, number, value),
            "bend": lambda value: synth.pitch_bend(channel, value)})
        return out
    finally:
        if shared and sfid >= 0:
            fluid_fonts.remove_font(synth, shared)
        synth.delete()


def _render_tinysoundfont(inst: pretty_midi.Instrument, num_samples: int, sample_rate: int,
                          path: Path) -> np.ndarray:
    import tinysoundfont

    if path.suffix.lower() == ".sf3":
        raise RenderError(f"{path}: TinySoundFont cannot read .sf3 (Ogg Vorbis) soundfonts; "
                          f"install libfluidsynth3 or use an .sf2")
    synth = tinysoundfont.Synth(gain=-14.0, samplerate=int(sample_rate))  # about FluidSynth's 0.2
    try:
        sfid = synth.sfload(str(path))
    except Exception as err:
        raise RenderError(f"{path}: TinySoundFont cannot load this soundfont ({err})") from err
    channel = DRUM_CHANNEL if inst.is_drum else 0
    try:
        synth.program_select(channel, sfid, DRUM_BANK if inst.is_drum else 0, int(inst.program),
                             is_drums=bool(inst.is_drum))
    except (RuntimeError, Exception) as err:
        raise _missing_program(path, inst) from err
    out = np.zeros((num_samples, 2), np.float32)
    cursor = 0

    def advance(to: int) -> None:
        nonlocal cursor
        to = min(to, num_samples)
        if to > cursor:
            block = np.frombuffer(synth.generate(to - cursor), dtype=np.float32).reshape(-1, 2)
            out[cursor:to] = block[: to - cursor]
            cursor = to

    _play(inst, sample_rate, num_samples, advance, {
        "on": lambda pitch, velocity: synth.noteon(channel, pitch, velocity),
        "off": lambda pitch: synth.noteoff(channel, pitch),
        "cc": lambda number, value: synth.control_change(channel, number, value),
        "bend": lambda value: synth.pitchbend(channel, value + 8192)})
    return out

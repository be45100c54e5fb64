"""Builds a synthetic dataset in Slakh2100's layout: load pieces, plan, render, write atomically.

```
OUT/build.yaml                      the configuration (a rerun must match it; finished tracks kept)
OUT/{train,validation,test}/TrackNNNNN/
    mix.flac  all_src.mid  metadata.yaml  stems/S00.flac ...  MIDI/S00.mid ...
```
Per track: each stem is rendered alone from MIDI that was first written to and re-read from its
MIDI file (so the file describes the audio to the tick), loudness-normalised, augmented, then one
overall gain puts the peak at `target_peak_db`; stems are quantised to int16 and the mix is the
integer sum of the quantised stems, so the mix read back equals the sum of the stems read back.
A track is written into a temporary folder and renamed, so a killed build leaves no partial track
and a rerun skips finished tracks. Same configuration and seed -> byte-identical files.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Iterable

import numpy as np
import pretty_midi
import yaml

from mt3x.audio.io import quantize_pcm16, write_audio
from mt3x.data import generator as generator_lib
from mt3x.data import render as render_lib
from mt3x.data import soundfonts as soundfonts_lib
from mt3x.data import sources
from mt3x.data.augment import augment_stems
from mt3x.data.loudness import integrated_loudness
from mt3x.data.plan import SPLITS, BuildConfig, BuildError, TrackPlan, plan_tracks
from mt3x.errors import Mt3xError
from mt3x.util.files import atomic_path
from mt3x.util.parallel import parallel_map

MANIFEST = "build.yaml"
BUILDER_VERSION = 1


@dataclasses.dataclass
class BuildReport:
    """What a build did. `skipped` maps a reason to the items (piece ids or track ids) it hit."""

    out_dir: Path
    built: list[str] = dataclasses.field(default_factory=list)
    existing: list[str] = dataclasses.field(default_factory=list)
    skipped_tracks: dict[str, str] = dataclasses.field(default_factory=dict)
    skipped_pieces: dict[str, str] = dataclasses.field(default_factory=dict)
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0

    def summary(self) -> str:
        lines = [f"{self.out_dir}: built {len(self.built)} tracks, kept {len(self.existing)} finished "
                 f"tracks, skipped {len(self.skipped_tracks)} tracks and {len(self.skipped_pieces)} pieces; "
                 f"{self.audio_seconds:.1f} s of audio rendered in {self.wall_seconds:.1f} s"]
        reasons = collections.Counter(_reason(m) for m in
                                      [*self.skipped_tracks.values(), *self.skipped_pieces.values()])
        for reason, count in reasons.most_common():
            lines.append(f"  skipped {count}: {reason}")
        for item, message in [*self.skipped_pieces.items(), *self.skipped_tracks.items()]:
            lines.append(f"  - {item}: {message}")
        return "\n".join(lines)


def _reason(message: str) -> str:
    """The problem part of 'path: problem (details)'."""
    text = message.split(": ", 1)[-1]
    return text.split(" (", 1)[0]


# ----------------------------------------------------------------------------- one track

def _yaml_dump(data: dict) -> str:
    return yaml.safe_dump(data, sort_keys=True, default_flow_style=False, allow_unicode=True, width=100)


def _midi_bytes(instruments: Iterable[pretty_midi.Instrument]) -> bytes:
    midi = pretty_midi.PrettyMIDI(resolution=480, initial_tempo=120.0)
    for inst in instruments:
        copy = pretty_midi.Instrument(program=inst.program, is_drum=inst.is_drum, name=inst.name)
        copy.notes = list(inst.notes)
        copy.control_changes = list(inst.control_changes)
        copy.pitch_bends = list(inst.pitch_bends)
        midi.instruments.append(copy)
    buffer = io.BytesIO()
    midi.write(buffer)
    return buffer.getvalue()


def _reread(midi: bytes) -> list[pretty_midi.Instrument]:
    return pretty_midi.PrettyMIDI(io.BytesIO(midi)).instruments


def render_track(plan: TrackPlan, config: BuildConfig, track_dir: Path) -> float:
    """Renders and writes one track into `track_dir` (an empty folder). Returns audio seconds.

    Raises:
      Mt3xError (RenderError, BuildError, AudioError): the track cannot be made.
    """
    sr = config.sample_rate
    backend = render_lib.resolve_backend(config.renderer)
    if not plan.stems:
        raise BuildError(f"{plan.track_id}: no stem has notes")
    num_samples = int(np.ceil((plan.length_seconds + config.tail_seconds) * sr))
    (track_dir / "stems").mkdir()
    (track_dir / "MIDI").mkdir()
    names = [f"S{k:02d}" for k in range(len(plan.stems))]
    audio: list[np.ndarray] = []
    for name, stem in zip(names, plan.stems):
        stem.instrument.name = name
        midi = _midi_bytes([stem.instrument])
        (track_dir / "MIDI" / f"{name}.mid").write_bytes(midi)
        (reread,) = _reread(midi)
        audio.append(render_lib.render_instrument(reread, num_samples=num_samples, sample_rate=sr,
                                                  soundfont=stem.soundfont or None, backend=backend))
    (track_dir / "all_src.mid").write_bytes(_midi_bytes(s.instrument for s in plan.stems))

    if config.normalize_loudness:
        for k, stem_audio in enumerate(audio):
            loudness = integrated_loudness(stem_audio, sr)
            if np.isfinite(loudness):
                audio[k] = stem_audio * np.float32(10.0 ** ((config.normalization_factor - loudness) / 20.0))
    audio, aug_track, aug_stems = augment_stems(audio, config.augmentation, sr, plan.seed)

    float_mix = np.sum(np.stack(audio).astype(np.float64), axis=0)
    peak = max(float(np.abs(float_mix).max()), max(float(np.abs(a).max()) for a in audio))
    if not np.isfinite(peak) or peak <= 0.0:
        raise BuildError(f"{plan.track_id}: rendering produced silence (sources {plan.source_pieces})")
    target = 10.0 ** (config.target_peak_db / 20.0)
    gain = target / peak
    for _ in range(8):  # quantisation can push the integer sum a few steps past full scale
        stems_int = [quantize_pcm16(a.astype(np.float64) * gain) for a in audio]
        mix_int = np.sum(np.stack(stems_int).astype(np.int64), axis=0)
        if np.abs(mix_int).max() <= 32767:
            break
        gain *= 0.99
    else:
        raise BuildError(f"{plan.track_id}: cannot find a gain that keeps the mix within 16 bits")

    suffix = f".{config.audio_format}"
    stem_meta = {}
    for name, stem, ints, aug in zip(names, plan.stems, stems_int, aug_stems):
        write_audio(track_dir / "stems" / f"{name}{suffix}", ints, sr)
        stem_meta[name] = {
            "audio_rendered": True,
            "inst_class": stem.inst_class,
            "integrated_loudness": _round(integrated_loudness(ints.astype(np.float32) / 32768.0, sr)),
            "is_drum": bool(stem.is_drum),
            "midi_program_name": _program_name(stem),
            "midi_saved": True,
            "plugin_name": _soundfont_name(stem.soundfont),
            "program_num": int(stem.program),
            "source_piece": stem.source_piece,
            "source_part": stem.source_part,
            "transpose": int(stem.transpose),
            "augmentation": aug,
        }
    write_audio(track_dir / f"mix{suffix}", mix_int.astype(np.int16), sr)
    rng = np.random.default_rng([config.seed, plan.index, 0x0D])
    metadata = {
        "UUID": str(uuid.UUID(bytes=rng.bytes(16), version=4)).replace("-", ""),
        "audio_dir": "stems",
        "lmd_midi_dir": plan.stems[0].source_piece,
        "midi_dir": "MIDI",
        "normalization_factor": float(config.normalization_factor),
        "normalized": bool(config.normalize_loudness),
        "overall_gain": _round(gain),
        "target_peak": float(config.target_peak_db),
        "stems": stem_meta,
        "source_pieces": plan.source_pieces,
        "mode": plan.mode,
        "augmentation": aug_track if config.augmentation.active else None,
        "renderer": backend,
        "soundfont": ", ".join(sorted({_soundfont_name(s.soundfont) for s in plan.stems})),
        "tempo_bpm": float(plan.tempo_bpm),
        "sample_rate": int(sr),
        "seed": int(plan.seed),
        "build_seed": int(config.seed),
        "builder_version": BUILDER_VERSION,
    }
    (track_dir / "metadata.yaml").write_text(_yaml_dump(metadata))
    return num_samples / sr


def _round(value: float) -> float:
    return float(value) if not np.isfinite(value) else float(round(float(value), 6))


def _soundfont_name(path: str) -> str:
    return soundfonts_lib.describe(path or render_lib.default_soundfont())


def _program_name(stem) -> str:
    from mt3x.data.instruments import program_name
    return program_name(stem.program, stem.is_drum)


# ----------------------------------------------------------------------------- workers

def _load_worker(args: tuple[str, str | None, generator_lib.GeneratorConfig]
                 ) -> tuple[str, sources.Piece | None, str | None]:
    piece_id, midi_dir, generator_config = args
    try:
        scheme, _, name = piece_id.partition(":")
        if scheme == "generated":
            return piece_id, generator_lib.generate_piece(int(name), generator_config), None
        return piece_id, sources.load_piece(piece_id, midi_dir=midi_dir), None
    except Mt3xError as err:
        return piece_id, None, str(err)


def _track_worker(args: tuple[TrackPlan, BuildConfig, str]) -> tuple[str, str, float, str | None]:
    plan, config, root = args
    final = Path(root) / plan.split / plan.track_id
    if final.is_dir():
        return plan.track_id, "existing", 0.0, None
    try:
        with atomic_path(final, is_dir=True) as tmp:
            seconds = render_track(plan, config, tmp)
        return plan.track_id, "built", seconds, None
    except Mt3xError as err:
        return plan.track_id, "skipped", 0.0, str(err)


def _map(func, items: list, jobs: int, desc: str, progress: bool):
    return parallel_map(func, items, jobs, desc=desc, progress=progress)


# ----------------------------------------------------------------------------- the build

def list_pieces(config: BuildConfig) -> list[str]:
    """Piece ids the configuration's source offers (before part-count filtering), then the
    generated pieces (`generated:<seed>`)."""
    if config.source == "midi-dir":
        ids = sources.list_midi_dir(config.midi_dir)
    elif config.source == "music21":
        ids = sources.list_music21_corpus(composer=config.composer, collection=config.collection)
    else:
        ids = []
    if config.max_pieces and config.sample_pieces and len(ids) > config.max_pieces:
        keep = np.random.default_rng([config.seed, 0x5A3]).choice(len(ids), config.max_pieces, replace=False)
        ids = [ids[int(k)] for k in sorted(keep)]
    elif config.max_pieces:
        ids = ids[: config.max_pieces]
    return ids + [f"generated:{generator_lib.piece_seed(config.seed, i)}" for i in range(config.generated_pieces)]


def _check_manifest(root: Path, config: BuildConfig, overwrite: bool) -> None:
    manifest = root / MANIFEST
    wanted = {"builder_version": BUILDER_VERSION, "config": config.to_dict()}
    if manifest.is_file() and not overwrite:
        try:
            found = yaml.safe_load(manifest.read_text())
        except yaml.YAMLError:
            found = None
        if found != wanted:
            raise BuildError(f"{manifest}: this folder holds a build with another configuration; "
                             f"use a new --out, or --overwrite to start again")
    if overwrite:
        for split in SPLITS:
            shutil.rmtree(root / split, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    with atomic_path(manifest) as tmp:
        tmp.write_text(_yaml_dump(wanted))
    for split in SPLITS:  # temporary folders of a killed build
        for leftover in (root / split).glob(".Track*.tmp-*") if (root / split).is_dir() else []:
            shutil.rmtree(leftover, ignore_errors=True)


def build(
    config: BuildConfig,
    out_dir: str | os.PathLike,
    *,
    jobs: int = 1,
    on_error: str = "skip",
    progress: bool = False,
    overwrite: bool = False,
) -> BuildReport:
    """Builds (or resumes) a synthetic Slakh2100-layout dataset.

    Args:
      config: what to build.
      out_dir: the dataset root (train/ validation/ test/ go inside).
      jobs: worker processes (1 = in this process).
      on_error: 'skip' records bad pieces/tracks in the report and goes on; 'fail' raises.
      progress: show tqdm progress bars.
      overwrite: delete earlier tracks of a different configuration instead of refusing.

    Raises:
      BuildError / MidiError / RenderError: bad configuration, a missing soundfont, nothing to build,
        or (on_error='fail') the first bad piece or track, naming it.
    """
    if on_error not in ("skip", "fail"):
        raise BuildError(f"on_error: expected 'skip' or 'fail', got {on_error!r}")
    started = time.perf_counter()
    backend = render_lib.resolve_backend(config.renderer)
    if config.soundfonts:
        soundfont_paths = [str(p) for p in soundfonts_lib.usable(config.soundfonts, backend)]
    else:
        soundfont_paths = [str(render_lib.check_soundfont(config.soundfont))]
    root = Path(out_dir)
    report = BuildReport(out_dir=root)
    piece_ids = list_pieces(config)
    pieces: dict[str, sources.Piece] = {}
    items = [(pid, config.midi_dir, config.generator) for pid in piece_ids]
    for piece_id, piece, error in _map(_load_worker, items, jobs, "load pieces", progress):
        if piece is not None and config.num_parts is not None and len(piece.parts) != config.num_parts:
            continue  # filtered out, not an error
        if piece is not None and config.min_parts is not None and len(piece.parts) < config.min_parts:
            continue
        if error is not None:
            if on_error == "fail":
                raise BuildError(f"{error} (use --on-error skip to skip bad pieces)")
            report.skipped_pieces[piece_id] = error
            continue
        pieces[piece_id] = piece
    if not pieces:
        raise BuildError(f"no usable pieces: {len(piece_ids)} listed, none loaded with "
                         f"num_parts={config.num_parts}; skipped: {report.skipped_pieces}")
    pieces = dict(sorted(pieces.items()))
    plans = plan_tracks(pieces, config, soundfont_paths)
    _check_manifest(root, config, overwrite)
    items = [(plan, config, str(root)) for plan in plans]
    try:
        for track_id, status, seconds, error in _map(_track_worker, items, jobs, "render tracks", progress):
            if status == "built":
                report.built.append(track_id)
                report.audio_seconds += seconds
            elif status == "existing":
                report.existing.append(track_id)
            else:
                if on_error == "fail":
                    raise BuildError(f"{track_id}: {error}")
                report.skipped_tracks[track_id] = error
    finally:
        report.built.sort()
        report.existing.sort()
        report.wall_seconds = time.perf_counter() - started
    return report

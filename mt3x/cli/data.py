"""mt3x-data: build synthetic Slakh2100-layout datasets and inspect any Slakh-layout folder.

```
mt3x-data build --preset demo --out data/demo [--seed 0] [--jobs 2]
mt3x-data build --preset chorales --out data/chorales --jobs 8 --reverb random --noise-snr 20,40
mt3x-data build --midi-dir my_midis/ --recipe source --out data/mine
mt3x-data build --preset synth-slakh --hours 10 --out data/synth --jobs 2   # train on this
mt3x-data build --preset ood-eval --out data/ood --jobs 2                   # evaluate on this
mt3x-data info data/demo            # tracks, hours, soundfonts, classes, programs, tempi, notes/s
mt3x-data check data/demo           # reads every file; exit 1 when something is broken
mt3x-data cache data/demo --out data/demo_cache --splits train,validation --jobs 2
                                    # tokenised pieces as ArrayRecord shards (Grain training)
```
"""

from __future__ import annotations

from mt3x.util.quiet import cli_args, quiet_startup

quiet_startup()  # first: TensorFlow, pydub and Orbax stay quiet only if set before they load

import argparse
import collections
import dataclasses
import sys
from pathlib import Path

import numpy as np
import pretty_midi
import yaml

from mt3x.data.presets import PRESETS
from mt3x.errors import Mt3xError
from mt3x.util.files import check_output_path


def _floats(text: str) -> tuple[float, float]:
    values = [float(v) for v in text.split(",") if v.strip()]
    if len(values) == 1:
        values = values * 2
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"expected LOW[,HIGH], got {text!r}")
    return values[0], values[1]


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from err


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from err
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def _strings(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mt3x-data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="render a synthetic dataset in Slakh2100's layout")
    b.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    b.add_argument("--hours", type=float, help="synth-slakh / ood-eval: hours of audio (30-s tracks)")
    b.add_argument("--out", required=True, type=Path, help="dataset root")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--jobs", type=int, default=1, help="worker processes")
    b.add_argument("--on-error", choices=["skip", "fail"], default="skip")
    b.add_argument("--overwrite", action="store_true", help="replace a build of another configuration")
    b.add_argument("--no-progress", action="store_true")
    b.add_argument("--soundfont", help=".sf2/.sf3 path (default: TimGM6mb.sf2 from pretty_midi)")
    b.add_argument("--soundfonts", type=_strings,
                   help="one drawn per stem: names (timgm6mb, fluidr3mono, musescore, gmbank) or paths")
    b.add_argument("--renderer", choices=["auto", "fluidsynth", "tinysoundfont"])
    b.add_argument("--sample-rate", type=int, help="Hz (16000 for MT3, 44100 like Slakh)")
    b.add_argument("--audio-format", choices=["flac", "wav"])
    b.add_argument("--midi-dir", help="use every .mid file under this folder as a piece")
    b.add_argument("--composer", help="music21 corpus composer (e.g. bach, mozart)")
    b.add_argument("--collection", choices=["chorales", "none"], help="music21 collection filter")
    b.add_argument("--num-parts", type=int, help="keep pieces with this many parts (0: any)")
    b.add_argument("--max-pieces", type=int)
    b.add_argument("--modes", type=_strings, help="same-piece,random-mix,unison (cycled per mix)")
    b.add_argument("--mixes-per-piece", type=int)
    b.add_argument("--recipe", choices=["fixed", "pool", "classes", "source", "slakh"])
    b.add_argument("--program-set", choices=["train", "ood", "all"], help="slakh recipe: programs to draw")
    b.add_argument("--generated-pieces", type=int, help="pieces from the procedural generator")
    b.add_argument("--drums-probability", type=float, help="share of drum-less tracks given a groove")
    b.add_argument("--ensemble-share", type=_share,
                   help="share of generated pieces written as 3-4 equal melodic voices in "
                        "overlapping ranges (quartet / chorale texture) instead of bass + "
                        "accompaniment + melodies (default 0)")
    b.add_argument("--programs", type=_ints, help="fixed recipe: GM programs by part, e.g. 0,48,24,33")
    b.add_argument("--pool", type=_ints, help="pool recipe: GM programs to draw from")
    b.add_argument("--classes", type=_strings, help="classes recipe: Slakh class names to draw from")
    b.add_argument("--segment-seconds", type=float, help="crop tracks to this length (0: whole piece)")
    b.add_argument("--drums-every", type=int, help="add generated drums to every n-th track (0: none)")
    b.add_argument("--reverb", choices=["hall", "room", "random", "none"], help="synthetic room IR")
    b.add_argument("--noise-snr", type=_floats, metavar="LOW[,HIGH]", help="white noise SNR range, dB")
    b.add_argument("--gain-db", type=_floats, metavar="LOW[,HIGH]", help="per-stem gain range, dB")
    c = sub.add_parser("cache", help="write the tokenised pieces of a Slakh2100-layout folder as "
                       "sharded ArrayRecord files for the Grain input pipeline")
    c.add_argument("root", type=Path, help="dataset folder (Slakh2100 layout)")
    c.add_argument("--out", required=True, type=Path, help="cache folder")
    c.add_argument("--splits", type=_strings, default=("train", "validation"),
                   help="folder splits to cache (default: train,validation)")
    c.add_argument("--vocab", default="mt3", help="codec vocabulary: mt3 or ismir2021")
    c.add_argument("--name", default="slakh", help="dataset name (task-name prefix), as DATASET_NAME")
    c.add_argument("--program-source", choices=["slakh_class", "midi"], default="slakh_class")
    c.add_argument("--audio-dtype", choices=["int16", "float16", "float32"], default="int16")
    c.add_argument("--shards", type=int, help="shards per split (default: one per 32 tracks)")
    c.add_argument("--jobs", type=int, default=1, help="worker processes")
    c.add_argument("--overwrite", action="store_true", help="replace a cache of other settings")
    c.add_argument("--no-progress", action="store_true")
    for name in ("info", "check"):
        p = sub.add_parser(name, help=("summarise" if name == "info" else "verify every file of")
                           + " a Slakh2100-layout folder")
        p.add_argument("root", type=Path)
    return parser


def _config_from_args(args):
    from mt3x.data.augment import Augmentation
    from mt3x.data.presets import preset_config

    overrides: dict = {}
    simple = {"soundfont": "soundfont", "renderer": "renderer", "sample_rate": "sample_rate",
              "audio_format": "audio_format", "composer": "composer", "max_pieces": "max_pieces",
              "mixes_per_piece": "mixes_per_piece", "drums_every": "drums_every", "modes": "modes",
              "soundfonts": "soundfonts", "generated_pieces": "generated_pieces",
              "drums_probability": "drums_probability"}
    for arg, field in simple.items():
        if getattr(args, arg) is not None:
            overrides[field] = getattr(args, arg)
    if args.collection is not None:
        overrides["collection"] = None if args.collection == "none" else args.collection
    if args.num_parts is not None:
        overrides["num_parts"] = args.num_parts or None
    if args.segment_seconds is not None:
        overrides["segment_seconds"] = args.segment_seconds or None
    if args.midi_dir is not None:
        overrides.update(source="midi-dir", midi_dir=str(args.midi_dir))
        overrides.setdefault("num_parts", None)
        overrides.setdefault("max_pieces", None)
        if args.preset == "demo":
            overrides["split_counts"] = None
    if args.soundfont is not None and args.soundfonts is None:
        overrides["soundfonts"] = ()
    config = preset_config(args.preset, seed=args.seed, hours=args.hours, **overrides)
    recipe = config.recipe
    if args.recipe is not None:
        recipe = dataclasses.replace(recipe, kind=args.recipe)
    if args.program_set is not None:
        recipe = dataclasses.replace(recipe, program_set=args.program_set)
    for arg in ("programs", "pool", "classes"):
        if getattr(args, arg) is not None:
            recipe = dataclasses.replace(recipe, **{arg: getattr(args, arg)})
    augmentation = config.augmentation
    if args.reverb is not None:
        augmentation = dataclasses.replace(augmentation, ir=None if args.reverb == "none" else args.reverb)
    if args.noise_snr is not None:
        augmentation = dataclasses.replace(augmentation, noise_snr_db=args.noise_snr)
    if args.gain_db is not None:
        augmentation = dataclasses.replace(augmentation, gain_db=args.gain_db)
    generator = config.generator
    if args.ensemble_share is not None:
        generator = dataclasses.replace(generator, ensemble_probability=args.ensemble_share)
    return dataclasses.replace(config, recipe=recipe, augmentation=augmentation,
                               generator=generator)


def _build(args) -> int:
    from mt3x.data.builder import build

    check_output_path(args.out)
    config = _config_from_args(args)
    report = build(config, args.out, jobs=args.jobs, on_error=args.on_error,
                   progress=not args.no_progress, overwrite=args.overwrite)
    print(report.summary())
    return 0


def _info(root: Path) -> int:
    from mt3x.audio.io import audio_info
    from mt3x.data.slakh import SPLIT_NAMES, list_track_dirs, read_track

    found = False
    for split in SPLIT_NAMES:
        dirs = list_track_dirs(root, split)
        if not dirs:
            continue
        found = True
        seconds, stems, rates = 0.0, 0, set()
        classes, fonts, programs = collections.Counter(), collections.Counter(), collections.Counter()
        tempi, densities = [], []
        for d in dirs:
            track = read_track(d)
            info = audio_info(track.mix_path)
            length = info.frames / info.samplerate
            seconds += length
            rates.add(info.samplerate)
            stems += len(track.stems)
            classes.update(s.inst_class for s in track.stems)
            programs.update("drums" if s.is_drum else s.program for s in track.stems)
            tempo, notes, stem_fonts = _track_facts(d)
            fonts.update(stem_fonts)
            if tempo is not None:
                tempi.append(tempo)
            if notes is not None and length > 0:
                densities.append(notes / length)
        print(f"{split}: {len(dirs)} tracks, {seconds / 3600:.3f} h, {stems} stems, "
              f"sample rate {sorted(rates)} Hz")
        print(f"  soundfonts ({len(fonts)}): {_top(fonts, 6)}")
        print(f"  classes ({len(classes)}): {_top(classes, 17)}")
        print(f"  programs ({len(programs)} distinct): {_top(programs, 10)}")
        if tempi:
            print(f"  tempo: {min(tempi):.0f}-{max(tempi):.0f} bpm, median {np.median(tempi):.0f}")
        if densities:
            print(f"  note density: {np.mean(densities):.1f} notes/s per track "
                  f"(min {min(densities):.1f}, max {max(densities):.1f})")
    if not found:
        raise Mt3xError(f"{root}: no Slakh2100-layout splits ({', '.join(SPLIT_NAMES)}) with Track* folders")
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    print(f"size on disk: {size / 2**20:.1f} MiB")
    return 0


def _top(counter: collections.Counter, count: int) -> str:
    items = counter.most_common()
    text = ", ".join(f"{key} {n}" for key, n in items[:count])
    return text + (f", ... ({len(items) - count} more)" if len(items) > count else "")


def _track_facts(track_dir: Path) -> tuple[float | None, int | None, list[str]]:
    """(tempo bpm, notes in all_src.mid, plugin_name per stem) of a track; None where unknown.

    The tempo is metadata `tempo_bpm` (synthetic builds), else all_src.mid's first tempo."""
    metadata = yaml.safe_load((track_dir / "metadata.yaml").read_text()) or {}
    fonts = [str(s.get("plugin_name", "?")) for s in (metadata.get("stems") or {}).values()
             if isinstance(s, dict)]
    tempo, notes = metadata.get("tempo_bpm"), None
    midi_path = track_dir / "all_src.mid"
    if midi_path.is_file():
        try:
            midi = pretty_midi.PrettyMIDI(str(midi_path))
        except Exception as err:  # malformed MIDI: say which file
            raise Mt3xError(f"{midi_path}: MIDI file does not parse ({type(err).__name__}: {err})") from err
        notes = sum(len(inst.notes) for inst in midi.instruments)
        if tempo is None:
            _, tempi = midi.get_tempo_changes()
            tempo = float(tempi[0]) if len(tempi) else None
    return (float(tempo) if tempo is not None else None), notes, fonts


def _check(root: Path) -> int:
    from mt3x.audio.io import read_audio
    from mt3x.data.slakh import SPLIT_NAMES, list_track_dirs, read_track

    problems, checked = [], 0
    for split in SPLIT_NAMES:
        for d in list_track_dirs(root, split):
            checked += 1
            try:
                track = read_track(d)
                mix, _ = read_audio(track.mix_path)
                total = np.zeros_like(mix, dtype=np.float64)
                for stem in track.rendered_stems:
                    audio, _ = read_audio(stem.audio_path)
                    if audio.shape != mix.shape:
                        problems.append(f"{stem.audio_path}: {audio.shape[0]} samples, mix has {mix.shape[0]}")
                        continue
                    total += audio
                    if stem.midi_path is not None:
                        track.stem_note_sequence(stem.name)
                deviation = float(np.abs(total - mix).max())
                if len(track.rendered_stems) == len(track.stems) and deviation > 0.05:
                    problems.append(f"{track.mix_path}: differs from the sum of the stems by {deviation:.4f}")
            except Mt3xError as err:
                problems.append(str(err))
    if not checked:
        raise Mt3xError(f"{root}: no Track* folders under {', '.join(SPLIT_NAMES)}")
    for problem in problems:
        print(f"problem: {problem}")
    print(f"checked {checked} tracks: {len(problems)} problems")
    return 1 if problems else 0


def _cache(args) -> int:
    from mt3x.tasks.cache_build import CacheSettings, build_cache

    settings = CacheSettings(vocab=args.vocab, dataset_name=args.name,
                             program_source=args.program_source, audio_dtype=args.audio_dtype)
    if args.shards is not None and args.shards < 1:
        raise Mt3xError(f"--shards: expected >= 1, got {args.shards}")
    manifest = build_cache(args.root, args.out, splits=args.splits, settings=settings,
                           num_shards=args.shards, jobs=args.jobs, overwrite=args.overwrite,
                           progress=not args.no_progress)
    for split, entry in manifest["splits"].items():
        print(f"{split}: {entry['tracks']} tracks, {entry['pieces']} pieces, "
              f"{entry['frames'] * 128 / 16000 / 3600:.3f} h, {len(entry['shards'])} shards, "
              f"{len(entry['tracks_failed'])} tracks failed")
    print(f"cache of task {manifest['task']} in {args.out} ({manifest['shards_built']} shards "
          f"built, {manifest['shards_kept']} kept)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(cli_args(argv))
    try:
        if args.command == "build":
            return _build(args)
        if args.command == "cache":
            return _cache(args)
        if args.command == "info":
            return _info(args.root)
        return _check(args.root)
    except Mt3xError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

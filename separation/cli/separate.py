"""`mt3x-separate AUDIO... --checkpoint DIR --out DIR`: audio files -> one WAV per instrument.

    mt3x-separate song.wav --checkpoint runs/sep/unet --out stems/
    mt3x-separate song.wav --bundle bundles/unet --out stems/       # no model code needed
    mt3x-separate mix.flac --checkpoint runs/sep/dnn/finetune --out stems/ --reference-dir refs/
    mt3x-separate eval --data /data/chorales --split test --out scores/ \\
        --checkpoints dnn_ls_init=runs/sep/dnn_ls_init,dnn=runs/sep/dnn/finetune,unet=runs/sep/unet

Separate: for each input, writes `<out>/<name>/<instrument>.wav` (at the model's sample rate;
<name> is the file name without suffix, or <parent>_<name> when several inputs share it) and
`<out>/<name>/spectrogram.png` (mixture and estimates; with `--reference-dir`, the true stems
beside them and SI-SDR per instrument in `<out>/<name>/scores.json`). Files of any length are
separated in chunks with overlap and cross-fade (memory bounded by a few chunks). Stereo input is
downmixed and other sample rates resampled, with a printed note. References: a Slakh track folder
(metadata.yaml + stems/: `<reference-dir>/<name>`, `<reference-dir>/<the input's folder name>` or
`<reference-dir>` itself), whose stems are mixed into the separator's instrument groups as in
training; else `<reference-dir>/<name>/<instrument>.{wav,flac}`, then
`<reference-dir>/<instrument>.{wav,flac}`.

Eval: the score table over a dataset split (Slakh2100 layout) with the rows mixture, IBM, IRM (at
every model's STFT settings) and each checkpoint, with the tracks each median rests on and the
tracks where a group is absent; `--ood-data ROOT` scores an out-of-domain folder too and prints
both side by side (in-domain / out-of-domain columns; also `<out>/separation_domains.md`, the
out-of-domain tables under `<out>/out-of-domain/`); `--checkpoints` is `label=DIR,...` or a run root
holding `separators.json` (written by launch/separation_train.py). Labels dnn_ls_init, dnn and
unet are shown as 'DNN, LS init', 'DNN, trained' and 'U-Net'.

The checkpoint is a separator run directory (separator.json + checkpoints/); `--bundle` instead
takes a separator bundle written by `mt3x-export` (then the model code, Flax and Orbax are never
imported; the chunking is the same, so are the stems). A missing or partial checkpoint or bundle,
or one for other instruments than `--instruments`, prints `error: ...` and exits 2.
"""

from __future__ import annotations

from mt3x.util.quiet import cli_args, quiet_startup

quiet_startup()  # first: TensorFlow, pydub and Orbax stay quiet only if set before they load

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from mt3x.cli.arguments import add_ood_arguments
from mt3x.errors import Mt3xError
from mt3x.util.compilation_cache import enable_compilation_cache
from mt3x.util.files import check_output_path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROW_LABELS = {"dnn_ls_init": "DNN, LS init", "dnn": "DNN, trained", "unet": "U-Net"}
AUDIO_SUFFIXES = (".wav", ".flac")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mt3x-separate", description=__doc__.splitlines()[0],
                                     epilog="Score a dataset split: mt3x-separate eval --help")
    parser.add_argument("audio", nargs="+", type=Path, help="audio files (wav, flac, ...)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path,
                        help="separator run directory (separator.json + checkpoints/)")
    source.add_argument("--bundle", type=Path,
                        help="separator bundle written by mt3x-export (instead of --checkpoint)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--reference-dir", type=Path, default=None,
                        help="true stems: a Slakh track folder (metadata.yaml + stems/, mixed "
                        "into the instrument groups), DIR/<name>/<instrument>.wav or "
                        "DIR/<instrument>.wav")
    parser.add_argument("--instruments", default=None,
                        help="expected instrument groups, e.g. 'piano,guitar,bass,drums' or "
                        "'piano=0-7;drums' (the mt3x-tag syntax); a checkpoint for others "
                        "is refused")
    parser.add_argument("--step", type=int, default=None,
                        help="checkpoint step (default latest; not with --bundle)")
    parser.add_argument("--chunk-seconds", type=float, default=10.0,
                        help="chunk length of the overlap-add separation")
    parser.add_argument("--no-figure", action="store_true", help="skip the spectrogram PNG")
    return parser


def build_eval_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mt3x-separate eval",
                                     description="Score separators on a dataset split.")
    parser.add_argument("--data", required=True, type=Path, help="dataset root (Slakh layout)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--checkpoints", required=True,
                        help="label=DIR[,label=DIR...] or a run root with separators.json")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--instruments", default=None,
                        help="instrument spec (default: the one stored with the checkpoints)")
    parser.add_argument("--max-tracks", type=int, default=None)
    parser.add_argument("--max-seconds", type=float, default=30.0,
                        help="truncate each track (0: whole tracks)")
    parser.add_argument("--no-bss-eval", action="store_true", help="skip museval BSSEval v4")
    add_ood_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = cli_args(argv)
    enable_compilation_cache()  # a relaunch loads the compiled separator
    try:
        if argv and argv[0] == "eval":
            return _run_eval(build_eval_parser().parse_args(argv[1:]))
        return _run_separate(build_parser().parse_args(argv))
    except Mt3xError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except SystemExit as exit_:        # argparse usage errors (already printed)
        return int(exit_.code or 0)


# ---- shared -------------------------------------------------------------------------------

def _check_instruments(info: Any, spec: str | None, where: Path) -> None:
    """Refuses a checkpoint whose instruments differ from `spec` (when given)."""
    _check_instrument_names(tuple(info.model.instruments), info.groups, spec, f"checkpoint {where}")


def _check_instrument_names(have: Sequence[str], groups: Sequence[Any] | None, spec: str | None,
                            what: str) -> None:
    """Refuses a separator (`what`: 'checkpoint DIR' / 'bundle DIR') whose instrument names or
    groups differ from `spec` (when given)."""
    if spec is None:
        return
    from separation.data import parse_instruments

    wanted = parse_instruments(spec)
    names = tuple(g.name for g in wanted)
    if names != tuple(have) or (groups is not None and tuple(groups) != tuple(wanted)):
        stored = groups if groups is not None else have
        raise Mt3xError(
            f"{what} separates other instruments: it was trained for "
            f"{_describe(stored)}, --instruments asks for {_describe(wanted)}")


def _describe(groups: Sequence[Any]) -> str:
    from mt3x.data.instrument_groups import format_groups

    return repr(format_groups(groups))


def _load(directory: Path, step: int | None = None):
    from separation.checkpoints import load_separator

    return load_separator(directory, step)


# ---- separate ------------------------------------------------------------------------------

def _read_input(path: Path, sample_rate: int):
    """Mono float32 at `sample_rate`, printing a note when it downmixes or resamples."""
    from mt3x.audio.io import audio_info, read_audio

    info = audio_info(path)
    if info.channels > 1:
        print(f"note: {path}: {info.channels} channels downmixed to mono")
    if int(info.samplerate) != sample_rate:
        print(f"note: {path}: resampled from {info.samplerate} Hz to {sample_rate} Hz "
              "(the model's rate)")
    audio, _ = read_audio(path, sample_rate=sample_rate, mono=True)
    return audio


def _find_reference(ref_dir: Path, name: str, instrument: str) -> Path | None:
    for folder in (ref_dir / name, ref_dir):
        for suffix in AUDIO_SUFFIXES:
            candidate = folder / f"{instrument}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def _slakh_track(ref_dir: Path, audio: Path, name: str) -> Path | None:
    """The Slakh track folder (metadata.yaml + stems/) among <ref>/<name>, <ref>/<the input's
    folder name> and <ref> itself, or None."""
    for folder in (ref_dir / name, ref_dir / audio.parent.name, ref_dir):
        if (folder / "metadata.yaml").is_file():
            return folder
    return None


def _read_references(ref_dir: Path, audio: Path, name: str, instruments: Sequence[str],
                     groups: Sequence[Any] | None, sample_rate: int, length: int):
    """True stems float32[instruments, length]: a Slakh track's stems mixed into the separator's
    instrument groups, or one <instrument>.{wav,flac} each."""
    import numpy as np

    if not ref_dir.is_dir():
        raise Mt3xError(f"--reference-dir {ref_dir} is not a directory")
    refs = np.zeros((len(instruments), length), np.float32)
    track = _slakh_track(ref_dir, audio, name)
    if track is not None:
        from mt3x.data.slakh import read_track
        from separation.data import load_grouped

        if groups is None:
            raise Mt3xError(f"{track} is a Slakh track, but the separator stores no instrument "
                            "groups to mix its stems into: pass --instruments")
        grouped = load_grouped(read_track(track), groups, sample_rate)[:len(instruments), :length]
        refs[:, :grouped.shape[1]] = grouped
        return refs
    for j, inst in enumerate(instruments):
        path = _find_reference(ref_dir, name, inst)
        if path is None:
            raise Mt3xError(f"no reference for instrument {inst!r} of {name}: expected "
                            f"{ref_dir / name / (inst + '.wav')} or {ref_dir / (inst + '.wav')}, "
                            "or a Slakh track folder (metadata.yaml + stems/)")
        audio = _read_input(path, sample_rate)[:length]
        refs[j, :audio.size] = audio
    return refs


def _separator(args: argparse.Namespace):
    """(instrument names, sample rate, separate(mixture, chunk_seconds) -> stems) of --checkpoint
    or --bundle; the bundle path imports no model code."""
    if args.bundle is not None:
        if args.step is not None:
            raise Mt3xError("--step selects a checkpoint step; a bundle holds one step "
                            "(export another with mt3x-export --step)")
        from separation.bundle_runtime import BundleSeparator

        bundle = BundleSeparator(args.bundle)
        _check_instrument_names(bundle.instruments, bundle.groups, args.instruments,
                                f"bundle {args.bundle}")
        return (bundle.instruments, bundle.sample_rate,
                lambda mixture, seconds: bundle.separate(mixture, chunk_seconds=seconds),
                _reference_groups(bundle.groups, args.instruments))
    from separation.separate import separate_with_model

    model, params, info = _load(args.checkpoint, args.step)
    _check_instruments(info, args.instruments, args.checkpoint)
    return (tuple(model.instruments), model.sample_rate,
            lambda mixture, seconds: separate_with_model(model, params, mixture,
                                                         chunk_seconds=seconds),
            _reference_groups(info.groups, args.instruments))


def _reference_groups(stored: Sequence[Any] | None, spec: str | None):
    """The instrument groups a Slakh reference track is mixed into: the separator's, else
    --instruments' (already checked against its names), else None."""
    if stored is not None or spec is None:
        return stored
    from separation.data import parse_instruments

    return parse_instruments(spec)


def _run_separate(args: argparse.Namespace) -> int:
    import numpy as np

    from mt3x.audio.io import write_audio
    from separation import metrics, plots

    check_output_path(args.out)
    names, rate, separate, groups = _separator(args)
    failures = 0
    stems_of = [p.stem for p in args.audio]
    for path in args.audio:
        # one folder per input: its name, or parent_name when several inputs share a name
        name = path.stem if stems_of.count(path.stem) == 1 else f"{path.parent.name}_{path.stem}"
        try:
            mixture = _read_input(path, rate)
            stems = separate(mixture, args.chunk_seconds)
            refs = (None if args.reference_dir is None else
                    _read_references(args.reference_dir, path, name, names, groups, rate,
                                     mixture.size))
        except Mt3xError as err:
            print(f"error: {err}", file=sys.stderr)
            failures += 1
            continue
        folder = args.out / name
        for j, inst in enumerate(names):
            write_audio(folder / f"{inst}.wav", np.clip(stems[j], -1.0, 1.0), rate)
        summary = f"{path}: {len(names)} stems ({', '.join(names)}) in {folder}"
        if refs is not None:
            si = metrics.as_optional(metrics.si_sdr(refs, stems))
            si_mix = metrics.as_optional(metrics.si_sdr(refs, np.broadcast_to(mixture, refs.shape)))
            scores = {inst: {"si_sdr": si[j], "si_sdr_mixture": si_mix[j]}
                      for j, inst in enumerate(names)}
            from mt3x.util.files import atomic_path
            with atomic_path(folder / "scores.json") as tmp:
                tmp.write_text(json.dumps(scores, indent=2) + "\n")
            summary += "; SI-SDR " + ", ".join(
                f"{inst} {'n/a (silent)' if si[j] is None else f'{si[j]:.2f} dB'}"
                for j, inst in enumerate(names))
        if not args.no_figure:
            plots.spectrogram_figure(folder / "spectrogram.png", mixture, stems, names, rate,
                                     references=refs)
        print(summary)
    return 2 if failures else 0


# ---- eval ----------------------------------------------------------------------------------

def parse_checkpoint_list(value: str) -> list[tuple[str, Path]]:
    """'label=DIR,label=DIR' or a run root holding separators.json -> [(key, dir)]."""
    root = Path(value)
    if "=" not in value:
        index = root / "separators.json"
        if not index.is_file():
            raise Mt3xError(f"--checkpoints {value!r}: expected label=DIR[,label=DIR...] or a run "
                            f"directory holding separators.json ({index} not found)")
        try:
            mapping = json.loads(index.read_text())
        except ValueError as err:
            raise Mt3xError(f"{index}: not JSON ({err})") from None
        return [(key, Path(path)) for key, path in mapping.items()]
    out = []
    for part in filter(None, (p.strip() for p in value.split(","))):
        label, sep, path = part.partition("=")
        if not sep or not label.strip() or not path.strip():
            raise Mt3xError(f"--checkpoints entry {part!r}: expected label=DIR")
        out.append((label.strip(), Path(path.strip())))
    if not out:
        raise Mt3xError("--checkpoints: no label=DIR entries")
    return out


def _run_eval(args: argparse.Namespace) -> int:
    from separation import data
    from separation.experiment import evaluate_separators

    separators, groups = [], None
    for key, directory in parse_checkpoint_list(args.checkpoints):
        model, params, info = _load(directory)
        _check_instruments(info, args.instruments, directory)
        if groups is None and info.groups is not None:
            groups = info.groups
        elif info.groups is not None and tuple(info.groups) != tuple(groups):
            raise Mt3xError(f"checkpoint {directory} was trained for {_describe(info.groups)}, "
                            f"an earlier one for {_describe(groups)}: evaluate one target set")
        separators.append((ROW_LABELS.get(key, key), model, params))
    if args.instruments is not None:
        groups = data.parse_instruments(args.instruments)
    if groups is None:
        raise Mt3xError("the checkpoints store no instrument groups: pass --instruments")
    result = evaluate_separators(
        args.data, args.split, separators, args.out, instruments=groups,
        max_tracks=args.max_tracks, max_seconds=args.max_seconds or None,
        bss_eval=not args.no_bss_eval, ood_root=args.ood_data, ood_split=args.ood_split)
    print(result.get("domains_table", result["table"]))
    for key, path in result["paths"].items():
        print(f"{key}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

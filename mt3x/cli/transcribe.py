"""`mt3x-transcribe AUDIO... (--checkpoint DIR | --bundle DIR) --out DIR`: audio -> MIDI.

Writes `<out>/<name>.mid` (one named General MIDI instrument per program, drums on channel 10)
and `<out>/<name>.png` (piano roll) per input file. With `--reference MIDI` per file, the piano
roll marks true positives, false positives and false negatives per instrument, and the
metrics are printed. With `--stems`, each transcribed instrument is rendered through a soundfont
to `<out>/<name>/<instrument>.wav` (plus `mix.wav`), as long as the input.

The model comes from a checkpoint, a work directory written by `launch/train.py` /
`mt3x.runs.train.train_mt3` (or its `checkpoints/` or `checkpoints/<step>` folder), or from an
inference bundle written by `mt3x-export` (`--bundle`: runs the exported StableHLO without
importing the model code). Bad input (a missing, partial or foreign checkpoint or bundle;
unreadable, too short or silent audio; a soundfont without a transcribed program) prints
`error: ...` and exits with 2; the other files are still transcribed.
"""

from __future__ import annotations

from mt3x.util.quiet import cli_args, quiet_startup

quiet_startup()  # first: TensorFlow, pydub and Orbax stay quiet only if set before they load

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from mt3x.bundles.mt3_runtime import BundleTranscriber
from mt3x.data.midi import read_midi_note_sequence
from mt3x.data.render import check_soundfont
from mt3x.errors import Mt3xError
from mt3x.util.compilation_cache import enable_compilation_cache
from mt3x.util.files import check_output_path
from mt3x.transcription.files import WaveformTranscriber, transcribe_files
from mt3x.transcription.metrics import format_table, transcription_metrics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mt3x-transcribe", description=__doc__.splitlines()[0])
    parser.add_argument("audio", nargs="+", type=Path, help="audio files (wav, flac, ...)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path,
                        help="train_mt3 work directory (or checkpoints/<step>)")
    source.add_argument("--bundle", type=Path,
                        help="inference bundle written by mt3x-export (no model code imported)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--batch_size", type=int, default=8, help="segments per decoding batch")
    checkpoint_only = parser.add_argument_group("checkpoint options (fixed in a bundle)")
    checkpoint_only.add_argument("--step", type=int, default=None,
                                 help="checkpoint step (default latest)")
    checkpoint_only.add_argument("--max_decode_length", type=int, default=None,
                                 help="tokens per 2.048 s segment (default: the model's)")
    checkpoint_only.add_argument("--model_config", default=None,
                                 help="network config name when the checkpoint has no "
                                      "mt3x_model.json")
    checkpoint_only.add_argument("--vocab", default=None, choices=[None, "mt3", "ismir2021"])
    stems = parser.add_argument_group("separation by transcription")
    stems.add_argument("--stems", action="store_true",
                       help="render each transcribed instrument to <out>/<name>/<instrument>.wav")
    stems.add_argument("--soundfont", type=Path, default=None,
                       help=".sf2/.sf3 for --stems (default: TimGM6mb.sf2 from pretty_midi)")
    stems.add_argument("--stems_sample_rate", type=int, default=44100, help="Hz of the stems")
    parser.add_argument("--reference", action="append", type=Path, default=None,
                        help="reference MIDI for the piano roll and metrics (one per file)")
    parser.add_argument("--no_pianoroll", action="store_true", help="skip the PNGs")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(cli_args(argv))
    enable_compilation_cache()  # a relaunch loads the compiled encoder/decoder
    try:
        return _run(args)
    except Mt3xError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    check_output_path(args.out)
    references = None
    if args.reference is not None:
        if len(args.reference) != len(args.audio):
            raise Mt3xError(f"--reference: got {len(args.reference)} MIDI files for "
                            f"{len(args.audio)} audio files; give one per audio file")
        references = [read_midi_note_sequence(p) for p in args.reference]
    if args.stems:
        check_soundfont(args.soundfont)  # fail before transcribing, naming the file
    start = time.perf_counter()
    transcriber = _load_bundle(args) if args.bundle else _load_checkpoint(args)
    what = (transcriber.describe() if args.bundle
            else f"checkpoint {args.checkpoint} step {transcriber.step}")
    print(f"[transcribe] {what} ({time.perf_counter() - start:.1f} s to load)")
    failures = []

    def report(path: Path, err: Mt3xError) -> None:
        print(f"error: {err}", file=sys.stderr)
        failures.append(path)

    start = time.perf_counter()
    written = transcribe_files(args.audio, out_dir=args.out, transcriber=transcriber,
                               references=references, pianoroll=not args.no_pianoroll,
                               on_error=report, stems=args.stems, soundfont=args.soundfont,
                               stems_sample_rate=args.stems_sample_rate)
    seconds = time.perf_counter() - start
    audio_seconds = sum(item.audio_seconds for item in written)
    for item in written:
        print(f"[transcribe] {item.audio_path} -> {item.midi_path}: {item.num_notes} notes, "
              f"{item.num_instruments} instruments, {item.audio_seconds:.1f} s of audio")
        print(f"[transcribe]   decoding health: {item.invalid_events} invalid events, "
              f"{item.duplicate_notes} duplicate notes, {item.truncated_segments} segments "
              f"at the token limit, {item.dropped_events} dropped events")
        if item.stems:
            print(f"[transcribe]   stems in {item.stems[0].path.parent}: " + ", ".join(
                f"{stem.path.name} ({stem.num_notes} notes)" for stem in item.stems))
        if references is not None:
            _print_scores(references[args.audio.index(item.audio_path)], item.midi_path)
    if written:
        print(f"[transcribe] {len(written)} file(s), {audio_seconds:.1f} s of audio in "
              f"{seconds:.1f} s (incl. compilation)")
    return 2 if failures else 0


def _load_checkpoint(args: argparse.Namespace) -> WaveformTranscriber:
    """A checkpoint's Transcriber (model, params restored on all devices)."""
    # Imported here, for --checkpoint only: the checkpoint side pulls in the model code, the
    # trainer and Orbax, which a --bundle run must not load (its promise, tested in a fresh
    # process) and which take seconds to import.
    from mt3x.models import Mt3Model
    from mt3x.transcription.decoder import load_transcriber

    model = Mt3Model(args.model_config) if args.model_config else None
    return load_transcriber(args.checkpoint, model=model, vocab=args.vocab, step=args.step,
                            batch_size=args.batch_size, max_decode_length=args.max_decode_length)


def _load_bundle(args: argparse.Namespace) -> BundleTranscriber:
    """A BundleTranscriber; checkpoint-only options are refused (they are fixed at export)."""
    given = [f"--{name}" for name in ("step", "max_decode_length", "model_config", "vocab")
             if getattr(args, name) is not None]
    if given:
        raise Mt3xError(f"{', '.join(given)}: fixed when the bundle was exported; export again "
                        "with mt3x-export to change them")
    return BundleTranscriber(args.bundle, batch_size=args.batch_size)


def _print_scores(reference: Any, midi_path: Path) -> None:
    """Prints MT3's metrics of the written MIDI against the reference NoteSequence."""
    estimate = read_midi_note_sequence(midi_path)
    print(format_table(transcription_metrics(reference, estimate)))


if __name__ == "__main__":
    sys.exit(main())

"""`mt3x-eval-midi ref.mid est.mid [--plot out.png] [--json out.json]`: MT3's metrics for a pair
of MIDI files.

Both files are read with `mt3x.data.midi.read_midi_note_sequence`: sustain pedal (CC 64) applied
and control changes dropped (MT3's references are stored that way), then
`mt3x.transcription.metrics.transcription_metrics` is printed as a table. Unreadable MIDI -> `error: ...` on stderr and exit code 2.
"""

from __future__ import annotations

from mt3x.util.quiet import cli_args, quiet_startup

quiet_startup()  # first: TensorFlow, pydub and Orbax stay quiet only if set before they load

import argparse
import json
import sys
import warnings
from pathlib import Path

from mt3x.errors import Mt3xError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mt3x-eval-midi",
        description="Score an estimated transcription (MIDI) against a reference MIDI with "
                    "MT3's metrics: onset, onset+offset, velocity, frame F1 and the "
                    "multi-instrument F1 at flat / midi_class / full program granularity.")
    p.add_argument("ref", help="reference MIDI file")
    p.add_argument("est", help="estimated (transcribed) MIDI file")
    p.add_argument("--plot", metavar="PNG", help="write a per-instrument piano-roll PNG marking "
                                                 "true/false positives and false negatives")
    p.add_argument("--json", metavar="JSON", help="write all metrics as JSON")
    p.add_argument("--granularity", default="full", choices=("flat", "midi_class", "full"),
                   help="program granularity of the plot's instrument panels (default: full)")
    p.add_argument("--no-sustain", action="store_true",
                   help="do not apply the sustain pedal before scoring")
    p.add_argument("--onsets-only", action="store_true",
                   help="only onset metrics (for onset-only transcriptions)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(cli_args(argv))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # note_seq's optional audio deps warn on import
            # Imported here, not at the top, so `--help` starts without note_seq and metrics.
            from mt3x.data.midi import read_midi_note_sequence
            from mt3x.transcription import metrics
            from mt3x.util.files import atomic_path
            ref = read_midi_note_sequence(args.ref, sustain=not args.no_sustain)
            est = read_midi_note_sequence(args.est, sustain=not args.no_sustain)
            scores = metrics.transcription_metrics(ref, est, onsets_only=args.onsets_only)
        print(f"reference: {args.ref} ({len(ref.notes)} notes)")
        print(f"estimate:  {args.est} ({len(est.notes)} notes)")
        print(metrics.format_table(scores))
        tracks = None
        if args.plot:
            from mt3x.transcription import pianoroll
            matches = pianoroll.plot_transcription(
                ref, est, args.plot, granularity=args.granularity,
                title=f"{Path(args.est).name} vs {Path(args.ref).name}")
            tracks = pianoroll.summarize_matches(matches)
            print(f"wrote {args.plot}")
        if args.json:
            payload = {"reference": str(args.ref), "estimate": str(args.est),
                       "metrics": scores}
            if tracks is not None:
                payload["tracks"] = tracks
            with atomic_path(args.json) as tmp:
                tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
            print(f"wrote {args.json}")
    except Mt3xError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

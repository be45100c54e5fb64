"""basic-pitch's instrument-agnostic onset F1 on Slakh-layout datasets: the baseline row next to
MT3's `Agnostic onset F1` (`mt3x.transcription.metrics.agnostic_onset_scores`).

basic-pitch (Spotify, ICASSP 2022) pins tensorflow < 2.15.1 on Linux, which conflicts with the
tensorflow this project pins, so it runs from a venv of its own through its ONNX model (shipped in
the wheel; no network needed after the install). This script imports nothing of mt3x:

    python3.11 -m venv /tmp/bp-venv
    /tmp/bp-venv/bin/pip install --no-deps basic-pitch==0.4.0
    /tmp/bp-venv/bin/pip install onnxruntime librosa "resampy<0.4.3" pretty_midi scipy \\
        scikit-learn mir_eval typing-extensions soundfile pyyaml
    /tmp/bp-venv/bin/python bench/basic_pitch_baseline.py --data data/synth-slakh \\
        --ood-data data/ood-eval --max-tracks 6 --out bp.json

Per track: basic-pitch transcribes mix.flac; the reference is every rendered stem's MIDI
(MIDI/<stem>.mid of the stems with `audio_rendered`, drums included), all notes merged, programs
ignored; mir_eval onset-only note matching at 50 ms and 50 cents, precision / recall / F1
averaged over tracks (as MT3 averages its metrics), the definition mt3x's `Agnostic onset F1`
uses. Prints one row per dataset ('in-domain', 'out-of-domain') with the tracks it rests on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import mir_eval
import numpy as np
import pretty_midi
import yaml

ONSET_TOLERANCE = 0.05


def reference_notes(track: Path) -> tuple[np.ndarray, np.ndarray]:
    """(intervals float[n, 2] s, pitches float[n] Hz) of every rendered stem's MIDI notes."""
    meta = yaml.safe_load((track / "metadata.yaml").read_text())
    intervals, pitches = [], []
    for name, stem in sorted((meta.get("stems") or {}).items()):
        midi_path = track / "MIDI" / f"{name}.mid"
        if not stem.get("audio_rendered", True) or not midi_path.is_file():
            continue
        for instrument in pretty_midi.PrettyMIDI(str(midi_path)).instruments:
            for note in instrument.notes:
                if note.end > note.start:
                    intervals.append((note.start, note.end))
                    pitches.append(pretty_midi.note_number_to_hz(note.pitch))
    return np.asarray(intervals, float).reshape(-1, 2), np.asarray(pitches, float)


def onset_scores(ref: tuple[np.ndarray, np.ndarray], est: tuple[np.ndarray, np.ndarray]
                 ) -> tuple[float, float, float]:
    """mir_eval onset-only precision, recall, F1 (50 ms, 50 cents)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mir_eval warns on an empty reference or estimate
        p, r, f, _ = mir_eval.transcription.precision_recall_f1_overlap(
            ref[0], ref[1], est[0], est[1], onset_tolerance=ONSET_TOLERANCE, offset_ratio=None)
    return float(p), float(r), float(f)


def score_split(root: Path, split: str, model_path: str, max_tracks: int | None
                ) -> dict[str, object]:
    """Transcribes every track of root/split with basic-pitch and scores it."""
    from basic_pitch.inference import predict  # a heavy import: only when scoring

    folder = root / split
    if not folder.is_dir():
        raise SystemExit(f"error: {folder}: split folder not found")
    tracks = sorted(p for p in folder.iterdir() if (p / "mix.flac").is_file())[:max_tracks]
    if not tracks:
        raise SystemExit(f"error: {folder}: no track with a mix.flac")
    per_track = {}
    start = time.perf_counter()
    for track in tracks:
        _, _, events = predict(str(track / "mix.flac"), model_path)
        est = (np.asarray([(s, e) for s, e, *_ in events], float).reshape(-1, 2),
               np.asarray([pretty_midi.note_number_to_hz(p) for _, _, p, *_ in events], float))
        per_track[track.name] = dict(zip(("precision", "recall", "f1"),
                                         onset_scores(reference_notes(track), est)))
    averages = {k: float(np.mean([v[k] for v in per_track.values()]))
                for k in ("precision", "recall", "f1")}
    return {"root": str(root), "split": split, "tracks": len(per_track), "averages": averages,
            "seconds": time.perf_counter() - start, "per_track": per_track}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="in-domain Slakh-layout root")
    parser.add_argument("--split", default="test")
    parser.add_argument("--ood-data", type=Path, default=None,
                        help="out-of-domain Slakh-layout root (e.g. --preset ood-eval)")
    parser.add_argument("--ood-split", default="test")
    parser.add_argument("--max-tracks", type=int, default=None, help="first N tracks per split")
    parser.add_argument("--out", type=Path, default=None, help="write the scores as JSON here")
    args = parser.parse_args(argv)
    try:
        from basic_pitch import FilenameSuffix, build_icassp_2022_model_path
    except ImportError as err:
        print(f"error: basic-pitch is not installed in this environment ({err}); see this "
              "script's docstring for a separate venv", file=sys.stderr)
        return 2
    model_path = str(build_icassp_2022_model_path(FilenameSuffix.onnx))
    domains = [("in-domain", args.data, args.split)]
    if args.ood_data is not None:
        domains.append(("out-of-domain", args.ood_data, args.ood_split))
    results = {name: score_split(root, split, model_path, args.max_tracks)
               for name, root, split in domains}
    print(f"{'basic-pitch (ONNX), agnostic onset':<36}{'precision':>10}{'recall':>10}{'F1':>8}"
          f"{'tracks':>8}")
    for name, result in results.items():
        a = result["averages"]
        print(f"{name:<36}{a['precision']:>10.4f}{a['recall']:>10.4f}{a['f1']:>8.4f}"
              f"{result['tracks']:>8}")
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

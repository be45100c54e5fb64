"""Build-speed benchmark for the synthetic Slakh builder (any preset; synth-slakh sized by --hours).

Prints seconds of audio rendered per wall second (counting every stem and the mix once, and
per-track audio), the wall time of the whole build (piece loading included), and the dataset size.

    python bench/data.py [--jobs 2] [--preset demo] [--sample-rate 16000]
    python bench/data.py --preset synth-slakh --hours 0.25 --jobs 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from mt3x.data.builder import build
from mt3x.data.presets import preset_config
from mt3x.data.slakh import list_track_dirs, read_track


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--max-pieces", type=int, default=None)
    parser.add_argument("--hours", type=float, default=None, help="synth-slakh / ood-eval size")
    args = parser.parse_args()
    overrides = {"sample_rate": args.sample_rate}
    if args.max_pieces:
        overrides["max_pieces"] = args.max_pieces
    config = preset_config(args.preset, seed=0, hours=args.hours, **overrides)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ds"
        start = time.perf_counter()
        report = build(config, root, jobs=args.jobs, on_error="fail")
        wall = time.perf_counter() - start
        stems = sum(len(read_track(d).stems) for s in ("train", "validation", "test")
                    for d in list_track_dirs(root, s))
        size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    tracks = len(report.built)
    print(f"preset={args.preset} sample_rate={args.sample_rate} jobs={args.jobs} tracks={tracks} stems={stems}")
    print(f"track audio: {report.audio_seconds:.1f} s in {wall:.1f} s wall -> "
          f"{report.audio_seconds / wall:.1f} s of tracks per wall second")
    per_stem = report.audio_seconds / max(tracks, 1) * stems
    print(f"stem audio rendered: {per_stem:.1f} s -> {per_stem / wall:.1f} s of stems per wall second")
    print(f"dataset size on disk: {size / 2**20:.1f} MiB ({size / max(report.audio_seconds, 1e-9) / 1024:.1f} KiB "
          f"per second of track)")


if __name__ == "__main__":
    main()

"""Transcribe audio files with an MT3 checkpoint from gin configs (as `mt3x-transcribe`).

    python launch/infer.py --gin_file=runs/infer.gin --gin.CHECKPOINT="'runs/demo'" \
        --gin.AUDIO_FILES="['song.flac']" --workdir=out/midi
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = common.build_parser(__doc__.splitlines()[0])
    args, bindings = common.parse_flags(parser, argv)
    from mt3x.errors import Mt3xError

    try:
        common.init_distributed(args)
        if args.workdir:
            bindings.append(f"INFER_OUTPUT_DIR = {common.quote(args.workdir)}")
        config = common.parse_gin_config(args.gin_file, bindings)
        if args.print_config:
            print(config)
            return 0
        common.setup_logging()
        from mt3x import gin_registry

        written = gin_registry.transcribe_files()
    except Mt3xError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for item in written:
        print(f"{item.audio_path} -> {item.midi_path} ({item.num_notes} notes, "
              f"{item.num_instruments} instruments)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

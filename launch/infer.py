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
    def job(config: str):
        from mt3x.runs import gin_registry

        return gin_registry.transcribe_files()

    code, result = common.run_gin_entry(__doc__.splitlines()[0], argv, workdir_macro="INFER_OUTPUT_DIR",
                                        job=job)
    if result is None:
        return code
    for item in result:
        print(f"{item.audio_path} -> {item.midi_path} ({item.num_notes} notes, "
              f"{item.num_instruments} instruments)")
    return 0


if __name__ == "__main__":
    common.exit_process(main())

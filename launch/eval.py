"""Evaluate an MT3 checkpoint on a dataset split from gin configs.

    python launch/eval.py --gin_file=runs/eval.gin --gin.CHECKPOINT="'runs/demo'" \
        --gin.DATASET_ROOT="'data/demo'" --workdir=runs/demo/eval_test

Prints MT3's metric table and writes <workdir>/metrics.json (averages and per file), plus one
MIDI and one piano-roll PNG per file when `mt3x.evaluate_mt3.write_midi = True`.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    def job(config: str):
        from mt3x.runs import gin_registry

        return gin_registry.evaluate_mt3(gin_config=config)

    code, result = common.run_gin_entry(__doc__.splitlines()[0], argv, workdir_macro="EVAL_OUTPUT_DIR",
                                        job=job)
    if result is None:
        return code
    from mt3x.transcription.metrics import format_table

    print(format_table(result))
    print(f"files: {int(result.get('Files', 0))}, invalid events per file: "
          f"{result.get('Invalid events', 0):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
    parser = common.build_parser(__doc__.splitlines()[0])
    args, bindings = common.parse_flags(parser, argv)
    from mt3x.errors import Mt3xError

    try:
        common.init_distributed(args)
        if args.workdir:
            bindings.append(f"EVAL_OUTPUT_DIR = {common.quote(args.workdir)}")
        config = common.parse_gin_config(args.gin_file, bindings)
        if args.print_config:
            print(config)
            return 0
        common.setup_logging()
        from mt3x import gin_registry
        from mt3x.metrics import format_table

        scores = gin_registry.evaluate_mt3(gin_config=config)
    except Mt3xError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_table(scores))
    print(f"files: {int(scores.get('Files', 0))}, invalid events per file: "
          f"{scores.get('Invalid events', 0):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

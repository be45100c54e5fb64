"""`mt3x-export-t5x --checkpoint DIR --out DIR [--inline-small]`: an mt3x checkpoint -> the
legacy t5x layout (msgpack `checkpoint` + gzip zarr v2 folders `target.<path>/`).

t5x reads the result with `RestoreCheckpointConfig(path=OUT, mode='specific',
fallback_to_scratch=True)` (the optimizer state is not exported and starts fresh); plain Python
reads it with msgpack + TensorStore. Errors -> `error: ...` on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from mt3x.errors import Mt3xError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mt3x-export-t5x",
        description="Export the parameters of an mt3x checkpoint to the legacy t5x checkpoint "
                    "layout (msgpack + zarr v2, gzip), readable by t5x and TensorStore.")
    p.add_argument("--checkpoint", required=True,
                   help="mt3x checkpoint directory or run workdir (its checkpoints/ is used)")
    p.add_argument("--out", required=True, help="t5x checkpoint directory to create")
    p.add_argument("--step", type=int, default=None, help="committed step (default: latest)")
    p.add_argument("--inline-small", action="store_true",
                   help="keep vectors (RMSNorm scales) inline in the msgpack, as the released "
                        "MT3 checkpoint does; default: every array in its own zarr folder")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        from mt3x.t5x_checkpoint import export_t5x_checkpoint

        storage = export_t5x_checkpoint(args.checkpoint, args.out, step=args.step,
                                        inline_small=args.inline_small,
                                        overwrite=args.overwrite)
    except Mt3xError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    inline = sum(kind == "inline" for kind in storage.values())
    print(f"wrote {args.out}: {len(storage)} arrays ({len(storage) - inline} zarr, "
          f"{inline} inline)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

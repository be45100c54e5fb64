"""`mt3x-export-t5x --checkpoint DIR --out DIR [--dtype bfloat16] [--inline-small]`: an mt3x
checkpoint -> a t5x checkpoint `OUT/checkpoint_<step>/` in the legacy layout t5x writes (msgpack
`checkpoint` + gzip zarr v2 folders `target.<path>/`), the step kept from the mt3x checkpoint.

t5x restores it with `RestoreCheckpointConfig(path='OUT/checkpoint_<step>', mode='specific',
dtype='float32', fallback_to_scratch=True, assignment_map=((r'state.*', None),))`: the optimizer
state is not exported, and t5x's fallback needs the assignment map to drop the checkpoint's state
and start it fresh. Plain Python reads it with msgpack + TensorStore, and `mt3x-import-t5x OUT`
reads it back. Errors -> `error: ...` on stderr, exit code 2.
"""

from __future__ import annotations

from mt3x.util.quiet import cli_args, quiet_startup

quiet_startup()  # first: TensorFlow, pydub and Orbax stay quiet only if set before they load

import argparse
import sys

from mt3x.errors import Mt3xError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mt3x-export-t5x",
        description="Export the parameters of an mt3x checkpoint as a t5x checkpoint "
                    "OUT/checkpoint_<step>/ (legacy layout: msgpack + gzip zarr v2), readable "
                    "by t5x's restore and TensorStore.")
    p.add_argument("--checkpoint", required=True,
                   help="mt3x checkpoint directory or run workdir (its checkpoints/ is used)")
    p.add_argument("--out", required=True,
                   help="t5x model directory that receives checkpoint_<step>/ (created)")
    p.add_argument("--step", type=int, default=None, help="committed step (default: latest)")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                   help="parameter dtype on disk (bfloat16: rounded to nearest even, half the "
                        "size; default float32, bit-exact)")
    p.add_argument("--inline-small", action="store_true",
                   help="keep vectors (RMSNorm scales) inline in the msgpack, as the released "
                        "MT3 checkpoint does; default: every array in its own zarr folder")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing OUT/checkpoint_<step>")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(cli_args(argv))
    try:
        from mt3x.t5x_checkpoint import export_t5x_checkpoint

        result = export_t5x_checkpoint(args.checkpoint, args.out, step=args.step,
                                       dtype=args.dtype, inline_small=args.inline_small,
                                       overwrite=args.overwrite)
    except Mt3xError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    inline = sum(kind == "inline" for kind in result.storage.values())
    print(f"wrote {result.path}: step {result.step}, {result.dtype}, {len(result.storage)} "
          f"arrays ({len(result.storage) - inline} zarr, {inline} inline)")
    print(f"t5x: RestoreCheckpointConfig(path={str(result.path)!r}, mode='specific', "
          "dtype='float32', fallback_to_scratch=True, assignment_map=((r'state.*', None),))")
    return 0


if __name__ == "__main__":
    sys.exit(main())

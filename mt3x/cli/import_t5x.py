"""`mt3x-import-t5x SRC DST [--config mt3|ismir2021|auto]`: an official (t5x) MT3 checkpoint ->
an mt3x checkpoint that training fine-tunes from.

SRC is a legacy t5x checkpoint directory (msgpack `checkpoint` + zarr folders, e.g. a local copy
of gs://mt3/checkpoints/mt3/), a t5x Orbax step directory (`checkpoint_<step>/` with
`state/_METADATA`) or a t5x model directory of `checkpoint_<step>` folders. DST is written
atomically; start fine-tuning with `train(init_params_from=DST, ...)`. Prints the import report;
a missing, extra or mis-shaped array -> `error: ...` naming it, exit code 2. Needs neither t5x
nor TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import sys

from mt3x.errors import Mt3xError


def _parser() -> argparse.ArgumentParser:
    from mt3x.models import CONFIGS

    p = argparse.ArgumentParser(
        prog="mt3x-import-t5x",
        description="Import a t5x checkpoint (legacy msgpack + zarr, or Orbax) of MT3 into an "
                    "mt3x checkpoint (step 0, fresh optimizer state) for fine-tuning.")
    p.add_argument("src", help="t5x checkpoint directory (or its 'checkpoint' msgpack file)")
    p.add_argument("dst", help="mt3x checkpoint directory to create")
    p.add_argument("--config", default="auto", choices=("auto",) + tuple(CONFIGS),
                   help="model config the arrays must fit (default: auto, from the shapes)")
    p.add_argument("--step", type=int, default=None,
                   help="which checkpoint_<step> of a t5x model directory (default: latest)")
    p.add_argument("--backend", default="auto", choices=("auto", "tensorstore", "numpy"),
                   help="zarr reader (default: tensorstore when installed, else numpy)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty DST")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        from mt3x.t5x_checkpoint import import_t5x_checkpoint

        report = import_t5x_checkpoint(args.src, args.dst, config=args.config, step=args.step,
                                       backend=args.backend, overwrite=args.overwrite)
    except Mt3xError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_json(), indent=1) if args.json else report.to_text())
    print(f"wrote {args.dst} (fine-tune with train(init_params_from={args.dst!r}))")
    return 0


if __name__ == "__main__":
    sys.exit(main())

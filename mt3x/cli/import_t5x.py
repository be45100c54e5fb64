"""`mt3x-import-t5x SRC DST [--config auto|NAME|SIZES]`: an official (t5x) MT3 checkpoint ->
an mt3x run directory that training fine-tunes from and inference reads.

SRC is a legacy t5x checkpoint directory (msgpack `checkpoint` + zarr folders, e.g. a local copy
of gs://mt3/checkpoints/mt3/), a t5x Orbax step directory (`checkpoint_<step>/` with
`state/_METADATA`) or a t5x model directory of `checkpoint_<step>` folders. DST is written
atomically as `DST/checkpoints/0`, `DST/mt3x_model.json` and `DST/t5x_import_report.json`; start
fine-tuning with `train(init_params_from=DST, ...)`. `--config` is 'auto', a config name or
explicit sizes (`heads=8`, `mt3,heads=8`, `emb=512,heads=8,head_dim=64,mlp=1024,enc_layers=8,
dec_layers=8,vocab=1536`). Prints the import report; a bad --config or a missing, extra or
mis-shaped array -> `error: ...` naming it, exit code 2. Needs neither t5x nor TensorFlow.
"""

from __future__ import annotations

from mt3x.util.quiet import cli_args, quiet_startup

quiet_startup()  # first: TensorFlow, pydub and Orbax stay quiet only if set before they load

import argparse
import json
import sys

from mt3x.errors import Mt3xError


def _parser() -> argparse.ArgumentParser:
    from mt3x.t5x_checkpoint.config_option import config_syntax

    p = argparse.ArgumentParser(
        prog="mt3x-import-t5x",
        description="Import a t5x checkpoint (legacy msgpack + zarr, or Orbax) of MT3 into an "
                    "mt3x run directory (step 0, fresh optimizer state, mt3x_model.json).")
    p.add_argument("src", help="t5x checkpoint directory (or its 'checkpoint' msgpack file)")
    p.add_argument("dst", help="mt3x run directory to create")
    p.add_argument("--config", default="auto",
                   help=f"model config the arrays must fit: {config_syntax()}. 'auto' (the "
                        "default) takes a named config whose shapes all match, else the sizes "
                        "from the shapes with the head count from t5x's config.gin beside the "
                        "checkpoint (shapes do not tell it)")
    p.add_argument("--step", type=int, default=None,
                   help="which checkpoint_<step> of a t5x model directory (default: latest)")
    p.add_argument("--backend", default="auto", choices=("auto", "tensorstore", "numpy"),
                   help="zarr reader (default: tensorstore when installed, else numpy)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty DST")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(cli_args(argv))
    try:
        from mt3x.t5x_checkpoint import import_t5x_checkpoint, parse_config_option

        config = parse_config_option(args.config)
        report = import_t5x_checkpoint(args.src, args.dst, config=config, step=args.step,
                                       backend=args.backend, overwrite=args.overwrite)
    except Mt3xError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_json(), indent=1) if args.json else report.to_text())
    print(f"wrote {args.dst} (fine-tune with train(init_params_from={args.dst!r}))")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Train separators from gin configs: `python launch/separation_train.py --gin_file=... --workdir=...`.

    python launch/separation_train.py --gin_file=separation/dnn_demo.gin \
        --gin.DATASET_ROOT="'data/demo'" --workdir=runs/sep_dnn
    python launch/separation_train.py --gin_file=separation/unet_chorales.gin \
        --gin.DATASET_ROOT="'/work/datasets/chorales'" --workdir=runs/sep_unet \
        --gin.separation.ExperimentConfig.unet_steps=800

Writes one separator run directory per model under --workdir (dnn_ls_init/, dnn/<stage>/, unet/,
each with separator.json, Orbax checkpoints and operative_config.gin) and separators.json
mapping them; `mt3x-separate` and `mt3x-separate eval` read those directories. Run again with the
same --workdir to resume. See launch/common.py for all flags.
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
            bindings.append(f"MODEL_DIR = {common.quote(args.workdir)}")
        config = common.parse_gin_config(args.gin_file, bindings)
        if args.print_config:
            print(config)
            return 0
        common.setup_logging()
        common.enable_compilation_cache(common.bound_macro("MODEL_DIR"))
        from separation import gin_registry

        trained = gin_registry.train_separators(gin_config=config)
    except Mt3xError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for key, sep in trained.items():
        print(f"{key}: {sep.directory}")
    return 0


if __name__ == "__main__":
    common.exit_process(main())

"""Train or fine-tune MT3 from gin configs: `python launch/train.py --gin_file=... --workdir=...`.

    python launch/train.py --gin_file=experiments/demo_cpu.gin \
        --gin.DATASET_ROOT="'data/demo'" --workdir=runs/demo
    python launch/train.py --gin_file=experiments/mt3_slakh.gin \
        --gin.DATASET_ROOT="'/data/slakh2100'" --workdir=runs/mt3 --gin.BATCH_SIZE=64
    python launch/train.py --gin_file=experiments/finetune_demo.gin --workdir=runs/ft \
        --gin.DATASET_ROOT="'data/other'" --gin.INIT_CHECKPOINT="'runs/demo'"

Run again with the same --workdir to resume. See launch/common.py for all flags.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    def job(config: str):
        from mt3x.runs import gin_registry

        return gin_registry.train_mt3(gin_config=config)

    code, result = common.run_gin_entry(__doc__.splitlines()[0], argv, workdir_macro="MODEL_DIR",
                                        job=job, cache_macro="MODEL_DIR")
    if result is None:
        return code
    last = result.eval_history.get(result.step, {})
    print(f"trained to step {result.step} in {result.workdir}")
    if last:
        print("final evaluation: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(last.items())))
    return 0


if __name__ == "__main__":
    common.exit_process(main())

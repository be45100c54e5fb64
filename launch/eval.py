"""Evaluate an MT3 checkpoint on a dataset split from gin configs.

    python launch/eval.py --gin_file=runs/eval.gin --gin.CHECKPOINT="'runs/demo'" \
        --gin.DATASET_ROOT="'data/demo'" --workdir=runs/demo/eval_test

Prints MT3's metric table and writes <workdir>/metrics.json (averages, decoding health and
metrics per file), TensorBoard scalars under <workdir>/tensorboard/<domain>, plus one MIDI and
one piano-roll PNG per file when `mt3x.evaluate_mt3.write_midi = True`.

    --ood-data DIR     also score an out-of-domain Slakh-layout folder (e.g. one built by
                       `mt3x-data build --preset ood-eval`) and print in-domain and
                       out-of-domain side by side (binds OOD_DATASET_ROOT)
    --ood-split SPLIT  its split (default test; binds OOD_SPLIT)
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def ood_bindings(argv: list[str]) -> list[str]:
    """`--ood-data DIR` / `--ood-split S` (also `--ood-data=DIR`) -> `--gin.OOD_...` flags;
    the other arguments unchanged."""
    flags = {"--ood-data": "OOD_DATASET_ROOT", "--ood-split": "OOD_SPLIT"}
    out, i = [], 0
    while i < len(argv):
        name, eq, value = argv[i].partition("=")
        if name in flags:
            if not eq:
                if i + 1 >= len(argv):
                    raise ValueError(f"{name}: missing value (expected {name} DIR)")
                value, i = argv[i + 1], i + 1
            out.append(f"--gin.{flags[name]}={common.quote(value)}")
        else:
            out.append(argv[i])
        i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    try:
        argv = ood_bindings(list(sys.argv[1:] if argv is None else argv))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    def job(config: str):
        from mt3x.runs import gin_registry

        return gin_registry.evaluate_mt3(gin_config=config)

    code, result = common.run_gin_entry(__doc__.splitlines()[0], argv, workdir_macro="EVAL_OUTPUT_DIR",
                                        job=job)
    if result is None:
        return code
    from mt3x.runs.evaluate import split_domains
    from mt3x.transcription.evaluation import format_domains_table
    from mt3x.transcription.metrics import format_table

    domains = split_domains(result)
    for name, scores in domains.items():
        print(f"[{name}]")
        print(format_table(scores))
    print(format_domains_table(domains))
    return 0


if __name__ == "__main__":
    common.exit_process(main())

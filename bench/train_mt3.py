"""MT3 training throughput and model FLOP utilisation on this machine (bench/train.py harness).

    python bench/train_mt3.py                                  # small_cpu and mt3, batch 8
    python bench/train_mt3.py --configs small_cpu --batch 8 --target_length 1024 --steps 5
    python bench/train.py --model bench.train_mt3:mt3_small    # the harness directly

For each network it runs the full jitted train step (on-device log-mel front end, T5 forward and
backward, cross-entropy + z-loss, Adafactor update) on random batches of the production shapes
(256 raw sample frames of 128 samples, `--target_length` decoder tokens) and prints examples/s,
model FLOPs per step (XLA cost analysis; 6 x params x tokens for reference), the matmul FLOP/s
measured in the same process and MFU = model FLOP/s / matmul FLOP/s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train import BenchSpec, run  # noqa: E402  (bench/train.py: the trainer's harness)

FRAMES = 256
TARGET_LENGTH = 1024


def mt3_spec(config: str, batch_size: int, *, target_length: int = TARGET_LENGTH,
             loss_normalization: str = "sum") -> BenchSpec:
    """A BenchSpec for `Mt3Model(config)` on random batches of MT3's shapes.

    Targets are random valid model ids (3..1390) ending in EOS, with every position weighted
    (the worst case: a full 1024-token target).
    """
    from mt3x.models import Mt3Model

    model = Mt3Model(config, loss_normalization=loss_normalization,
                     max_decode_length=min(target_length, 1024))

    def make_batch(rng: np.random.Generator) -> dict[str, np.ndarray]:
        audio = (0.1 * rng.standard_normal((batch_size, FRAMES, 128))).astype(np.float32)
        targets = rng.integers(3, 1391, (batch_size, target_length)).astype(np.int32)
        targets[:, -1] = 1
        inputs = np.pad(targets[:, :-1], ((0, 0), (1, 0)))
        return {"encoder_input_tokens": audio, "decoder_input_tokens": inputs,
                "decoder_target_tokens": targets,
                "decoder_loss_weights": np.ones((batch_size, target_length), np.float32)}

    return BenchSpec(model, make_batch, FRAMES + target_length,
                     f"mt3x {config} (frames {FRAMES}, targets {target_length})")


def small_cpu(batch_size: int) -> BenchSpec:
    """`--model bench.train_mt3:small_cpu` for bench/train.py."""
    return mt3_spec("small_cpu", batch_size)


def mt3_small(batch_size: int) -> BenchSpec:
    """MT3's own network (T5.1.1 small, 45.9 M parameters): `--model bench.train_mt3:mt3_small`."""
    return mt3_spec("mt3", batch_size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["small_cpu", "mt3"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--target_length", type=int, default=TARGET_LENGTH)
    parser.add_argument("--steps", type=int, default=3, help="timed steps")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--optimizer", default="adafactor", choices=["adafactor", "adamw"])
    parser.add_argument("--matmul_size", type=int, default=2048)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    rows = []
    for config in args.configs:
        spec = mt3_spec(config, args.batch, target_length=args.target_length)
        figures = run(spec, batch_size=args.batch, steps=args.steps, warmup=args.warmup,
                      num_partitions=1, matmul_size=args.matmul_size, optimizer=args.optimizer)
        rows.append(figures)
        print(f"{figures['model']}: {figures['params']:,} params, batch {args.batch}, "
              f"{figures['devices']} x {figures['platform']}, load avg "
              f"{os.getloadavg()[0]:.1f}", flush=True)
        print(f"  compile {figures['compile_s']:.1f} s, step {figures['step_s']:.2f} s -> "
              f"{figures['examples_per_s']:.2f} examples/s", flush=True)
        xla = figures["xla_flops_per_step"]
        print(f"  model FLOPs/step {xla / 1e9 if xla else float('nan'):.1f} G (XLA), "
              f"{figures['6ND_flops_per_step'] / 1e9:.1f} G (6ND); model "
              f"{figures['model_flops_per_s'] / 1e9:.1f} GFLOP/s vs matmul "
              f"{figures['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s -> MFU "
              f"{figures['mfu'] * 100:.1f} %", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

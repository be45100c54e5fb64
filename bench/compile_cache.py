"""Cold vs warm compilation of the demo MT3 train step, each in a fresh process.

    python bench/compile_cache.py                      # the demo (configs/experiments/demo_cpu.gin)
    python bench/compile_cache.py --config mt3 --batch 8 --target_length 1024

Runs `bench/train_mt3.py --compile_only` twice with the same, initially empty, persistent
compilation cache directory (`mt3x.util.compilation_cache`): the first process compiles the
jitted train step and writes the cache (a first launch), the second loads it (a relaunch or a
resume of the same config). Prints the compile time of each, the ratio, the process wall times
(imports, state initialisation and compilation) and the cache's size. Target on CPU: warm < 10 s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
#: The demo network of configs/experiments/demo_cpu.gin (small_cpu narrowed), its batch and
#: targets, AdamW, no dropout.
DEMO = {"config": "small_cpu", "batch": 8, "target_length": 192, "optimizer": "adamw",
        "overrides": ["emb_dim=128", "num_heads=4", "head_dim=32", "mlp_dim=256",
                      "dropout_rate=0.0"]}


def compile_in_fresh_process(cache_dir: Path, out: Path, *, config: str, batch: int,
                             target_length: int, optimizer: str, overrides: list[str],
                             dtype: str = "float32") -> dict:
    """Runs one `train_mt3.py --compile_only` process; returns its figures + 'process_s'."""
    cmd = [sys.executable, str(BENCH / "train_mt3.py"), "--configs", config, "--batch",
           str(batch), "--target_length", str(target_length), "--optimizer", optimizer,
           "--dtype", dtype, "--compile_only", "--cache_dir", str(cache_dir), "--json", str(out)]
    for item in overrides:
        cmd += ["--override", item]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"train_mt3.py failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    figures = json.loads(out.read_text())[0]
    figures["process_s"] = seconds
    return figures


def _size(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=DEMO["config"])
    parser.add_argument("--batch", type=int, default=DEMO["batch"])
    parser.add_argument("--target_length", type=int, default=DEMO["target_length"])
    parser.add_argument("--optimizer", default=DEMO["optimizer"])
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--override", action="append", default=None,
                        help="T5Config FIELD=VALUE (default: the demo's narrowing)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    overrides = DEMO["overrides"] if args.override is None else args.override
    with tempfile.TemporaryDirectory(prefix="mt3x_compile_cache_") as tmp:
        cache = Path(tmp) / "jax_cache"
        kwargs = dict(config=args.config, batch=args.batch, target_length=args.target_length,
                      optimizer=args.optimizer, overrides=overrides, dtype=args.dtype)
        cold = compile_in_fresh_process(cache, Path(tmp) / "cold.json", **kwargs)
        files, size = _size(cache)
        warm = compile_in_fresh_process(cache, Path(tmp) / "warm.json", **kwargs)
    result = {"config": args.config, "overrides": overrides, "batch": args.batch,
              "target_length": args.target_length, "platform": cold["platform"],
              "cold_compile_s": cold["compile_s"], "warm_compile_s": warm["compile_s"],
              "ratio": cold["compile_s"] / warm["compile_s"],
              "cold_process_s": cold["process_s"], "warm_process_s": warm["process_s"],
              "cache_files": files, "cache_bytes": size}
    print(f"{cold['model']} ({', '.join(overrides) or 'as named'}), batch {args.batch}, "
          f"{cold['params']:,} params, {cold['devices']} x {cold['platform']}, "
          f"load avg {os.getloadavg()[0]:.1f}")
    result.update(cold_lower_s=cold["lower_s"], warm_lower_s=warm["lower_s"])
    print(f"  cold compile {result['cold_compile_s']:.2f} s (trace + lower {cold['lower_s']:.2f}"
          f" s; process {cold['process_s']:.1f} s)")
    print(f"  warm compile {result['warm_compile_s']:.2f} s (trace + lower {warm['lower_s']:.2f}"
          f" s; process {warm['process_s']:.1f} s), from {files} cache files, "
          f"{size / 2**20:.1f} MiB; persistent-cache hits {warm['cache_hits']}, misses "
          f"{warm['cache_misses']}")
    print(f"  cold / warm = {result['ratio']:.1f}x")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

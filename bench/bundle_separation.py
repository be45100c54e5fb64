"""Separator bundles vs checkpoints: bundle sizes, speed (x real time) and output differences.

    python bench/bundle_separation.py [--seconds 30] [--models dnn,unet] [--workdir /tmp/b]

For each separator at its default configuration (random parameters, saved as a step-0
checkpoint): exports float32 and bfloat16 bundles (CPU only), then separates the same
`--seconds` of noise-plus-tones audio (a length that is not a multiple of the hop) in this
process with `separate_with_model` (checkpoint path) and `BundleSeparator` (bundle path), each
twice (the first run includes compilation). Prints the sizes, times, x real time of the second
runs (and the ratio bundle / checkpoint), and the largest difference between the two paths.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402

from separation import checkpoints  # noqa: E402
from separation.bundle_export import export_separator_bundle  # noqa: E402
from separation.bundle_runtime import BundleSeparator  # noqa: E402
from separation.model_objects import DNNSeparator, UNetSeparator  # noqa: E402
from separation.separate import separate_with_model  # noqa: E402

MODELS = {"dnn": DNNSeparator, "unet": UNetSeparator}


def _mixture(seconds: float, rate: int, hop: int, seed: int = 0) -> np.ndarray:
    samples = int(seconds * rate)
    samples += (hop // 2 + 1) - samples % hop          # not a multiple of the hop
    t = np.arange(samples) / rate
    rng = np.random.default_rng(seed)
    tones = sum(0.1 * np.sin(2 * np.pi * f * t) for f in (110.0, 440.0, 1760.0))
    return (tones + 0.05 * rng.standard_normal(samples)).astype(np.float32)


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def bench(kind: str, seconds: float, workdir: Path) -> None:
    model = MODELS[kind]()
    example = {"mixture": np.zeros((1, model.sample_rate), np.float32)}
    params = jax.tree.map(np.asarray, nn.meta.unbox(model.init(jax.random.key(0), example)))
    run = workdir / kind
    checkpoints.save_params_checkpoint(run, model, params)
    sizes = {}
    for dtype in ("float32", "bfloat16"):
        out, took = _timed(lambda: export_separator_bundle(
            run, workdir / f"{kind}_{dtype}", dtype=dtype, platforms=("cpu",), overwrite=True))
        sizes[dtype] = sum(p.stat().st_size for p in out.iterdir())
        params_mib = (out / "params.safetensors").stat().st_size / 2 ** 20
        print(f"{kind} {dtype}: bundle {sizes[dtype] / 2 ** 20:.2f} MiB (params {params_mib:.2f} "
              f"MiB), exported in {took:.1f} s")
    n_params = sum(a.size for a in jax.tree.leaves(params))
    print(f"{kind}: {n_params:,} parameters; sr {model.sample_rate}, n_fft {model.n_fft}, "
          f"hop {model.hop_length}")
    mixture = _mixture(seconds, model.sample_rate, model.hop_length)
    duration = mixture.size / model.sample_rate
    loaded, _ = _timed(lambda: checkpoints.load_separator(run))
    ckpt_model, ckpt_params, _ = loaded
    separator, load_s = _timed(lambda: BundleSeparator(workdir / f"{kind}_float32"))
    results, speeds = {}, {}
    for label, fn in (("checkpoint", lambda: separate_with_model(ckpt_model, ckpt_params,
                                                                  mixture)),
                      ("bundle f32", lambda: separator.separate(mixture))):
        first, t1 = _timed(fn)
        _, t2 = _timed(fn)
        results[label], speeds[label] = first, duration / t2
        print(f"{kind} {label}: {duration:.1f} s audio; first run {t1:.2f} s, second {t2:.2f} s "
              f"= {duration / t2:.1f}x real time")
    print(f"{kind} bundle load {load_s:.2f} s; speed ratio bundle / checkpoint "
          f"{speeds['bundle f32'] / speeds['checkpoint']:.2f}")
    diff = np.abs(results["checkpoint"] - results["bundle f32"]).max()
    print(f"{kind} max |bundle - checkpoint| {diff:.2e} (output peak "
          f"{np.abs(results['checkpoint']).max():.2f})")
    bf16 = BundleSeparator(workdir / f"{kind}_bfloat16").separate(mixture)
    print(f"{kind} max |bf16 bundle - f32 bundle| {np.abs(bf16 - results['bundle f32']).max():.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--models", default="dnn,unet")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bundle_bench_"))
    try:
        for kind in args.models.split(","):
            bench(kind.strip(), args.seconds, workdir)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Separator speed on this machine: separation real-time factor and training examples/s.

    python bench/separators.py [--seconds 30] [--batch 8] [--window 2.0] [--steps 5]

For each model (DNN: 16 kHz, n_fft 256, C = 3, 3 layers, 4 instruments; U-Net: 16 kHz, n_fft 1024,
channels 16-32-64, 4 instruments; U-Net-44k: 44.1 kHz, n_fft 4096, channels 48-96-192-384):
- RTF = wall time of `separate_with_model` on `--seconds` of noise / `--seconds` (after one
  warm-up call that compiles), lower is faster;
- training examples/s = batch / mean wall time of the trainer's jitted train step (AdamW) over
  `--steps` steps after a compiling warm-up, on all local devices data-parallel.
Prints one JSON line per model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np  # noqa: E402
import optax  # noqa: E402

from mt3x.trainer import Partitioner, abstract_train_state, create_train_state
from mt3x.trainer.steps import jit_train_step, train_step_fn
from separation import separate
from separation.model_objects import DNNSeparator, UNetSeparator

INSTRUMENTS = ("bass", "drums", "guitar", "piano")


def _models(only: str | None):
    models = {
        "dnn": DNNSeparator(instruments=INSTRUMENTS, num_layers=3),
        "unet": UNetSeparator(instruments=INSTRUMENTS, sample_rate=16000, n_fft=1024,
                              hop_length=256, channels=(16, 32, 64)),
        "unet_44k": UNetSeparator(instruments=INSTRUMENTS),
    }
    return {k: v for k, v in models.items() if only in (None, k)}


def bench_model(name: str, model, *, seconds: float, batch: int, window: float, steps: int
                ) -> dict:
    rng = np.random.default_rng(0)
    sr = model.sample_rate
    window_samples = int(window * sr)
    example = {"mixture": rng.standard_normal((batch, window_samples)).astype(np.float32) * 0.1,
               "sources": rng.standard_normal((batch, len(INSTRUMENTS), window_samples)
                                              ).astype(np.float32) * 0.05}
    partitioner = Partitioner()
    optimizer = optax.adamw(1e-4)
    state = create_train_state(model=model, optimizer=optimizer, partitioner=partitioner,
                               batch=example, seed=0)
    abstract = abstract_train_state(model=model, optimizer=optimizer, partitioner=partitioner,
                                    batch=example)
    step = jit_train_step(train_step_fn(model, optimizer), partitioner, abstract)
    with partitioner.activate():
        global_batch = partitioner.make_global_batch(example)
        state, metrics = step(state, global_batch)
        jax.block_until_ready(metrics)
        t0 = time.perf_counter()
        for _ in range(steps):
            state, metrics = step(state, global_batch)
        jax.block_until_ready(metrics)
        step_time = (time.perf_counter() - t0) / steps
    params = jax.tree.map(np.asarray, jax.device_get(state.params))
    audio = (rng.standard_normal(int(seconds * sr)) * 0.1).astype(np.float32)
    separate.separate_with_model(model, params, audio)            # compile
    t0 = time.perf_counter()
    separate.separate_with_model(model, params, audio)
    sep_time = time.perf_counter() - t0
    return {"model": name, "sample_rate": sr, "n_fft": model.n_fft,
            "devices": jax.device_count(), "rtf": sep_time / seconds,
            "train_examples_per_s": batch / step_time, "train_step_s": step_time,
            "window_s": window, "batch": batch}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--window", type=float, default=2.0)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--model", choices=["dnn", "unet", "unet_44k"], default=None)
    args = parser.parse_args(argv)
    for name, model in _models(args.model).items():
        print(json.dumps(bench_model(name, model, seconds=args.seconds, batch=args.batch,
                                     window=args.window, steps=args.steps)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

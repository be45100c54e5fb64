"""Training throughput and model FLOP utilisation (MFU) of the mt3x trainer's jitted step.

    python bench/train.py                          # the built-in toy model, batch 8
    python bench/train.py --batch 16 --steps 20
    python bench/train.py --model mt3x.models.bench:small   # any 'module:factory' (see below)

Measures, in one process:
- examples/s of the full train step (forward, backward, optimizer update, metrics), timed over
  `--steps` steps after `--warmup` steps (compilation excluded);
- model FLOPs per step, from XLA's cost analysis of the compiled step (and, for comparison, the
  6 x parameters x tokens rule of thumb);
- the matmul FLOP/s this machine reaches in the same process (a jitted float32 `jnp.dot` of two
  `--matmul_size` square matrices);
- MFU = model FLOPs per second / matmul FLOP/s.

Plugging in a model: `--model pkg.module:factory` names a function `factory(batch_size: int)`
returning a `BenchSpec(model, make_batch, tokens_per_example, name)`: `model` implements the
trainer's Model protocol, `make_batch(rng: np.random.Generator) -> dict of numpy arrays` gives one
per-host batch, and `tokens_per_example` is what the 6ND estimate counts (for MT3: encoder frames
+ decoder tokens, 256 + 1024). The MT3 configs ('small' for CPU, 'mt3') plug in this way.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
import time
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass
class BenchSpec:
    """What the harness needs from a model factory."""

    model: Any
    make_batch: Callable[[np.random.Generator], dict[str, np.ndarray]]
    tokens_per_example: int
    name: str


class _TokenMLP(nn.Module):
    """Toy: a residual MLP block applied to every token of f32[B, T, d] (T5-like shapes)."""

    d_model: int
    d_ff: int
    layers: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        part = nn.with_logical_partitioning
        for i in range(self.layers):
            h = nn.Dense(self.d_ff, use_bias=False, name=f"layers_{i}_wi",
                         kernel_init=part(nn.initializers.lecun_normal(), ("embed", "mlp")))(x)
            x = x + nn.Dense(self.d_model, use_bias=False, name=f"layers_{i}_wo",
                             kernel_init=part(nn.initializers.lecun_normal(), ("mlp", "embed")))(
                nn.gelu(h))
        return x


class ToyTokenModel:
    """Regression of each token's features onto a fixed rotation of them; trainer Model API."""

    def __init__(self, d_model: int, d_ff: int, layers: int) -> None:
        self.net = _TokenMLP(d_model, d_ff, layers)

    def init(self, rng, batch):
        return self.net.init(rng, batch["inputs"])

    def loss(self, params, batch, rng):
        err = self.net.apply(params, batch["inputs"]) - batch["targets"]
        return jnp.mean(err ** 2), {}

    def predict(self, params, batch):
        return self.net.apply(params, batch["inputs"])


def toy(batch_size: int, *, length: int = 256, d_model: int = 256, d_ff: int = 1024,
        layers: int = 2) -> BenchSpec:
    """The built-in toy: 2 MLP blocks, d_model 256, d_ff 1024, 256 tokens per example."""

    def make_batch(rng: np.random.Generator) -> dict[str, np.ndarray]:
        x = rng.standard_normal((batch_size, length, d_model)).astype(np.float32)
        return {"inputs": x, "targets": np.roll(x, 1, axis=-1)}

    return BenchSpec(ToyTokenModel(d_model, d_ff, layers), make_batch, length,
                     f"toy(d_model={d_model}, d_ff={d_ff}, layers={layers}, length={length})")


def matmul_flops_per_second(size: int, repeats: int = 5) -> float:
    """float32 FLOP/s of a jitted size x size @ size x size matmul (best of `repeats`)."""
    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (size, size), jnp.float32)
    dot = jax.jit(jnp.dot)
    dot(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        dot(a, b).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2.0 * size ** 3 / best


def _cost_flops(compiled: Any) -> float | None:
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else None
    if not analysis or "flops" not in analysis:
        return None
    return float(analysis["flops"])


def run(spec: BenchSpec, *, batch_size: int, steps: int, warmup: int, num_partitions: int,
        matmul_size: int, optimizer: str) -> dict[str, Any]:
    """Times the train step; returns the figures as a dict."""
    from mt3x.trainer import Partitioner, abstract_train_state, create_train_state, make_optimizer
    from mt3x.trainer.steps import jit_train_step, train_step_fn

    partitioner = Partitioner(num_partitions=num_partitions)
    tx = make_optimizer(name=optimizer, learning_rate=1e-3)
    rng = np.random.default_rng(0)
    batches = [spec.make_batch(rng) for _ in range(2)]
    state = create_train_state(model=spec.model, optimizer=tx, partitioner=partitioner,
                               batch=batches[0], seed=0)
    abstract = abstract_train_state(model=spec.model, optimizer=tx, partitioner=partitioner,
                                    batch=batches[0])
    num_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(abstract.params))
    step = jit_train_step(train_step_fn(spec.model, tx), partitioner, abstract)
    device_batches = [partitioner.make_global_batch(b) for b in batches]
    with partitioner.activate():
        start = time.perf_counter()
        compiled = step.lower(state, device_batches[0]).compile()
        compile_seconds = time.perf_counter() - start
        for i in range(warmup):
            state, metrics = step(state, device_batches[i % 2])
        jax.block_until_ready(state)
        start = time.perf_counter()
        for i in range(steps):
            state, metrics = step(state, device_batches[i % 2])
        jax.block_until_ready(metrics)
        seconds = (time.perf_counter() - start) / steps
    xla_flops = _cost_flops(compiled)
    rule_flops = 6.0 * num_params * spec.tokens_per_example * batch_size
    model_flops = xla_flops if xla_flops else rule_flops
    peak = matmul_flops_per_second(matmul_size)
    return {
        "model": spec.name, "devices": jax.device_count(), "platform": jax.devices()[0].platform,
        "batch": batch_size, "params": num_params, "optimizer": optimizer,
        "compile_s": round(compile_seconds, 2), "step_s": seconds,
        "examples_per_s": batch_size / seconds,
        "xla_flops_per_step": xla_flops, "6ND_flops_per_step": rule_flops,
        "model_flops_per_s": model_flops / seconds, "matmul_flops_per_s": peak,
        "mfu": model_flops / seconds / peak,
        "flops_source": "xla_cost_analysis" if xla_flops else "6ND",
    }


def _factory(name: str) -> Callable[[int], BenchSpec]:
    if name == "toy":
        return toy
    module, _, attr = name.partition(":")
    if not attr:
        raise SystemExit(f"error: --model must be 'toy' or 'package.module:factory', got {name!r}")
    return getattr(importlib.import_module(module), attr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="toy", help="'toy' or 'package.module:factory'")
    parser.add_argument("--batch", type=int, default=8, help="global batch size")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps after compiling")
    parser.add_argument("--num_partitions", type=int, default=1, help="'model' mesh axis size")
    parser.add_argument("--optimizer", default="adafactor", choices=["adafactor", "adamw"])
    parser.add_argument("--matmul_size", type=int, default=2048)
    parser.add_argument("--json", action="store_true", help="print one JSON line only")
    args = parser.parse_args(argv)
    spec = _factory(args.model)(args.batch)
    figures = run(spec, batch_size=args.batch, steps=args.steps, warmup=args.warmup,
                  num_partitions=args.num_partitions, matmul_size=args.matmul_size,
                  optimizer=args.optimizer)
    if args.json:
        print(json.dumps(figures))
        return 0
    print(f"model            {figures['model']}  ({figures['params']:,} params)")
    print(f"devices          {figures['devices']} x {figures['platform']}, batch {args.batch}, "
          f"{args.optimizer}")
    print(f"compile          {figures['compile_s']:.1f} s")
    print(f"train step       {figures['step_s'] * 1e3:.1f} ms  ->  "
          f"{figures['examples_per_s']:.2f} examples/s")
    xla = figures["xla_flops_per_step"]
    print(f"model FLOPs/step {xla / 1e9 if xla else float('nan'):.2f} G (XLA cost analysis), "
          f"{figures['6ND_flops_per_step'] / 1e9:.2f} G (6 x params x tokens)")
    print(f"model FLOP/s     {figures['model_flops_per_s'] / 1e9:.2f} G "
          f"({figures['flops_source']})")
    print(f"matmul FLOP/s    {figures['matmul_flops_per_s'] / 1e9:.2f} G "
          f"(float32 {args.matmul_size}^3 jnp.dot, same process)")
    print(f"MFU              {figures['mfu'] * 100:.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())

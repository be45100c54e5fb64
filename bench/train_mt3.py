"""MT3 training throughput, model FLOP utilisation, peak memory and compile time.

    python bench/train_mt3.py                                  # small_cpu and mt3, batch 8
    python bench/train_mt3.py --configs mt3 --batch 64 --dtype bfloat16 --attention auto
    python bench/train_mt3.py --configs small_cpu --steps 5 --cache_dir /tmp/jc --recompile
    python bench/train.py --model bench.train_mt3:mt3_small    # the generic harness

For each network it runs the full jitted train step (on-device log-mel front end, T5 forward and
backward, cross-entropy + z-loss, Adafactor/AdamW update) on random batches of the production
shapes (256 raw sample frames of 128 samples, `--target_length` decoder tokens, every target
position weighted) and prints:
- compile time (tracing + lowering, then XLA compilation of the step; with `--cache_dir` the persistent
  compilation cache is on, and `--recompile` clears JAX's in-memory caches and compiles again,
  which is what a relaunch costs);
- examples/s over `--steps` timed steps after `--warmup` untimed ones;
- analytic model FLOPs per example (`analytic_flops`), the formula printed with the figures:
    6 x (matmul parameters x the tokens they see) + 12 x (attention q.k and p.v terms), i.e.
    6 x [P_enc x S + P_cross_kv x S + P_dec x T] + 12 x inner x [L_e S^2 + L_d T^2 + L_d T S]
  with S encoder frames, T decoder tokens, inner = heads x head_dim, P_enc = input projection +
  encoder layers' q,k,v,o and MLP kernels, P_dec = decoder layers' self q,k,v,o, cross q,o and
  MLP kernels + the logits projection, P_cross_kv = decoder cross-attention k,v kernels (applied
  to encoder frames); the token embedding is a gather (no FLOPs); causal attention counted in
  full; 6 = 2 (multiply-add) x 3 (forward + backward). MT3 (256 frames, 1024 tokens): 225 GFLOP.
- MFU = FLOPs per example x examples/s / (`--peak_tflops` per device x devices); the default
  peak comes from the device kind (dense bfloat16 tensor-core rates for bfloat16, TF32 rates for
  float32, which XLA uses for float32 matmuls on GPUs; 'n/a' on CPU unless given);
- peak device memory (`device.memory_stats()['peak_bytes_in_use']`; 'n/a' where unavailable).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

sys.path.append(str(Path(__file__).resolve().parent))  # appended: never shadows a package
from train import BenchSpec  # noqa: E402  (bench/train.py: the trainer's harness)

from mt3x.models import Mt3Model, T5Config, get_config  # noqa: E402
from mt3x.models.layers import resolve_attention_impl  # noqa: E402
from mt3x.trainer import (Partitioner, abstract_train_state, create_train_state,  # noqa: E402
                          make_optimizer)
from mt3x.trainer.steps import jit_train_step, train_step_fn  # noqa: E402
from mt3x.util.compilation_cache import ENV_VAR, enable_compilation_cache  # noqa: E402

FRAMES = 256
TARGET_LENGTH = 1024
#: Persistent-cache events seen in this process (jax.monitoring), for the figures.
CACHE_EVENTS = {"/jax/compilation_cache/cache_hits": 0, "/jax/compilation_cache/cache_misses": 0}


def _count_cache_event(event: str, **kwargs: Any) -> None:
    if event in CACHE_EVENTS:
        CACHE_EVENTS[event] += 1


jax.monitoring.register_event_listener(_count_cache_event)
SAMPLES_PER_FRAME = 128
FLOP_FORMULA = ("6 x [P_enc x S + P_cross_kv x S + P_dec x T] "
                "+ 12 x heads x head_dim x [L_enc S^2 + L_dec T^2 + L_dec T S]")

#: Dense peak TFLOP/s per device by (device-kind substring, dtype); the first match wins.
#: bfloat16: tensor-core dense rates; float32: TF32 tensor-core dense rates (XLA's default for
#: float32 matmuls on Ampere and later); TPUs: bfloat16 rates for both.
PEAK_TFLOPS: tuple[tuple[str, float, float], ...] = (
    # substring, bfloat16, float32
    ("h200", 989.0, 494.0),
    ("h100 pcie", 756.0, 378.0),
    ("h100", 989.0, 494.0),
    ("gh200", 989.0, 494.0),
    ("b200", 2250.0, 1100.0),
    ("a100", 312.0, 156.0),
    ("l40s", 362.0, 183.0),
    ("l4", 121.0, 60.0),
    ("a10", 125.0, 62.5),
    ("rtx 4090", 165.0, 82.6),
    ("v100", 125.0, 15.7),
    ("tpu v6", 918.0, 918.0),
    ("tpu v5p", 459.0, 459.0),
    ("tpu v5", 197.0, 197.0),
    ("tpu v4", 275.0, 275.0),
)


def default_peak_tflops(device_kind: str, dtype: str) -> float | None:
    """Peak dense TFLOP/s of one device for `dtype` ('bfloat16'/'float32'), None if unknown."""
    kind = device_kind.lower()
    for name, bf16, fp32 in PEAK_TFLOPS:
        if name in kind:
            return bf16 if dtype == "bfloat16" else fp32
    return None


def analytic_flops(cfg: T5Config, frames: int = FRAMES,
                   target_length: int = TARGET_LENGTH) -> dict[str, float]:
    """Training FLOPs of one example (forward + backward), by term; see the module docstring.

    Returns:
      {'encoder_matmul', 'cross_kv_matmul', 'decoder_matmul', 'encoder_attention',
       'decoder_self_attention', 'cross_attention', 'total'} in FLOPs (float).
    """
    d, inner, mlp = cfg.emb_dim, cfg.num_heads * cfg.head_dim, cfg.mlp_dim
    mlp_params = (len(cfg.mlp_activations) + 1) * d * mlp
    enc_params = cfg.input_depth * d + cfg.num_encoder_layers * (4 * d * inner + mlp_params)
    dec_params = (cfg.num_decoder_layers * (4 * d * inner + 2 * d * inner + mlp_params)
                  + d * cfg.vocab_size)
    cross_kv_params = cfg.num_decoder_layers * 2 * d * inner
    s, t = frames, target_length
    terms = {
        "encoder_matmul": 6.0 * enc_params * s,
        "cross_kv_matmul": 6.0 * cross_kv_params * s,
        "decoder_matmul": 6.0 * dec_params * t,
        "encoder_attention": 12.0 * inner * cfg.num_encoder_layers * s * s,
        "decoder_self_attention": 12.0 * inner * cfg.num_decoder_layers * t * t,
        "cross_attention": 12.0 * inner * cfg.num_decoder_layers * t * s,
    }
    terms["total"] = sum(terms.values())
    return terms


def peak_memory_bytes() -> int | None:
    """Largest `peak_bytes_in_use` over local devices, None where JAX does not report it."""
    peaks = []
    for device in jax.local_devices():
        try:
            stats = device.memory_stats()
        except Exception:  # noqa: BLE001  (some backends raise instead of returning None)
            stats = None
        if stats and "peak_bytes_in_use" in stats:
            peaks.append(int(stats["peak_bytes_in_use"]))
    return max(peaks) if peaks else None


def _parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """['emb_dim=128', 'mlp_activations=["gelu","linear"]'] -> {field: JSON value or string}."""
    overrides: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"error: --override expects KEY=VALUE, got {item!r}")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


def mt3_spec(config: str | T5Config, batch_size: int, *, target_length: int = TARGET_LENGTH,
             loss_normalization: str = "sum", dtype: str | None = None,
             attention_impl: str | None = None, **overrides: Any) -> BenchSpec:
    """A BenchSpec for `Mt3Model(config)` on random batches of MT3's shapes.

    Targets are random valid model ids (3..1390) ending in EOS, with every position weighted
    (the worst case: a full `target_length` target). `dtype`, `attention_impl` and `overrides`
    replace `T5Config` fields.
    """
    if dtype is not None:
        overrides["dtype"] = dtype
    if attention_impl is not None:
        overrides["attention_impl"] = attention_impl
    if isinstance(config, str):
        cfg = get_config(config, **overrides)
    else:
        cfg = dataclasses.replace(config, **overrides)
    model = Mt3Model(cfg, loss_normalization=loss_normalization,
                     max_decode_length=min(target_length, cfg.max_length))

    def make_batch(rng: np.random.Generator) -> dict[str, np.ndarray]:
        audio = 0.1 * rng.standard_normal((batch_size, FRAMES, SAMPLES_PER_FRAME))
        targets = rng.integers(3, 1391, (batch_size, target_length)).astype(np.int32)
        targets[:, -1] = 1
        inputs = np.pad(targets[:, :-1], ((0, 0), (1, 0)))
        return {"encoder_input_tokens": audio.astype(np.float32), "decoder_input_tokens": inputs,
                "decoder_target_tokens": targets,
                "decoder_loss_weights": np.ones((batch_size, target_length), np.float32)}

    name = config if isinstance(config, str) else "custom"
    return BenchSpec(model, make_batch, FRAMES + target_length,
                     f"mt3x {name} {cfg.dtype} (frames {FRAMES}, targets {target_length})")


def small_cpu(batch_size: int) -> BenchSpec:
    """`--model bench.train_mt3:small_cpu` for bench/train.py."""
    return mt3_spec("small_cpu", batch_size)


def mt3_small(batch_size: int) -> BenchSpec:
    """MT3's own network (T5.1.1 small, 45.9 M parameters): `--model bench.train_mt3:mt3_small`."""
    return mt3_spec("mt3", batch_size)


def measure_train_step(spec: BenchSpec, *, batch_size: int, steps: int = 3, warmup: int = 1,
                       optimizer: str = "adafactor", compile_only: bool = False,
                       recompile: bool = False, peak_tflops: float | None = None,
                       target_length: int = TARGET_LENGTH) -> dict[str, Any]:
    """Compiles and times the jitted train step of `spec.model` on one batch size.

    Args:
      spec: from `mt3_spec`.
      batch_size: global batch (split over all devices along 'data').
      steps, warmup: timed and untimed steps after compiling.
      optimizer: 'adafactor' (MT3) or 'adamw'.
      compile_only: stop after compiling (fills the persistent cache; no steps).
      recompile: after the first compile, `jax.clear_caches()` and compile again; the second
        time is `warm_compile_s` (from the persistent cache when it is on).
      peak_tflops: peak dense TFLOP/s of one device; default from the device kind.
      target_length: decoder tokens per example (for the FLOP count).

    Returns:
      A JSON-able dict of figures (seconds, examples/s, FLOPs, MFU, bytes; None = n/a).
    """
    model: Mt3Model = spec.model
    cfg = model.config
    partitioner = Partitioner(num_partitions=1)
    tx = make_optimizer(name=optimizer, learning_rate=1e-3)
    rng = np.random.default_rng(0)
    batches = [spec.make_batch(rng) for _ in range(2)]
    state = create_train_state(model=model, optimizer=tx, partitioner=partitioner,
                               batch=batches[0], seed=0)
    abstract = abstract_train_state(model=model, optimizer=tx, partitioner=partitioner,
                                    batch=batches[0])
    num_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(abstract.params))
    device_batches = [partitioner.make_global_batch(b) for b in batches]
    device = jax.devices()[0]
    flops = analytic_flops(cfg, FRAMES, target_length)
    peak = peak_tflops if peak_tflops else default_peak_tflops(device.device_kind, cfg.dtype)
    figures: dict[str, Any] = {
        "model": spec.name, "config": dataclasses.asdict(cfg), "params": num_params,
        "batch": batch_size, "dtype": cfg.dtype, "optimizer": optimizer,
        "attention_impl": resolve_attention_impl(cfg.attention_impl, cfg.activation_dtype),
        "devices": jax.device_count(), "platform": device.platform,
        "device_kind": device.device_kind, "flop_formula": FLOP_FORMULA,
        "flops_per_example": flops["total"], "flops_terms": flops, "peak_tflops": peak,
        "compilation_cache": jax.config.values.get("jax_compilation_cache_dir"),
    }

    def compile_once() -> tuple[float, float]:
        """(trace + lower seconds, total seconds including XLA compilation)."""
        step = jit_train_step(train_step_fn(model, tx), partitioner, abstract)
        start = time.perf_counter()
        lowered = step.lower(state, device_batches[0])
        lower_s = time.perf_counter() - start
        lowered.compile()
        return lower_s, time.perf_counter() - start

    with partitioner.activate():
        figures["lower_s"], figures["compile_s"] = compile_once()
        if recompile:
            jax.clear_caches()
            figures["warm_lower_s"], figures["warm_compile_s"] = compile_once()
        figures["cache_hits"] = CACHE_EVENTS["/jax/compilation_cache/cache_hits"]
        figures["cache_misses"] = CACHE_EVENTS["/jax/compilation_cache/cache_misses"]
        if compile_only:
            return figures
        step = jit_train_step(train_step_fn(model, tx), partitioner, abstract)
        for i in range(warmup):
            state, metrics = step(state, device_batches[i % 2])
        jax.block_until_ready(state)
        start = time.perf_counter()
        for i in range(steps):
            state, metrics = step(state, device_batches[i % 2])
        jax.block_until_ready(metrics)
        seconds = (time.perf_counter() - start) / steps
    examples_per_s = batch_size / seconds
    model_flops_per_s = flops["total"] * examples_per_s
    figures.update({
        "step_s": seconds, "examples_per_s": examples_per_s,
        "model_tflops_per_s": model_flops_per_s / 1e12,
        "mfu": model_flops_per_s / (peak * 1e12 * jax.device_count()) if peak else None,
        "peak_memory_bytes": peak_memory_bytes(),
        "loss": float(metrics["loss"]) if "loss" in metrics else None,
    })
    return figures


def format_figures(fig: dict[str, Any]) -> str:
    """Human-readable lines for one `measure_train_step` result."""
    mem = fig.get("peak_memory_bytes")
    mfu = fig.get("mfu")
    warm = fig.get("warm_compile_s")
    lines = [
        f"{fig['model']}: {fig['params']:,} params, batch {fig['batch']}, {fig['devices']} x "
        f"{fig['device_kind']}, attention {fig['attention_impl']}, {fig['optimizer']}",
        f"  compile {fig['compile_s']:.1f} s (trace + lower {fig['lower_s']:.1f} s)"
        + (f", warm {warm:.1f} s (ratio "
                                                 f"{fig['compile_s'] / warm:.1f}x)"
                                                 if warm else ""),
    ]
    if "examples_per_s" in fig:
        peak = f"{fig['peak_tflops']:.0f} TFLOP/s per device" if fig["peak_tflops"] else "n/a"
        lines += [
            f"  step {fig['step_s'] * 1e3:.1f} ms -> {fig['examples_per_s']:.2f} examples/s",
            f"  model FLOPs/example {fig['flops_per_example'] / 1e9:.2f} G = {FLOP_FORMULA}",
            f"  model {fig['model_tflops_per_s']:.3f} TFLOP/s vs peak {peak} -> MFU "
            + (f"{100 * mfu:.1f} %" if mfu is not None else "n/a (pass --peak_tflops)"),
            "  peak device memory " + (f"{mem / 2**30:.2f} GiB" if mem else "n/a"),
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["small_cpu", "mt3"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--attention", default=None,
                        choices=["reference", "xla", "cudnn", "auto"],
                        help="T5Config.attention_impl (default: the config's, 'reference')")
    parser.add_argument("--override", action="append", metavar="FIELD=VALUE",
                        help="replace a T5Config field (JSON value), e.g. emb_dim=128")
    parser.add_argument("--target_length", type=int, default=TARGET_LENGTH)
    parser.add_argument("--steps", type=int, default=3, help="timed steps")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--optimizer", default="adafactor", choices=["adafactor", "adamw"])
    parser.add_argument("--peak_tflops", type=float, default=None,
                        help="peak dense TFLOP/s of one device (default: by device kind)")
    parser.add_argument("--cache_dir", default=None,
                        help="turn the persistent compilation cache on, in this directory")
    parser.add_argument("--recompile", action="store_true",
                        help="clear JAX's caches and compile again (warm compile time)")
    parser.add_argument("--compile_only", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.cache_dir:
        os.environ[ENV_VAR] = args.cache_dir
        enable_compilation_cache()
    overrides = _parse_overrides(args.override)
    rows = []
    for config in args.configs:
        spec = mt3_spec(config, args.batch, target_length=args.target_length, dtype=args.dtype,
                        attention_impl=args.attention, **overrides)
        figures = measure_train_step(
            spec, batch_size=args.batch, steps=args.steps, warmup=args.warmup,
            optimizer=args.optimizer, compile_only=args.compile_only, recompile=args.recompile,
            peak_tflops=args.peak_tflops, target_length=args.target_length)
        rows.append(figures)
        print(format_figures(figures) + f"\n  load avg {os.getloadavg()[0]:.1f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

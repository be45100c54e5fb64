"""Inference speed of the MT3 network: encoder time, decoder tokens/s, real-time factor.

For each model config, on a batch of random 256-frame segments (2.048 s of audio each) and
randomly initialised parameters, it times (after one warm-up call that compiles):
- the encoder (log-mel frames -> encoded frames),
- greedy decoding of exactly `--decode-len` tokens (EOS disabled so every run does the same
  work) with each decoder: `cached` (ours: self-attention cache, cross-attention keys/values
  projected once per segment), `self_cache` (t5x/MT3: cross-attention keys/values recomputed
  every step) and `uncached` (the whole decoder rerun every step);
and prints decoder tokens/s (batch * decode_len / decode time) and the real-time factor
RTF = (encoder + decoder time) / (batch * 2.048 s)  (below 1 = faster than real time).

Usage:
  python bench/infer.py                                  # tiny, small_cpu, mt3 at batch 8
  python bench/infer.py --configs mt3 --batch 8 --decode-len 32 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

SEGMENT_SECONDS = 256 * 128 / 16000  # 2.048 s


def _time(fn: Any, *args: Any, repeats: int) -> float:
    """Median wall time (s) of `fn(*args)` over `repeats` runs after one warm-up call."""
    import jax

    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_config(name: str, *, batch_size: int, decode_len: int, decoders: list[str],
                 repeats: int, seed: int = 0, dtype: str = "float32",
                 attention: str = "reference") -> dict[str, Any]:
    """Times one config; returns a dict of figures (seconds, tokens/s, RTF).

    `dtype` and `attention` set `T5Config.dtype` / `T5Config.attention_impl`."""
    import flax.linen as nn
    import jax
    import numpy as np

    from mt3x.models import Mt3Model, get_config, greedy_decode

    model = Mt3Model(get_config(name, dropout_rate=0.0, dtype=dtype, attention_impl=attention),
                     inputs="log_mel", max_decode_length=decode_len)
    rng = np.random.default_rng(seed)
    batch = {"encoder_input_tokens":
             rng.normal(size=(batch_size, 256, model.config.input_depth)).astype(np.float32)}
    params = nn.unbox(jax.jit(model.init)(jax.random.key(seed), batch))
    num_params = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(params))

    encode = jax.jit(model.encode)
    encoder_s = _time(encode, params, batch, repeats=repeats)
    encoded = encode(params, batch)

    result: dict[str, Any] = {"config": name, "dtype": dtype, "attention": attention,
                              "params": num_params, "batch": batch_size,
                              "decode_len": decode_len, "encoder_s": encoder_s,
                              "decoders": {}}
    for decoder in decoders:
        decode = jax.jit(lambda p, e, decoder=decoder: greedy_decode(
            model.network, p, e, decode_len, decoder=decoder, eos_id=-1))  # never stops early
        decode_s = _time(decode, params, encoded, repeats=repeats)
        tokens = batch_size * decode_len
        result["decoders"][decoder] = {
            "decode_s": decode_s, "tokens_per_s": tokens / decode_s,
            "ms_per_step": 1000 * decode_s / decode_len,
            "rtf": (encoder_s + decode_s) / (batch_size * SEGMENT_SECONDS)}
    return result


def _print(result: dict[str, Any]) -> None:
    print(f"\n{result['config']} ({result['dtype']}, attention {result['attention']}): "
          f"{result['params']:,} parameters, batch {result['batch']}, "
          f"{result['decode_len']} decoded tokens per segment")
    print(f"  encoder: {1000 * result['encoder_s']:.1f} ms per batch "
          f"({1000 * result['encoder_s'] / result['batch']:.1f} ms per 2.048 s segment)")
    print(f"  {'decoder':<11} {'tokens/s':>10} {'ms/step':>9} {'RTF':>8} {'speed-up':>9}")
    base = result["decoders"].get("self_cache", {}).get("tokens_per_s")
    for decoder, fig in result["decoders"].items():
        speedup = f"{fig['tokens_per_s'] / base:.2f}x" if base else "-"
        print(f"  {decoder:<11} {fig['tokens_per_s']:>10.1f} {fig['ms_per_step']:>9.2f} "
              f"{fig['rtf']:>8.3f} {speedup:>9}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=["tiny", "small_cpu", "mt3"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--decode-len", type=int, default=32,
                        help="tokens decoded per segment (MT3 allows up to 1024)")
    parser.add_argument("--decoders", nargs="+", default=["cached", "self_cache", "uncached"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--attention", default="reference",
                        choices=["reference", "xla", "cudnn", "auto"])
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax

    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPU cores, "
          f"load average {os.getloadavg()[0]:.1f}")
    results = []
    for name in args.configs:
        result = bench_config(name, batch_size=args.batch, decode_len=args.decode_len,
                              decoders=args.decoders, repeats=args.repeats,
                              dtype=args.dtype, attention=args.attention)
        _print(result)
        results.append(result)
    if args.json:
        from mt3x.util.files import atomic_path

        with atomic_path(args.json) as tmp:
            with open(tmp, "w") as f:
                json.dump({"load_average": os.getloadavg()[0], "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

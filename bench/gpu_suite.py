"""One accelerator benchmark for mt3x: train step, decoding, front end, input pipeline, PyTorch.

    python bench/gpu_suite.py --out gpu_suite.json          # one GPU, <= 8 minutes
    python bench/gpu_suite.py --quick --out quick.json      # tiny shapes on CPU, < 60 s

Sections, printed as a table and written as JSON (`--out`):
- train: MT3's jitted train step (on-device log-mel, T5 forward/backward, z-loss, Adafactor) at
  MT3's shapes (256 frames, 1024 target tokens), float32 and bfloat16, batch 64 and 256:
  examples/s, analytic model FLOPs and MFU (see bench/train_mt3.py for the formula), peak device
  memory, compile time cold (a first launch, empty persistent cache) and warm (a relaunch: a new
  process loading the cache). Each row runs `bench/train_mt3.py` in its own process, so peak
  memory is per row; the cold compiles run `--parallel_compiles` at a time. bfloat16 rows use
  `--attention` (default 'auto': cuDNN fused attention on a GPU), float32 rows the reference.
- decode: cached greedy decoding (`mt3x.models.decoding`, EOS disabled) of batch 64 x 256 tokens,
  float32 and bfloat16: tokens/s.
- spectral: `mt3x.audio.stft` (n_fft 2048, hop 512) and MT3's log-mel front end
  (`mt3x.audio.mt3_log_mel`): seconds of audio per second.
- grain: `mt3x.tasks.grain_pipeline.benchmark_pipeline(quick=...)` (a dict of examples/s
  figures: per worker and with N workers) when that module exists; else one line saying so.
- torch: if torch and transformers import, the same network shapes in Hugging Face T5
  (`inputs_embeds` from a 512 -> 512 projection of log-mel frames, AdamW; float32 with TF32 and
  bfloat16 autocast) at the first train batch size, `generate` tokens/s at the decode shapes, and
  `torch.stft` at the STFT shapes; run in a subprocess (JAX and PyTorch do not share a GPU's
  memory pool well).
Rows that fail (e.g. out of memory) are reported with their error; rows that would start after
`--budget_s` are reported as skipped. Needs no TensorFlow, seqio or soundfile.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mt3x.audio import mt3_log_mel, stft
from mt3x.models import Transformer, get_config, greedy_decode

BENCH = Path(__file__).resolve().parent
sys.path.append(str(BENCH))  # appended: a bench module must not shadow a package
from train_mt3 import FRAMES, SAMPLES_PER_FRAME, analytic_flops  # noqa: E402

SAMPLE_RATE = 16000
GRAIN_MODULE = "mt3x.tasks.grain_pipeline"


@dataclasses.dataclass(frozen=True)
class Shapes:
    """What the suite runs: the full GPU suite or `--quick`."""

    config: str
    target_length: int
    train_batches: tuple[int, ...]
    dtypes: tuple[str, ...]
    steps: int
    warmup: int
    decode_batch: int
    decode_len: int
    clips: int
    clip_seconds: float
    repeats: int


FULL = Shapes("mt3", 1024, (64, 256), ("float32", "bfloat16"), steps=10, warmup=2,
              decode_batch=64, decode_len=256, clips=64, clip_seconds=30.0, repeats=5)
QUICK = Shapes("tiny", 32, (2,), ("float32", "bfloat16"), steps=2, warmup=1, decode_batch=2,
               decode_len=8, clips=2, clip_seconds=4.1, repeats=2)


class Budget:
    """Wall-clock budget of the whole suite."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = time.perf_counter()

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)


def _median_time(fn: Callable[[], Any], repeats: int) -> float:
    """Median seconds of `fn()` (blocked until ready) over `repeats` runs; no warm-up."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _last_error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    hits = [line for line in lines if "Error" in line or "RESOURCE_EXHAUSTED" in line]
    return (hits or lines or ["(no output)"])[-1][:500]


# ------------------------------------------------------------------------------------------
# Train step rows: one bench/train_mt3.py process each
# ------------------------------------------------------------------------------------------
def _train_cmd(shapes: Shapes, dtype: str, batch: int, attention: str, cache_dir: Path,
               out: Path, *, compile_only: bool) -> list[str]:
    cmd = [sys.executable, str(BENCH / "train_mt3.py"), "--configs", shapes.config, "--batch",
           str(batch), "--dtype", dtype, "--target_length", str(shapes.target_length),
           "--attention", attention if dtype == "bfloat16" else "reference",
           "--steps", str(shapes.steps), "--warmup", str(shapes.warmup),
           "--cache_dir", str(cache_dir), "--json", str(out)]
    return cmd + (["--compile_only"] if compile_only else [])


def _read_row(proc: subprocess.CompletedProcess | None, out: Path) -> dict[str, Any]:
    if proc is not None and proc.returncode == 0 and out.exists():
        return json.loads(out.read_text())[0]
    return {"error": "timed out" if proc is None else _last_error_line(proc.stderr)}


def bench_train(shapes: Shapes, *, attention: str, parallel: int, budget: Budget,
                workdir: Path) -> list[dict[str, Any]]:
    """Cold compiles (compile-only processes, `parallel` at a time, one fresh cache), then
    one measuring process per row (its compile is the warm one)."""
    cache_dir = workdir / "jax_cache"
    rows = [(dtype, batch) for batch in shapes.train_batches for dtype in shapes.dtypes]
    cold_env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    cold: dict[tuple[str, int], dict[str, Any]] = {}
    pending = list(rows)
    while pending:
        group, pending = pending[:parallel], pending[parallel:]
        procs = []
        for dtype, batch in group:
            out = workdir / f"cold_{dtype}_{batch}.json"
            cmd = _train_cmd(shapes, dtype, batch, attention, cache_dir, out, compile_only=True)
            procs.append(((dtype, batch), out, subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cold_env)))
        for key, out, popen in procs:
            try:
                stdout, stderr = popen.communicate(timeout=max(budget.left(), 1.0))
                done = subprocess.CompletedProcess(popen.args, popen.returncode, stdout, stderr)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.communicate()
                done = None
            cold[key] = _read_row(done, out)
    results = []
    for dtype, batch in rows:
        row: dict[str, Any] = {"dtype": dtype, "batch": batch}
        if "error" in cold[(dtype, batch)]:
            row["error"] = "cold compile: " + cold[(dtype, batch)]["error"]
        elif budget.left() <= 0:
            row["error"] = "skipped: time budget"
        else:
            out = workdir / f"warm_{dtype}_{batch}.json"
            cmd = _train_cmd(shapes, dtype, batch, attention, cache_dir, out, compile_only=False)
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True,
                                      timeout=max(budget.left(), 1.0))
            except subprocess.TimeoutExpired:
                proc = None
            figures = _read_row(proc, out)
            if "error" in figures:
                row["error"] = figures["error"]
            else:
                row.update(figures)
                row["warm_compile_s"] = figures["compile_s"]
                row["compile_s"] = cold[(dtype, batch)]["compile_s"]
        print(f"  train {dtype} batch {batch}: " + (
            row.get("error") or f"{row['examples_per_s']:.1f} examples/s"), flush=True)
        results.append(row)
    return results


# ------------------------------------------------------------------------------------------
# In-process JAX sections
# ------------------------------------------------------------------------------------------
def bench_decode(shapes: Shapes, dtype: str) -> dict[str, Any]:
    """Cached greedy decoding of `decode_batch` x `decode_len` tokens from random encodings."""
    cfg = get_config(shapes.config, dtype=dtype, dropout_rate=0.0, attention_impl="auto")
    net = Transformer(cfg)
    rng = np.random.default_rng(0)
    features = jnp.asarray(rng.normal(size=(shapes.decode_batch, FRAMES, cfg.input_depth)),
                           jnp.float32)
    tokens = jnp.zeros((1, 1), jnp.int32)
    params = nn.unbox(jax.jit(lambda key: net.init(key, features[:1], tokens, tokens,
                                                   enable_dropout=False))(jax.random.key(0)))
    params = params["params"]
    encode = jax.jit(lambda p, x: net.apply({"params": p}, x, method=Transformer.encode))
    decode = jax.jit(lambda p, e: greedy_decode(net, p, e, shapes.decode_len, eos_id=-1))
    start = time.perf_counter()
    encoded = jax.block_until_ready(encode(params, features))
    jax.block_until_ready(decode(params, encoded))
    compile_s = time.perf_counter() - start
    decode_s = _median_time(lambda: decode(params, encoded), shapes.repeats)
    encode_s = _median_time(lambda: encode(params, features), shapes.repeats)
    generated = shapes.decode_batch * shapes.decode_len
    return {"dtype": dtype, "batch": shapes.decode_batch, "decode_len": shapes.decode_len,
            "compile_s": compile_s, "decode_s": decode_s, "encode_s": encode_s,
            "tokens_per_s": generated / decode_s}


def bench_spectral(shapes: Shapes) -> list[dict[str, Any]]:
    """`stft` (n_fft 2048, hop 512) of clips and MT3's log-mel of 256-frame segments."""
    rng = np.random.default_rng(0)
    samples = int(shapes.clip_seconds * SAMPLE_RATE)
    audio = jnp.asarray(0.1 * rng.standard_normal((shapes.clips, samples)), jnp.float32)
    segments = samples // (FRAMES * SAMPLES_PER_FRAME)
    frames = audio[:, :segments * FRAMES * SAMPLES_PER_FRAME].reshape(
        shapes.clips * segments, FRAMES, SAMPLES_PER_FRAME)
    rows = []
    for name, fn, x, seconds in (
            ("stft n_fft=2048 hop=512", jax.jit(lambda a: stft(a, 2048, 512)), audio,
             shapes.clips * shapes.clip_seconds),
            ("mt3_log_mel 256x128 frames", jax.jit(mt3_log_mel), frames,
             frames.shape[0] * FRAMES * SAMPLES_PER_FRAME / SAMPLE_RATE)):
        start = time.perf_counter()
        jax.block_until_ready(fn(x))
        compile_s = time.perf_counter() - start
        run_s = _median_time(lambda fn=fn, x=x: fn(x), shapes.repeats)
        rows.append({"name": name, "shape": list(x.shape), "compile_s": compile_s,
                     "run_s": run_s, "audio_seconds_per_s": seconds / run_s})
    return rows


def bench_grain(quick: bool) -> dict[str, Any]:
    """The Grain input pipeline's own benchmark, when `mt3x.tasks.grain_pipeline` exists."""
    if importlib.util.find_spec(GRAIN_MODULE) is None:
        return {"available": False, "note": f"{GRAIN_MODULE} is not available"}
    module = importlib.import_module(GRAIN_MODULE)
    try:
        figures = module.benchmark_pipeline(quick=quick)
    except Exception as error:  # noqa: BLE001  (a failing section must not stop the suite)
        return {"available": True, "error": f"{type(error).__name__}: {error}"[:500]}
    return {"available": True, "figures": figures}


# ------------------------------------------------------------------------------------------
# PyTorch / Hugging Face comparison (a subprocess of this script: `--worker torch`)
# ------------------------------------------------------------------------------------------
def torch_available() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("torch", "transformers"))


def torch_worker(shapes: Shapes, out: Path) -> int:
    """The torch rows; imports torch and transformers only here (they are optional)."""
    torch = importlib.import_module("torch")
    transformers = importlib.import_module("transformers")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    cfg = get_config(shapes.config)
    t5 = transformers.T5Config(
        vocab_size=cfg.vocab_size, d_model=cfg.emb_dim, d_kv=cfg.head_dim, d_ff=cfg.mlp_dim,
        num_layers=cfg.num_encoder_layers, num_decoder_layers=cfg.num_decoder_layers,
        num_heads=cfg.num_heads, feed_forward_proj="gated-gelu", dropout_rate=cfg.dropout_rate,
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = transformers.T5ForConditionalGeneration(t5).to(device)
    proj = torch.nn.Linear(cfg.input_depth, cfg.emb_dim, bias=False).to(device)
    optimizer = torch.optim.AdamW(list(model.parameters()) + list(proj.parameters()), lr=1e-4)
    batch = shapes.train_batches[0]
    features = torch.randn(batch, FRAMES, cfg.input_depth, device=device)
    labels = torch.randint(3, 1391, (batch, shapes.target_length), device=device)
    labels[:, -1] = 1
    flops = analytic_flops(cfg, FRAMES, shapes.target_length)["total"]

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    rows: list[dict[str, Any]] = []
    for dtype in shapes.dtypes:
        try:
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            use_bf16 = dtype == "bfloat16"

            def step() -> None:
                with torch.autocast(device, dtype=torch.bfloat16, enabled=use_bf16):
                    loss = model(inputs_embeds=proj(features), labels=labels).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)

            for _ in range(shapes.warmup):
                step()
            sync()
            start = time.perf_counter()
            for _ in range(shapes.steps):
                step()
            sync()
            step_s = (time.perf_counter() - start) / shapes.steps
            memory = torch.cuda.max_memory_allocated() if device == "cuda" else None
            rows.append({"name": f"hf_t5 train {dtype}", "batch": batch,
                         "examples_per_s": batch / step_s, "model_tflops_per_s":
                         flops * batch / step_s / 1e12, "peak_memory_bytes": memory})
        except Exception as error:  # noqa: BLE001  (e.g. out of memory: report, go on)
            rows.append({"name": f"hf_t5 train {dtype}", "error": str(error)[:500]})
    del optimizer
    model.eval()
    for dtype in shapes.dtypes:
        try:
            enc = torch.randn(shapes.decode_batch, FRAMES, cfg.input_depth, device=device)
            with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16,
                                                 enabled=dtype == "bfloat16"):
                embeds = proj(enc)
                kwargs = dict(inputs_embeds=embeds, max_new_tokens=shapes.decode_len,
                              min_new_tokens=shapes.decode_len, do_sample=False, num_beams=1)
                model.generate(**kwargs)
                sync()
                start = time.perf_counter()
                generated = model.generate(**kwargs)
                sync()
                seconds = time.perf_counter() - start
            tokens = shapes.decode_batch * (generated.shape[1] - 1)
            rows.append({"name": f"hf_t5 generate {dtype}", "batch": shapes.decode_batch,
                         "tokens_per_s": tokens / seconds})
        except Exception as error:  # noqa: BLE001
            rows.append({"name": f"hf_t5 generate {dtype}", "error": str(error)[:500]})
    samples = int(shapes.clip_seconds * SAMPLE_RATE)
    audio = torch.randn(shapes.clips, samples, device=device) * 0.1
    window = torch.hann_window(2048, device=device)
    run = lambda: torch.stft(audio, 2048, 512, window=window, return_complex=True)  # noqa: E731
    run()
    sync()
    times = []
    for _ in range(shapes.repeats):
        start = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - start)
    rows.append({"name": "torch.stft n_fft=2048 hop=512", "shape": [shapes.clips, samples],
                 "audio_seconds_per_s": shapes.clips * shapes.clip_seconds
                 / statistics.median(times)})
    out.write_text(json.dumps({"device": device, "torch": torch.__version__,
                               "transformers": transformers.__version__, "rows": rows}))
    return 0


def bench_torch(quick: bool, budget: Budget, workdir: Path) -> dict[str, Any]:
    if not torch_available():
        return {"available": False, "note": "torch and transformers are not both installed"}
    if budget.left() <= 0:
        return {"available": True, "error": "skipped: time budget"}
    out = workdir / "torch.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "torch", "--out", str(out)]
    try:
        proc = subprocess.run(cmd + (["--quick"] if quick else []), capture_output=True,
                              text=True, timeout=max(budget.left(), 1.0))
    except subprocess.TimeoutExpired:
        return {"available": True, "error": "timed out"}
    if proc.returncode or not out.exists():
        return {"available": True, "error": _last_error_line(proc.stderr)}
    return {"available": True, **json.loads(out.read_text())}


# ------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------
def _fmt(value: Any, spec: str = ".1f", scale: float = 1.0) -> str:
    return "n/a" if value is None else format(value * scale, spec)


def print_table(report: dict[str, Any]) -> None:
    meta = report["meta"]
    print(f"\nmt3x GPU suite: {meta['device_count']} x {meta['device_kind']} "
          f"({meta['platform']}), jax {meta['jax']}, {meta['config']} shapes, "
          f"{meta['wall_s']:.0f} s")
    print(f"{'train step':<26}{'ex/s':>10}{'MFU %':>8}{'peak GiB':>10}{'cold s':>8}"
          f"{'warm s':>8}  attention")
    for row in report["train"]:
        name = f"{row['dtype']} batch {row['batch']}"
        if "error" in row:
            print(f"{name:<26}  {row['error']}")
            continue
        print(f"{name:<26}{row['examples_per_s']:>10.1f}{_fmt(row['mfu'], '.1f', 100):>8}"
              f"{_fmt(row['peak_memory_bytes'], '.2f', 2**-30):>10}{row['compile_s']:>8.1f}"
              f"{row['warm_compile_s']:>8.1f}  {row['attention_impl']}")
    flops = report["train_flops_per_example"]
    print(f"  model FLOPs/example {flops / 1e9:.2f} G = {report['flop_formula']}")
    for row in report["decode"]:
        print(f"decode {row['dtype']} {row['batch']}x{row['decode_len']:<8}"
              f"{row['tokens_per_s']:>12.0f} tokens/s (compile {row['compile_s']:.1f} s)")
    for row in report["spectral"]:
        print(f"{row['name']:<34}{row['audio_seconds_per_s']:>12.0f} s of audio per s")
    grain = report["grain"]
    if not grain["available"]:
        print(f"grain pipeline: not available ({grain['note']})")
    else:
        print("grain pipeline: " + json.dumps(grain.get("figures", grain.get("error"))))
    torch_report = report["torch"]
    if not torch_report["available"]:
        print(f"pytorch comparison: not run ({torch_report['note']})")
    elif "error" in torch_report:
        print(f"pytorch comparison: {torch_report['error']}")
    else:
        for row in torch_report["rows"]:
            figures = {k: v for k, v in row.items() if k != "name"}
            print(f"{row['name']:<34}{json.dumps(figures)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes (CPU, < 60 s)")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    parser.add_argument("--attention", default="auto",
                        choices=["reference", "xla", "cudnn", "auto"],
                        help="attention of the bfloat16 train rows")
    parser.add_argument("--parallel_compiles", type=int, default=None,
                        help="cold compiles at a time (default: 4 on GPU, 1 elsewhere)")
    parser.add_argument("--budget_s", type=float, default=None,
                        help="start no row after this many seconds (default 450; quick 55)")
    parser.add_argument("--worker", choices=["torch"], default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    shapes = QUICK if args.quick else FULL
    if args.worker == "torch":
        return torch_worker(shapes, args.out)
    budget = Budget(args.budget_s or (55.0 if args.quick else 450.0))
    platform = jax.devices()[0].platform
    parallel = args.parallel_compiles or (4 if platform == "gpu" else 1)
    cfg = get_config(shapes.config)
    report: dict[str, Any] = {
        "meta": {"quick": args.quick, "platform": platform,
                 "device_kind": jax.devices()[0].device_kind,
                 "device_count": jax.device_count(), "jax": jax.__version__,
                 "config": shapes.config, "shapes": dataclasses.asdict(shapes)},
        "train_flops_per_example": analytic_flops(cfg, FRAMES, shapes.target_length)["total"],
    }
    with tempfile.TemporaryDirectory(prefix="mt3x_gpu_suite_") as tmp:
        workdir = Path(tmp)
        print("train step rows ...", flush=True)
        report["train"] = bench_train(shapes, attention=args.attention, parallel=parallel,
                                      budget=budget, workdir=workdir)
        report["flop_formula"] = next((row["flop_formula"] for row in report["train"]
                                       if "flop_formula" in row), "see bench/train_mt3.py")
        print("decoding, front end, input pipeline ...", flush=True)
        report["decode"] = [bench_decode(shapes, dtype) for dtype in shapes.dtypes]
        report["spectral"] = bench_spectral(shapes)
        report["grain"] = bench_grain(args.quick)
        report["torch"] = bench_torch(args.quick, budget, workdir)
    report["meta"]["wall_s"] = budget.seconds - budget.left()
    print_table(report)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

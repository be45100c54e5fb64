"""Training examples per second from the MT3 seqio pipeline, and where the host time goes.

    python bench/pipeline.py [--root DIR] [--batches 20] [--batch-size 32] [--rounds 3]

Over a Slakh-layout dataset (default: the demo set, built into /tmp if missing) it measures

1. the per-stage cost in one thread (numpy kernels the tf.data stages call):
   load (read flac + resample to 16 kHz), tokenize (NoteSequence -> events indexed by frame,
   audio -> frames), chunk (random 256-frame chunk + target extraction with ties),
   rle (program map + run-length shifts + redundant state removal + model ids/EOS);
   an example's cost = its share of the per-track costs (MT3 takes one random chunk per
   2000-frame cached piece per epoch) + the per-example costs;
2. the end-to-end rate of `make_train_batches` (tf.data, all cores it is given), with the
   tokenized pieces cached in memory (the stand-in for MT3's offline cache) and without;
   and of the Grain pipeline reading the offline piece cache from disk (`mt3x-data cache`,
   built into <root>_cache if `--cache` is not given; `mt3x.tasks.grain_pipeline`) in this
   process and with `--workers` worker processes; side by side, per core, with ratios against
   seqio's in-memory cache measured in the same process;
3. what a GPU step of MT3-small would consume, and the ratio.

The GPU figure is an estimate, stated in the output: training FLOPs ~ 6 x 45.9M parameters x
(256 encoder + 1024 decoder positions) per example = 3.5e11; an A100 at 40% of its 312 TFLOP/s
bf16 peak gives ~355 examples/s (1.4 steps/s at batch 256, MT3's batch).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402

GPU_PARAMS = 45_896_704
GPU_POSITIONS = 256 + 1024
GPU_PEAK_FLOPS = 312e12
GPU_MFU = 0.40


def gpu_examples_per_second() -> float:
    return GPU_PEAK_FLOPS * GPU_MFU / (6 * GPU_PARAMS * GPU_POSITIONS)


def stage_costs(root: Path, split: str, repeats: int, seed: int) -> dict[str, float]:
    """Seconds per training example spent in each stage (one thread)."""
    from mt3x.audio.mt3_config import mt3_frame_times, mt3_sample_frames
    from mt3x.tasks import preprocessors as pp
    from mt3x.codec import run_length
    from mt3x.codec import vocabulary as codec_vocabulary
    from mt3x.tasks.codec import get_pipeline_codec
    from mt3x.tasks.sources import SlakhDataSource

    pcodec = get_pipeline_codec("mt3")
    source = SlakhDataSource(root)
    rng = np.random.default_rng(seed)
    totals = {"load": 0.0, "tokenize": 0.0, "chunk": 0.0, "rle": 0.0}
    examples = 0
    eos = np.int32(1)
    for track_index in range(source.num_tracks(split)):
        t = time.perf_counter()
        audio, sequence, _, _ = source.load_example(split, track_index)
        totals["load"] += time.perf_counter() - t

        t = time.perf_counter()
        frames = mt3_sample_frames(audio)
        times = mt3_frame_times(len(frames))
        out = pcodec.tokenize(sequence, times, True)
        totals["tokenize"] += time.perf_counter() - t

        n_pieces = -(-len(frames) // pp.MAX_NUM_CACHED_FRAMES)
        for _ in range(repeats):
            for piece in range(n_pieces):
                lo = piece * pp.MAX_NUM_CACHED_FRAMES
                n = min(pp.MAX_NUM_CACHED_FRAMES, len(frames) - lo)
                t = time.perf_counter()
                start = int(rng.integers(-255, n))
                a, b = lo + max(start, 0), lo + min(start + 256, n)
                chunk = pp.chunk_target_sequence(
                    out["targets"], out["input_event_start_indices"][a:b],
                    out["input_event_end_indices"][a:b], out["state_events"],
                    out["input_state_event_indices"][a:b], pcodec.tie_id)
                totals["chunk"] += time.perf_counter() - t

                t = time.perf_counter()
                tokens = codec_vocabulary.map_program_tokens(chunk, pcodec.codec, "full")
                tokens = run_length.run_length_encode_shifts(tokens, pcodec.codec)
                tokens = run_length.remove_redundant_state_changes(tokens, pcodec.codec)
                np.append(tokens + 3, eos)
                totals["rle"] += time.perf_counter() - t
                examples += 1
    # Per-track stages run once per epoch; `repeats` epochs were sampled for the chunk stages.
    per_example = {k: v / examples for k, v in totals.items() if k in ("chunk", "rle")}
    per_epoch_examples = examples / repeats
    per_example["load"] = totals["load"] / per_epoch_examples
    per_example["tokenize"] = totals["tokenize"] / per_epoch_examples
    return per_example


def timed_windows(iterator, batch_size: int, batches: int, rounds: int) -> float:
    """The median examples/s of `rounds` consecutive windows of `batches` batches (a median
    over windows is steadier on a shared machine than one window)."""
    rates = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(batches):
            next(iterator)
        rates.append(batches * batch_size / (time.perf_counter() - t))
    return float(np.median(rates))


def end_to_end(root: Path, batch_size: int, batches: int, in_memory_cache: bool,
               seed: int, rounds: int = 1) -> float:
    """Examples per second from make_train_batches (after the shuffle buffer's warm-up; the
    median of `rounds` windows)."""
    from mt3x.tasks import registry as tasks

    name = "benchcache" if in_memory_cache else "benchnocache"
    names = tasks.register_slakh_tasks(root, name=name, vocab="mt3",
                                       in_memory_cache=in_memory_cache,
                                       shuffle_buffer_size=256)
    it = tasks.make_train_batches(names["train"], batch_size=batch_size, seed=seed)
    # Warm-up: fills the shuffle buffer (and the in-memory cache).
    for _ in range(max(1, 256 // batch_size + 1)):
        next(it)
    return timed_windows(it, batch_size, batches, rounds)


def grain_end_to_end(cache: Path, batch_size: int, batches: int, seed: int,
                     workers: int, rounds: int = 1) -> float:
    """Examples per second from the Grain pipeline over a piece cache (after two warm-up
    batches per worker; the median of `rounds` windows); `workers` = 0 reads in this process
    (2 threads)."""
    from mt3x.tasks.grain_pipeline import GrainPipelineConfig, batch_dataset

    config = GrainPipelineConfig(cache_dir=cache, batch_size=batch_size, worker_count=workers,
                                 read_threads=2, worker_buffer_size=4)
    iterator = iter(batch_dataset(config, seed))
    try:
        for _ in range(2 * max(1, workers)):  # every worker started and producing
            next(iterator)
        return timed_windows(iterator, batch_size, batches, rounds)
    finally:
        getattr(iterator, "close", lambda: None)()


def ensure_cache(root: Path, cache: Path | None, split: str) -> Path:
    """The piece cache of `root` (built with `mt3x-data cache`'s builder when missing)."""
    from mt3x.tasks.cache import manifest_path
    from mt3x.tasks.cache_build import build_cache

    cache = cache or root.with_name(root.name + "_cache")
    if not manifest_path(cache).is_file():
        build_cache(root, cache, splits=(split,), jobs=2, progress=False)
    return cache


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=None,
                        help="Slakh-layout dataset (default: demo set in /tmp/mt3x_bench_demo)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=20,
                        help="random chunks drawn per cached piece for the stage timing")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=None,
                        help="piece cache of --root (default: <root>_cache, built if missing)")
    parser.add_argument("--workers", type=int, default=None,
                        help="Grain worker processes (default: the cores available)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="timed windows of --batches batches per pipeline; the median is "
                             "printed (the re-tokenising seqio row takes one)")
    parser.add_argument("--skip-stages", action="store_true", help="skip the per-stage timing")
    args = parser.parse_args(argv)

    root = args.root
    if root is None:
        from mt3x.data.presets import build_demo

        root = build_demo(Path("/tmp/mt3x_bench_demo"), seed=0)
    print(f"dataset: {root} ({args.split}); cores available: {len(os.sched_getaffinity(0))}; "
          f"load average: {os.getloadavg()[0]:.1f}")

    cores = len(os.sched_getaffinity(0))
    workers = args.workers or cores
    cache = ensure_cache(Path(root), args.cache, args.split)
    rates = {}
    for cache_in_memory in (True, False):
        rates[cache_in_memory] = end_to_end(root, args.batch_size, args.batches,
                                            cache_in_memory, args.seed,
                                            args.rounds if cache_in_memory else 1)
    grain_rates = {n: grain_end_to_end(cache, args.batch_size, args.batches, args.seed, n,
                                       args.rounds)
                   for n in (0, workers)}
    print(f"\nend to end, batch {args.batch_size}, median of {args.rounds} windows of "
          f"{args.batches} batches, {cores} cores (per core = examples/s / {cores}):")
    print(f"  {'pipeline':52s} {'examples/s':>10s} {'per core':>9s} {'vs seqio cached':>16s}")
    rows = [("seqio, tokenized pieces cached in memory", rates[True]),
            ("seqio, re-tokenized every epoch", rates[False]),
            ("grain from the disk cache, in process (2 threads)", grain_rates[0]),
            (f"grain from the disk cache, {workers} worker processes", grain_rates[workers])]
    for label, rate in rows:
        print(f"  {label:52s} {rate:10.1f} {rate / cores:9.1f} {rate / rates[True]:15.2f}x")
    if args.skip_stages:
        return 0

    costs = stage_costs(root, args.split, args.repeats, args.seed)
    total = sum(costs.values())
    no_load = total - costs["load"]
    cached = costs["chunk"] + costs["rle"]
    print("\nper-example host cost, one thread (ms):")
    for k in ("load", "tokenize", "chunk", "rle"):
        share = "" if k == "load" else f", {100 * costs[k] / no_load:5.1f}% of tokenize+chunk+rle"
        print(f"  {k:9s} {1e3 * costs[k]:8.3f}   {100 * costs[k] / total:5.1f}% of all{share}")
    print(f"  => tokenize + chunk + rle: {1 / no_load:9.1f} examples/s per core "
          f"({2 / no_load:.1f} on 2 cores)")
    print(f"  => incl. audio load:       {1 / total:9.1f} examples/s per core "
          f"({2 / total:.1f} on 2 cores)")
    print(f"  => after the cache (chunk + rle only): {1 / cached:9.1f} examples/s per core")


    need = gpu_examples_per_second()
    print(f"\nGPU consumption (assumption): MT3-small {GPU_PARAMS / 1e6:.1f}M params x "
          f"{GPU_POSITIONS} positions x 6 FLOPs = "
          f"{6 * GPU_PARAMS * GPU_POSITIONS:.2e} FLOPs/example; A100 at {GPU_MFU:.0%} of "
          f"{GPU_PEAK_FLOPS / 1e12:.0f} TFLOP/s -> {need:.0f} examples/s "
          f"({need / 256:.2f} steps/s at batch 256)")
    for label, rate in (("cached pipeline", rates[True]), ("uncached pipeline", rates[False]),
                        ("grain from disk cache", max(grain_rates.values())),
                        ("kernels, 2 cores, tokenize+chunk+rle", 2 / no_load)):
        print(f"  {label:38s} {rate:9.1f} ex/s = {rate / need:6.2f}x what one A100 consumes")
    return 0


if __name__ == "__main__":
    sys.exit(main())

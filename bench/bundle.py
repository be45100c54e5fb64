"""MT3 inference bundles: size on disk, export time, and transcription speed from the bundle
against the training checkpoint, in the same process.

For each model config it writes a checkpoint of seeded random parameters, exports float32 and
bfloat16 bundles (`mt3x.bundles.mt3_export`), and transcribes the same `--seconds` of audio with
`Transcriber` (checkpoint: restore + jitted Mt3Model.predict) and `BundleTranscriber` (the
exported StableHLO, no model code), printing
- bundle sizes: params.safetensors and each exported function, in MiB,
- load time (checkpoint restore or bundle read) and first call (compilation),
- steady-state speed: audio seconds per wall second (x real time), median of `--repeats`,
  interleaved, and the ratio bundle / checkpoint,
- whether the bundle's tokens equal the checkpoint's (float32) and the share of equal tokens
  (bfloat16).
Random parameters seldom emit EOS, so every segment decodes `--decode-len` tokens: a fixed,
worst-case amount of work per segment.

Usage:
  python bench/bundle.py                                   # tiny and small_cpu, 20 s of audio
  python bench/bundle.py --configs mt3 --decode-len 64 --seconds 8 --repeats 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _mib(path: Path) -> float:
    return path.stat().st_size / 2**20


def _checkpoint(root: Path, config: str, decode_len: int) -> Path:
    import flax.linen as nn
    import jax
    import numpy as np

    from mt3x.transcription.checkpoint import model_spec
    from mt3x.models import Mt3Model
    from mt3x.t5x_checkpoint.convert import write_mt3x_params_checkpoint

    model = Mt3Model(config, max_decode_length=decode_len)
    batch = {"encoder_input_tokens": jax.ShapeDtypeStruct((1, 256, 128), np.float32)}
    params = jax.jit(lambda key: nn.unbox(model.init(key, batch)))(jax.random.key(0))
    return write_mt3x_params_checkpoint(root / f"{config}_run", params, meta={"gin_config": ""},
                                        model_spec=model_spec(model, "mt3"))


def _speed(transcriber, audio, repeats: int) -> tuple[float, list]:
    """(median x real time, tokens of the last run)."""
    from mt3x.transcription.segments import audio_to_segments

    frames, _, lengths = audio_to_segments(audio)
    decode = getattr(transcriber, "decode_segments", None) or (
        lambda f, n: transcriber.decoder.decode(transcriber.params, f, n))
    times, tokens = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        tokens = decode(frames, lengths)
        times.append(time.perf_counter() - start)
    return audio.size / 16000 / statistics.median(times), tokens


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["tiny", "small_cpu"])
    parser.add_argument("--decode-len", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    import numpy as np

    from mt3x.bundles.mt3_export import export_mt3_bundle
    from mt3x.bundles.mt3_runtime import BundleTranscriber
    from mt3x.transcription.decoder import load_transcriber

    audio = (0.1 * np.random.default_rng(0).standard_normal(int(args.seconds * 16000))
             ).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for config in args.configs:
            workdir = _checkpoint(root, config, args.decode_len)
            print(f"== {config}: decode length {args.decode_len}, {args.seconds:.0f} s of audio, "
                  f"batch {args.batch}")
            bundles = {}
            for dtype in ("float32", "bfloat16"):
                start = time.perf_counter()
                bundles[dtype] = export_mt3_bundle(workdir, root / f"{config}_{dtype}",
                                                   dtype=dtype)
                seconds = time.perf_counter() - start
                files = sorted(bundles[dtype].iterdir())
                sizes = ", ".join(f"{f.name} {_mib(f):.2f}" for f in files)
                print(f"  bundle {dtype}: {sum(_mib(f) for f in files):.2f} MiB ({sizes}); "
                      f"export {seconds:.1f} s")
            loaded = {}
            for name, load in [
                    ("checkpoint", lambda: load_transcriber(workdir, batch_size=args.batch)),
                    *[(f"bundle {d}", lambda d=d: BundleTranscriber(bundles[d],
                                                                    batch_size=args.batch))
                      for d in bundles]]:
                start = time.perf_counter()
                transcriber = load()
                loaded_at = time.perf_counter()
                _speed(transcriber, audio[:16000], 1)  # compiles
                print(f"  {name}: load {loaded_at - start:.2f} s, first call (compile) "
                      f"{time.perf_counter() - loaded_at:.2f} s")
                loaded[name] = transcriber
            speeds = {name: [] for name in loaded}
            tokens = {}
            for _ in range(args.repeats):  # interleaved rounds
                for name, transcriber in loaded.items():
                    speed, tokens[name] = _speed(transcriber, audio, 1)
                    speeds[name].append(speed)
            base = statistics.median(speeds["checkpoint"])
            for name in loaded:
                speed = statistics.median(speeds[name])
                same = float(np.mean(tokens[name] == tokens["checkpoint"]))
                print(f"  {name:17s} {speed:7.2f} x real time  ratio {speed / base:.2f}  "
                      f"tokens equal to checkpoint: {same:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Speed of mt3x.audio's STFT and MT3 log-mel against tf.signal, librosa and scipy.

Usage: python bench/spectral.py [--seconds 60] [--repeats 3] [--devices 1]

Everything runs in one process on the same audio (harmonic tones + noise). JAX functions are
jitted, warmed up once and timed with block_until_ready; TF runs inside a warmed-up tf.function.
Each cell is the best of `--repeats` runs (the machine is shared: the minimum is the least noisy
estimate). Workloads:
- STFT: n_fft 2048, hop 512, periodic Hann, complex64 output; librosa/ours centred (reflect),
  tf.signal and scipy right-padded (same work: ~1 + samples / 512 frames each).
- MT3 log-mel (16 kHz only: MT3's front end is defined at 16 kHz): the audio cut into 256-frame
  segments of 128-sample frames; per segment STFT 2048/128 pad_end, magnitude, 512 HTK mel bands,
  safe log. TF as mt3/spectral_ops.py does it (batched over segments); librosa / scipy compute
  the same STFT and multiply by the same filterbank.
`--devices N` splits the batch over N XLA CPU devices (one thread each), which is how a jitted step
sharded over the 'data' axis would use N cores.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="audio length per item")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per cell (best kept)")
    parser.add_argument("--devices", type=int, default=1, help="XLA CPU devices to shard over")
    parser.add_argument("--batches", default="1,16", help="comma-separated batch sizes")
    return parser.parse_args(argv)


def _best_time(run: Callable[[], object], repeats: int) -> float:
    start = time.perf_counter()
    run()  # warm-up (compiles / traces)
    warm_up = time.perf_counter() - start
    times = []
    for _ in range(repeats if warm_up < 2.0 else 1):  # heavy cells: one timed run
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def _audio(batch: int, seconds: float, sample_rate: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    tones = sum(np.sin(2 * np.pi * f * t) / (i + 1) for i, f in enumerate((110.0, 220.0, 330.0,
                                                                            440.0, 1234.5)))
    audio = 0.2 * tones[None] + 0.01 * rng.standard_normal((batch, t.size))
    return audio.astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    import jax

    if args.devices > 1:
        jax.config.update("jax_num_cpu_devices", args.devices)
    jax.config.update("jax_platforms", "cpu")
    import librosa
    import scipy.signal
    import tensorflow as tf
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    from mt3x import audio as mt3x_audio

    devices = jax.devices()[:args.devices]
    mesh = Mesh(np.array(devices), ("data",))

    def to_device(array: np.ndarray) -> jax.Array:
        if len(devices) > 1 and array.shape[0] % len(devices) == 0:
            return jax.device_put(array, NamedSharding(mesh, PartitionSpec("data")))
        return jax.device_put(array, devices[0])

    config = mt3x_audio.MT3_SPECTROGRAM_CONFIG
    mel_weights = config.mel_weights()
    tf_mel_weights = tf.signal.linear_to_mel_weight_matrix(512, 1025, 16000, 20.0, 7600.0)
    rows = []
    extrapolated: set[tuple[str, str, str]] = set()
    name_mel = "MT3 log-mel"

    for sample_rate in (44100, 16000):
        for batch in [int(b) for b in args.batches.split(",")]:
            audio = _audio(batch, args.seconds, sample_rate)
            label = f"{sample_rate / 1000:g} kHz x {batch}"

            # ---- STFT 2048 / 512
            ours_stft = jax.jit(lambda x: mt3x_audio.stft(x, 2048, 512))
            x_dev = to_device(audio)
            tf_stft = tf.function(lambda x: tf.signal.stft(x, 2048, 512, pad_end=True))
            x_tf = tf.constant(audio)
            cells = {
                "ours": _best_time(lambda: ours_stft(x_dev).block_until_ready(), args.repeats),
                "tf.signal": _best_time(lambda: tf_stft(x_tf).numpy(), args.repeats),
                "librosa": _best_time(lambda: librosa.stft(audio, n_fft=2048, hop_length=512),
                                      args.repeats),
                "scipy": _best_time(lambda: scipy.signal.stft(
                    audio, nperseg=2048, noverlap=1536, window="hann", boundary="zeros",
                    padded=True), args.repeats),
            }
            rows.append(("STFT 2048/512", label, cells))

            # ---- MT3 log-mel
            if sample_rate != config.sample_rate:
                continue
            frames = mt3x_audio.mt3_sample_frames(audio)
            segments_per_item = frames.shape[1] // config.frames_per_segment
            segments = frames[:, :segments_per_item * 256].reshape(-1, 256, 128)
            segment_samples = segments.reshape(segments.shape[0], -1)
            ours_mel = jax.jit(mt3x_audio.mt3_log_mel)
            seg_dev = to_device(segments)

            @tf.function
            def tf_mel(x):
                magnitude = tf.abs(tf.signal.stft(x, 2048, 128, pad_end=True))
                mel = tf.tensordot(magnitude, tf_mel_weights, 1)
                return tf.math.log(tf.where(mel <= 0.0, 1e-5, mel))

            seg_tf = tf.constant(segment_samples)
            padded = np.pad(segment_samples, [(0, 0), (0, 1920)])

            def numpy_mel(magnitude: np.ndarray) -> np.ndarray:
                mel = magnitude @ mel_weights
                return np.log(np.where(mel <= 0, 1e-5, mel))

            cells = {
                "ours": _best_time(lambda: ours_mel(seg_dev).block_until_ready(), args.repeats),
                "tf.signal": _best_time(lambda: tf_mel(seg_tf).numpy(), args.repeats),
            }
            numpy_peers = {
                "librosa": lambda x: numpy_mel(np.abs(librosa.stft(
                    x, n_fft=2048, hop_length=128, center=False)).swapaxes(-1, -2)),
                "scipy": lambda x: numpy_mel(np.abs(scipy.signal.stft(
                    x, nperseg=2048, noverlap=1920, window="hann", boundary=None,
                    padded=False, scaling="spectrum")[2]).swapaxes(-1, -2)),
            }
            for peer, run in numpy_peers.items():
                if segments.shape[0] <= segments_per_item:
                    cells[peer] = _best_time(lambda: run(padded), args.repeats)
                else:  # minutes on 2 cores: time one item's segments and scale linearly
                    one_item = padded[:segments_per_item]
                    cells[peer] = batch * _best_time(lambda: run(one_item), 1)
                    extrapolated.add((name_mel, label, peer))
            rows.append((name_mel, label, cells))

    peers = ("tf.signal", "librosa", "scipy")
    print(f"# mt3x.audio spectral bench: {args.seconds:g} s of audio per item, best of "
          f"{args.repeats}, {len(devices)} XLA CPU device(s), {os.cpu_count()} CPU cores")
    print("| workload | audio | ours (s) | tf.signal (s) | librosa (s) | scipy (s) | "
          "ours / fastest peer |")
    print("|---|---|---|---|---|---|---|")
    for name, label, cells in rows:
        fastest = min(cells[p] for p in peers)
        shown = {k: (f"~{v:.3f}" if (name, label, k) in extrapolated else f"{v:.3f}")
                 for k, v in cells.items()}
        print(f"| {name} | {label} | {shown['ours']} | {shown['tf.signal']} | "
              f"{shown['librosa']} | {shown['scipy']} | {cells['ours'] / fastest:.2f} |")
    if extrapolated:
        print("~ = one item's segments timed once and multiplied by the batch size.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

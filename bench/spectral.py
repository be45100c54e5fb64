"""Speed of mt3x.audio's STFT and MT3 log-mel against tf.signal, librosa and scipy.

Usage: python bench/spectral.py [--seconds 60] [--repeats 3] [--devices 1] [--batches 1,16]
                                [--huge-pages]

Everything runs in one process on the same audio (harmonic tones + noise). JAX functions are
jitted and TF runs inside a tf.function; both are warmed up, then timed in `--repeats`
interleaved rounds (ours, tf.signal, ours, tf.signal, ... so that load from other processes on a
shared machine hits both alike); each cell is the median wall time, and the CPU time
(`time.process_time`, all threads) is shown for ours and tf.signal. librosa and scipy (numpy, no
compilation, one item at a time) are timed once on one item and scaled by the batch size
(marked ~). Workloads:
- STFT: n_fft 2048, hop 512, periodic Hann, complex64 output; librosa/ours centred (reflect),
  tf.signal and scipy right-padded (same work: ~1 + samples / 512 frames each).
- MT3 log-mel (16 kHz only: MT3's front end is defined at 16 kHz): the audio cut into 256-frame
  segments of 128-sample frames; per segment STFT 2048/128 pad_end, magnitude, 512 HTK mel bands,
  safe log. TF as mt3/spectral_ops.py does it (batched over segments); librosa / scipy compute
  the same STFT and multiply by the same filterbank.
`--devices N` splits the batch over N XLA CPU devices, which is how a jitted step sharded over the
'data' axis would use N cores. `--huge-pages` re-runs the bench with
`GLIBC_TUNABLES=glibc.malloc.hugetlb=1`: XLA:CPU allocates every buffer of a call afresh, and
glibc serves blocks over 32 MiB with new mmaps whose 4 KiB pages are faulted in one by one (~10k
faults per 40 MB); with the tunable they are backed by 2 MiB transparent huge pages.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

_HUGE_PAGES = "glibc.malloc.hugetlb=1"
Timing = tuple[float, float]  # (wall seconds, CPU seconds)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="audio length per item")
    parser.add_argument("--repeats", type=int, default=3,
                        help="interleaved timed rounds for ours and tf.signal (median kept)")
    parser.add_argument("--devices", type=int, default=1, help="XLA CPU devices to shard over")
    parser.add_argument("--batches", default="1,16", help="comma-separated batch sizes")
    parser.add_argument("--huge-pages", action="store_true",
                        help=f"re-run with GLIBC_TUNABLES={_HUGE_PAGES} (see the module doc)")
    return parser.parse_args(argv)


def _timed(run: Callable[[], object]) -> Timing:
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def _interleaved(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, Timing]:
    """Warms every run up, then times them in `repeats` rotating rounds; medians per run."""
    warm_up = max(_timed(run)[0] for run in runs.values())
    rounds = repeats if warm_up < 3.0 else max(1, min(repeats, 2))  # keep heavy cells short
    samples: dict[str, list[Timing]] = {name: [] for name in runs}
    names = list(runs)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            samples[name].append(_timed(runs[name]))
    return {name: (statistics.median(t[0] for t in timings),
                   statistics.median(t[1] for t in timings))
            for name, timings in samples.items()}


def _audio(batch: int, seconds: float, sample_rate: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    tones = sum(np.sin(2 * np.pi * f * t) / (i + 1) for i, f in enumerate((110.0, 220.0, 330.0,
                                                                            440.0, 1234.5)))
    audio = 0.2 * tones[None] + 0.01 * rng.standard_normal((batch, t.size))
    return audio.astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.huge_pages and _HUGE_PAGES not in os.environ.get("GLIBC_TUNABLES", ""):
        tunables = ":".join(filter(None, [os.environ.get("GLIBC_TUNABLES"), _HUGE_PAGES]))
        env = dict(os.environ, GLIBC_TUNABLES=tunables)
        rest = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--huge-pages"]
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *rest], env)

    import jax

    if args.devices > 1:
        jax.config.update("jax_num_cpu_devices", args.devices)
    jax.config.update("jax_platforms", "cpu")
    import librosa
    import scipy.signal
    import tensorflow as tf
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    from mt3x import audio as mt3x_audio

    start = time.perf_counter()
    devices = jax.devices()[:args.devices]
    mesh = Mesh(np.array(devices), ("data",))

    def to_device(array: np.ndarray) -> jax.Array:
        if len(devices) > 1 and array.shape[0] % len(devices) == 0:
            return jax.device_put(array, NamedSharding(mesh, PartitionSpec("data")))
        return jax.device_put(array, devices[0])

    config = mt3x_audio.MT3_SPECTROGRAM_CONFIG
    mel_weights = mt3x_audio.mt3_mel_weights(config)
    tf_mel_weights = tf.signal.linear_to_mel_weight_matrix(512, 1025, 16000, 20.0, 7600.0)
    rows: list[tuple[str, str, dict[str, Timing]]] = []
    extrapolated: set[tuple[str, str, str]] = set()
    name_mel = "MT3 log-mel"
    ours_stft = jax.jit(lambda x: mt3x_audio.stft(x, 2048, 512))
    tf_stft = tf.function(lambda x: tf.signal.stft(x, 2048, 512, pad_end=True))
    ours_mel = jax.jit(mt3x_audio.mt3_log_mel)

    @tf.function
    def tf_mel(x):
        magnitude = tf.abs(tf.signal.stft(x, 2048, 128, pad_end=True))
        mel = tf.tensordot(magnitude, tf_mel_weights, 1)
        return tf.math.log(tf.where(mel <= 0.0, 1e-5, mel))

    def numpy_mel(magnitude: np.ndarray) -> np.ndarray:
        mel = magnitude @ mel_weights
        return np.log(np.where(mel <= 0, 1e-5, mel))

    for sample_rate in (44100, 16000):
        for batch in [int(b) for b in args.batches.split(",")]:
            audio = _audio(batch, args.seconds, sample_rate)
            label = f"{sample_rate / 1000:g} kHz x {batch}"

            # ---- STFT 2048 / 512 (TF eager ops on CPU return when done: no copy-out timed)
            x_dev, x_tf = to_device(audio), tf.constant(audio)
            cells = _interleaved({
                "ours": lambda: ours_stft(x_dev).block_until_ready(),
                "tf.signal": lambda: tf_stft(x_tf),
            }, args.repeats)
            numpy_stft = {
                "librosa": lambda x: librosa.stft(x, n_fft=2048, hop_length=512),
                "scipy": lambda x: scipy.signal.stft(x, nperseg=2048, noverlap=1536,
                                                     window="hann", boundary="zeros", padded=True),
            }
            for peer, run in numpy_stft.items():  # numpy peers: one item, scaled to the batch
                wall, cpu = _timed(lambda: run(audio[:1]))
                cells[peer] = (batch * wall, batch * cpu)
                if batch > 1:
                    extrapolated.add(("STFT 2048/512", label, peer))
            rows.append(("STFT 2048/512", label, cells))
            del x_dev, x_tf

            # ---- MT3 log-mel
            if sample_rate != config.sample_rate:
                continue
            frames = mt3x_audio.mt3_sample_frames(audio)
            segments_per_item = frames.shape[1] // config.frames_per_segment
            segments = frames[:, :segments_per_item * 256].reshape(-1, 256, 128)
            segment_samples = segments.reshape(segments.shape[0], -1)
            seg_dev, seg_tf = to_device(segments), tf.constant(segment_samples)
            cells = _interleaved({
                "ours": lambda: ours_mel(seg_dev).block_until_ready(),
                "tf.signal": lambda: tf_mel(seg_tf),
            }, args.repeats)
            padded = np.pad(segment_samples, [(0, 0), (0, 1920)])
            numpy_peers = {
                "librosa": lambda x: numpy_mel(np.abs(librosa.stft(
                    x, n_fft=2048, hop_length=128, center=False)).swapaxes(-1, -2)),
                "scipy": lambda x: numpy_mel(np.abs(scipy.signal.stft(
                    x, nperseg=2048, noverlap=1920, window="hann", boundary=None,
                    padded=False, scaling="spectrum")[2]).swapaxes(-1, -2)),
            }
            for peer, run in numpy_peers.items():
                if segments.shape[0] <= segments_per_item:
                    cells[peer] = _timed(lambda: run(padded))
                else:  # minutes on 2 cores: time one item's segments and scale linearly
                    wall, cpu = _timed(lambda: run(padded[:segments_per_item]))
                    cells[peer] = (batch * wall, batch * cpu)
                    extrapolated.add((name_mel, label, peer))
            rows.append((name_mel, label, cells))
            del seg_dev, seg_tf

    peers = ("tf.signal", "librosa", "scipy")
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    print(f"# mt3x.audio spectral bench: {args.seconds:g} s of audio per item; ours and tf.signal: "
          f"median of {args.repeats} interleaved rounds (2 for cells over 3 s); "
          f"{len(devices)} XLA CPU device(s), {os.cpu_count()} CPU cores, load average "
          f"{os.getloadavg()[0]:.1f}; GLIBC_TUNABLES={tunables or '(unset)'}")
    print("| workload | audio | ours (s) | tf.signal (s) | librosa (s) | scipy (s) | "
          "ours / fastest peer | CPU s: ours / tf.signal |")
    print("|---|---|---|---|---|---|---|---|")
    for name, label, cells in rows:
        fastest = min(cells[p][0] for p in peers)
        shown = {k: (f"~{v[0]:.3f}" if (name, label, k) in extrapolated else f"{v[0]:.3f}")
                 for k, v in cells.items()}
        cpu_ours, cpu_tf = cells["ours"][1], cells["tf.signal"][1]
        print(f"| {name} | {label} | {shown['ours']} | {shown['tf.signal']} | "
              f"{shown['librosa']} | {shown['scipy']} | {cells['ours'][0] / fastest:.2f} | "
              f"{cpu_ours:.3f} / {cpu_tf:.3f} = {cpu_ours / cpu_tf:.2f} |")
    if extrapolated:
        print("~ = one item timed once and multiplied by the batch size.")
    print(f"(bench wall time {time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`mt3x-demo`: the main job on the embedded default data, end to end on a CPU.

Stages (each writes under --out; `--stages` picks some):
  kernels     synthesise a test signal, run the shared jit-compiled kernels (STFT, iSTFT round trip,
              MT3 log-mel), write `spectrogram.png`;
  data        build the `demo` dataset (Bach chorales from music21's corpus rendered per instrument
              with FluidSynth, Slakh2100 layout) into `data/`, and a tiny out-of-domain set
              (`ood-eval` preset, about 2 minutes of string quartets by other composers, another
              soundfont and held-out programs, all in `test`) into `ood_data/`;
  train       train the small MT3 of configs/experiments/demo_cpu.gin on it (`mt3_run/`: Orbax
              checkpoints, TensorBoard, loss curve);
  evaluate    transcribe every test track and the out-of-domain tracks, print MT3's metric table
              per domain and both side by side with the decoding health (`eval/metrics.json`);
  transcribe  export the trained model as an inference bundle (`bundle/`, float32, jax.export),
              then from the bundle transcribe one held-out test mixture to multi-track MIDI + a
              piano roll marking false positives / negatives against its reference, and render
              each transcribed instrument through the soundfont (`transcription/`);
  separate    (a stage the separation package adds through `mt3x.plugins`) train both
              separators briefly (least-squares-initialised context DNN, conv U-Net), score them
              on the test split next to the mixture and ideal-mask rows, and write listenable
              stems of a test mixture (`separation/`).

Plugin stages run after mt3x's own, in the order plugins registered them. `--stages all` (the
default) runs every stage whose package is installed (a missing plugin stage is skipped with a
note); naming a stage whose package is not installed prints `error: ...` and exits 2.
"""

from __future__ import annotations

from mt3x.util.quiet import cli_args, quiet_startup

quiet_startup()  # first: TensorFlow, pydub and Orbax stay quiet only if set before they load

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from mt3x.errors import Mt3xError
from mt3x.util.compilation_cache import enable_compilation_cache
from mt3x.plugins import KNOWN_DEMO_STAGES, DemoContext, DemoStage, Registry, installed_registry


def synth_demo_signal(sample_rate: int = 16000, seconds: float = 4.0, seed: int = 0) -> np.ndarray:
    """A deterministic musical test signal.

    Returns:
      float32[samples] in [-1, 1] at `sample_rate` Hz: four harmonic chords (C, Am, F, G; 1 s each)
      with decaying envelopes, over a quiet logarithmic sweep 50 Hz -> 6 kHz and faint noise.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    chords = [[60, 64, 67], [57, 60, 64], [53, 57, 60], [55, 59, 62]]
    out = np.zeros_like(t)
    chord_len = seconds / len(chords)
    for i, chord in enumerate(chords):
        local = t - i * chord_len
        active = (local >= 0) & (local < chord_len)
        env = np.where(active, np.exp(-3.0 * np.clip(local, 0, None)), 0.0)
        for pitch in chord:
            f0 = 440.0 * 2 ** ((pitch - 69) / 12)
            for harmonic in range(1, 6):
                out += env * np.sin(2 * np.pi * f0 * harmonic * t) / harmonic**1.5
    sweep_phase = 2 * np.pi * 50 * seconds / np.log(120) * (120 ** (t / seconds) - 1)
    out += 0.15 * np.sin(sweep_phase) + 0.01 * rng.standard_normal(t.shape)
    return (0.9 * out / np.max(np.abs(out))).astype(np.float32)


def run_kernels_demo(out_dir: Path, seed: int = 0) -> dict[str, float]:
    """Runs the shared kernels on the demo signal; writes `spectrogram.png`, `demo_signal.wav`."""
    import jax
    import jax.numpy as jnp
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mt3x import audio
    from mt3x.audio import io as audio_io

    sample_rate = 16000
    signal = synth_demo_signal(sample_rate, seed=seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    audio_io.write_audio(out_dir / "demo_signal.wav", signal, sample_rate)

    n_fft, hop = 1024, 256
    stft_fn = jax.jit(lambda x: audio.stft(x, n_fft=n_fft, hop_length=hop))
    istft_fn = jax.jit(lambda s: audio.istft(s, n_fft=n_fft, hop_length=hop, length=signal.shape[-1]))
    spec = stft_fn(jnp.asarray(signal))
    recon = np.asarray(istft_fn(spec))
    recon_error = float(np.max(np.abs(recon - signal)))

    frames = audio.mt3_sample_frames(signal)
    frames = frames[: (frames.shape[0] // 256) * 256].reshape(-1, 256, frames.shape[-1])
    t0 = time.perf_counter()
    log_mel = np.asarray(jax.jit(audio.mt3_log_mel)(jnp.asarray(frames)))
    mel_seconds = time.perf_counter() - t0

    fig, axes = plt.subplots(2, 1, figsize=(10, 7), constrained_layout=True)
    magnitude_db = 20 * np.log10(np.abs(np.asarray(spec)).T + 1e-6)
    axes[0].imshow(magnitude_db, origin="lower", aspect="auto", cmap="magma", vmin=magnitude_db.max() - 90,
                   extent=[0, signal.shape[-1] / sample_rate, 0, sample_rate / 2 / 1000])
    axes[0].set(title=f"STFT magnitude (dB), n_fft={n_fft}, hop={hop}", xlabel="time (s)",
                ylabel="frequency (kHz)")
    mel_image = log_mel.reshape(-1, log_mel.shape[-1]).T
    axes[1].imshow(mel_image, origin="lower", aspect="auto", cmap="magma",
                   extent=[0, mel_image.shape[1] * 128 / sample_rate, 0, mel_image.shape[0]])
    axes[1].set(title="MT3 log-mel front end (512 bins, 20-7600 Hz)", xlabel="time (s)", ylabel="mel bin")
    png = out_dir / "spectrogram.png"
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return {"istft_max_abs_error": recon_error, "log_mel_frames": float(mel_image.shape[1]),
            "log_mel_seconds_incl_compile": mel_seconds}


STAGES = ("kernels", "data", "train", "evaluate", "transcribe")     # mt3x's own; plugins add more
#: Hours of the demo's out-of-domain set: 4 tracks, about 2 minutes of audio (~1 min to build
#: and ~1 min to transcribe on 2 cores).
DEMO_OOD_HOURS = 0.02


def demo_ood_root(out: Path) -> Path:
    """Where the demo builds its out-of-domain set (`ood-eval` preset, all tracks in test)."""
    return out / "ood_data"


def demo_train_bindings(data_root: Path, workdir: Path, seed: int,
                        steps: int | None) -> list[str]:
    """Gin bindings on top of configs/experiments/demo_cpu.gin for the demo's run: the data and
    work directories, the seed and, with `steps`, a shorter run evaluated and saved halfway."""
    bindings = [f"DATASET_ROOT = {str(data_root)!r}", f"MODEL_DIR = {str(workdir)!r}",
                f"SEED = {int(seed)}"]
    if steps is not None:
        every = max(1, steps // 2)
        bindings += [f"TRAIN_STEPS = {int(steps)}", f"EVAL_EVERY_STEPS = {every}",
                     f"SAVE_EVERY_STEPS = {every}"]
    return bindings


def run_mt3_demo(out: Path, *, stages: set[str], seed: int, steps: int | None) -> None:
    """Data -> train -> evaluate -> transcribe, with the library functions the CLIs call."""
    from mt3x.data import read_split
    from mt3x.data.builder import build
    from mt3x.data.presets import build_demo, ood_eval_config

    data_root = out / "data"
    ood_root = demo_ood_root(out)
    workdir = out / "mt3_run"
    if "data" in stages:
        t0 = time.perf_counter()
        build_demo(data_root, seed=seed, jobs=2)
        print(f"[demo] data: demo dataset in {data_root} ({time.perf_counter() - t0:.0f} s)")
        t0 = time.perf_counter()
        build(ood_eval_config(seed=seed, hours=DEMO_OOD_HOURS), ood_root, jobs=2, on_error="fail")
        print(f"[demo] data: out-of-domain set (ood-eval, {DEMO_OOD_HOURS} h) in {ood_root} "
              f"({time.perf_counter() - t0:.0f} s)")
    if "train" in stages:
        # The demo's settings have one home, configs/experiments/demo_cpu.gin, read through gin
        # as `launch/train.py` reads it (gin at the edges; this CLI is one).
        from mt3x.runs.gin_registry import load_train_config
        from mt3x.runs.train import train_mt3

        config, gin_text = load_train_config(["experiments/demo_cpu.gin"],
                                             demo_train_bindings(data_root, workdir, seed, steps))
        t0 = time.perf_counter()
        result = train_mt3(config, gin_config=gin_text)
        print(f"[demo] train: step {result.step} in {time.perf_counter() - t0:.0f} s; "
              f"checkpoints, TensorBoard and loss_curve.png in {workdir}")
    if "evaluate" in stages:
        from mt3x.transcription.evaluation import format_domains_table
        from mt3x.transcription.metrics import format_table
        from mt3x.runs.evaluate import evaluate_mt3, split_domains

        ood = ood_root if (ood_root / "test").is_dir() else None
        t0 = time.perf_counter()
        scores = evaluate_mt3(checkpoint=workdir, dataset_root=data_root, split="test",
                              output_dir=out / "eval", write_midi=True, ood_dataset_root=ood)
        domains = split_domains(scores)
        print(f"[demo] evaluate: MT3 metrics on the demo test split"
              f"{' and the out-of-domain set' if ood else ''} "
              f"({time.perf_counter() - t0:.0f} s)")
        print(format_table(domains["in-domain"]))
        print(format_domains_table(domains))
    if "transcribe" in stages:
        from mt3x.bundles.mt3_export import export_mt3_bundle
        from mt3x.bundles.mt3_runtime import BundleTranscriber
        from mt3x.transcription.files import transcribe_files

        t0 = time.perf_counter()
        bundle = export_mt3_bundle(workdir, out / "bundle", overwrite=True)
        size = sum(f.stat().st_size for f in bundle.iterdir()) / 2**20
        print(f"[demo] export: inference bundle {bundle} ({size:.1f} MiB, "
              f"{time.perf_counter() - t0:.0f} s); transcribing from it")
        track = read_split(data_root, "test")[0]
        results = transcribe_files([track.mix_path], transcriber=BundleTranscriber(bundle),
                                   out_dir=out / "transcription",
                                   references=[track.note_sequence()], stems=True)
        for item in results:
            stems = (f"{len(item.stems) - 1} resynthesised stems + mix in "
                     f"{item.stems[0].path.parent}" if item.stems else "no notes, no stems")
            print(f"[demo] transcribe: {track.mix_path} -> {item.midi_path} "
                  f"({item.num_notes} notes, {item.num_instruments} instruments), "
                  f"piano roll {item.pianoroll_path}, {stems}")


def plugin_stages(stages: set[str], registry: Registry, *, everything: bool
                  ) -> tuple[list[DemoStage], list[str]]:
    """The registered plugin stages to run (registration order) among `stages` (all of them when
    `everything`), and notes on known plugin stages skipped because their package is missing.

    Raises PluginError (an Mt3xError) when a named stage's package is not installed.
    """
    if everything:
        notes = [f"[demo] {known.name}: skipped ({registry.missing(known.package)})"
                 for known in KNOWN_DEMO_STAGES if known.name not in registry.demo_stages]
        return list(registry.demo_stages.values()), notes
    named = stages - set(STAGES)
    for name in sorted(named):
        registry.demo_stage(name)             # raises naming the package that is not installed
    return [stage for stage in registry.demo_stages.values() if stage.name in named], []


def main(argv: list[str] | None = None, registry: Registry | None = None) -> int:
    """`mt3x-demo`; `registry` (default: the installed plugins) provides the plugin stages."""
    parser = argparse.ArgumentParser(prog="mt3x-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    known = [k.name for k in KNOWN_DEMO_STAGES]
    plugged = ", ".join(f"{k.name} with {k.package} installed" for k in KNOWN_DEMO_STAGES)
    parser.add_argument("--stages", default="all",
                        help=f"'all' or a comma-separated subset of {','.join(STAGES)} and the "
                             f"stages plugins add ({plugged})")
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps (default: configs/experiments/demo_cpu.gin's)")
    args = parser.parse_args(cli_args(argv))
    enable_compilation_cache(args.out)  # <out>/jax_cache: a rerun skips compilation
    stages = {s.strip() for s in args.stages.split(",") if s.strip()}
    everything = stages == {"all"}
    registry = installed_registry() if registry is None else registry
    available = list(dict.fromkeys([*STAGES, *registry.demo_stages, *known]))
    unknown = set() if everything else stages - set(available)
    if unknown:
        parser.error(f"unknown stage(s) {sorted(unknown)}; expected 'all' or some of {available}")
    if everything:
        stages = set(STAGES)
    try:
        extra, notes = plugin_stages(stages, registry, everything=everything)
        if "kernels" in stages:
            figures = run_kernels_demo(args.out, seed=args.seed)
            print(f"[demo] kernels: iSTFT(STFT(x)) max |error| = "
                  f"{figures['istft_max_abs_error']:.2e}; MT3 log-mel of "
                  f"{int(figures['log_mel_frames'])} frames; wrote {args.out / 'spectrogram.png'}")
        run_mt3_demo(args.out, stages=stages, seed=args.seed, steps=args.steps)
        ood_root = demo_ood_root(args.out)
        context = DemoContext(out=args.out, data_root=args.out / "data", seed=args.seed,
                              steps=args.steps,
                              ood_root=ood_root if (ood_root / "test").is_dir() else None)
        for stage in extra:
            stage.run(context)
        for note in notes:
            print(note)
    except Mt3xError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

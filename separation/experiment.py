"""One function from a Slakh-layout folder to trained separators, a score table and stems.

`run_experiment(root, out_dir, ...)`:
1. trains the context DNN layer-wise (least-squares growth + trainer steps) and the U-Net on
   `root/train` windows (remixed across tracks, random gains);
2. scores, on every track of `root/<eval_split>`: the mixture, IBM and IRM at each model's STFT
   settings, the LS-initialised DNN (no gradient step), the trained DNN and the U-Net;
3. writes `separation_scores.{md,csv}`, per-track CSV, `separation_si_sdr.png`, and the stems of the
   first evaluation track (`stems/<method>/<instrument>.wav` + `mixture.wav`).
This is what the README's demo command and the lead's CLI/gin entry points call.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from mt3x.audio.io import write_audio
from mt3x.data.slakh import read_split
from separation import data, evaluate, separate, training
from separation.model_objects import DNNSeparator, UNetSeparator


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Settings of `run_experiment` (defaults: a few minutes on 2 CPU cores for the demo set)."""
    instruments: str = "4stem"
    sample_rate: int = 16000
    window_seconds: float = 2.0
    batch_size: int = 8
    seed: int = 0
    dnn_layers: int = 2
    dnn_ls_batches: int = 10
    dnn_steps_per_layer: int = 30
    dnn_finetune_steps: int = 60
    dnn_learning_rate: float = 1e-4
    unet_n_fft: int = 1024
    unet_hop: int = 256
    unet_channels: tuple[int, ...] = (16, 32, 64)
    unet_steps: int = 150
    unet_learning_rate: float = 1e-3
    eval_split: str = "test"
    eval_max_seconds: float | None = 30.0
    bss_eval: bool = True


def run_experiment(root: str | Path, out_dir: str | Path,
                   config: ExperimentConfig = ExperimentConfig()) -> dict[str, Any]:
    """Trains, evaluates and writes everything under `out_dir`; returns paths and the table."""
    root, out_dir = Path(root), Path(out_dir)
    groups = data.parse_instruments(config.instruments)
    names = tuple(g.name for g in groups)
    tracks = read_split(root, "train")
    window = int(config.window_seconds * config.sample_rate)

    def train_data(seed: int):
        return data.SeparationWindows(tracks, groups, sample_rate=config.sample_rate,
                                      window_samples=window, batch_size=config.batch_size,
                                      seed=seed)

    dnn = DNNSeparator(instruments=names, sample_rate=config.sample_rate)
    layerwise = training.train_dnn_layerwise(
        dnn, train_data, out_dir / "runs" / "dnn", num_layers=config.dnn_layers,
        ls_batches=config.dnn_ls_batches, steps_per_layer=config.dnn_steps_per_layer,
        finetune_steps=config.dnn_finetune_steps, learning_rate=config.dnn_learning_rate,
        seed=config.seed)
    unet = UNetSeparator(instruments=names, sample_rate=config.sample_rate,
                         n_fft=config.unet_n_fft, hop_length=config.unet_hop,
                         channels=tuple(config.unet_channels))
    unet_params = training.train_unet(unet, train_data, out_dir / "runs" / "unet",
                                      num_steps=config.unet_steps,
                                      learning_rate=config.unet_learning_rate, seed=config.seed)

    def model_estimator(model, params):
        return lambda mix, src: separate.separate_with_model(model, params, mix)

    estimators: dict[str, evaluate.Estimator] = {}
    for label, est in evaluate.oracle_estimators(dnn.stft_config).items():
        estimators[label if label == "mixture" else f"{label} (n_fft {dnn.n_fft})"] = est
    for label, est in evaluate.oracle_estimators(unet.stft_config).items():
        if label != "mixture":
            estimators[f"{label} (n_fft {unet.n_fft})"] = est
    estimators["DNN, LS init"] = model_estimator(*layerwise.ls_init)
    estimators[f"DNN, {config.dnn_layers} layers trained"] = model_estimator(*layerwise.trained)
    estimators["U-Net"] = model_estimator(unet, unet_params)

    eval_tracks = read_split(root, config.eval_split)
    examples = list(data.evaluation_examples(eval_tracks, groups, config.sample_rate,
                                             max_seconds=config.eval_max_seconds))
    scores = evaluate.score_tracks(estimators, examples, names, config.sample_rate,
                                   bss_eval=config.bss_eval)
    rows = evaluate.summarize_scores(scores)
    paths = evaluate.write_table(rows, scores, out_dir)
    paths["chart"] = evaluate.write_bar_chart(rows, out_dir / "separation_si_sdr.png")

    track_id, mixture, sources = examples[0]
    stem_dir = out_dir / "stems" / track_id
    write_audio(stem_dir / "mixture.wav", mixture, config.sample_rate)
    for method in ("mixture", f"IRM (n_fft {dnn.n_fft})", "DNN, LS init",
                   f"DNN, {config.dnn_layers} layers trained", "U-Net"):
        est = estimators[method](mixture, sources)
        folder = stem_dir / method.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "")
        for j, name in enumerate(names):
            write_audio(folder / f"{name}.wav", np.clip(est[j], -1, 1), config.sample_rate)
    summary = {"table": evaluate.markdown_table(rows), "paths": {k: str(v) for k, v in paths.items()},
               "stage_losses": layerwise.stage_losses, "config": dataclasses.asdict(config)}
    (out_dir / "experiment.json").write_text(json.dumps(summary, indent=2))
    return summary


def main_demo(root: str, out_dir: str, overrides: Mapping[str, Any] | None = None) -> str:
    """Runs `run_experiment` with optional config overrides; returns the markdown table."""
    config = dataclasses.replace(ExperimentConfig(), **(overrides or {}))
    return run_experiment(root, out_dir, config)["table"]

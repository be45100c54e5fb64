"""From a Slakh-layout folder to trained separators (checkpoints that rebuild themselves), a score
table and listenable stems.

- `train_separators(dataset_root, workdir, config)` trains the context DNN layer-wise
  (least-squares growth + trainer steps) and/or the U-Net on `dataset_root/train` windows
  (remixed across tracks, random gains) and writes one separator run directory per model, each
  with `separator.json` (see `separation.checkpoints`):
  `workdir/dnn_ls_init/` (the least-squares-initialised DNN, no gradient step),
  `workdir/dnn/<last stage>/` (trained DNN), `workdir/unet/`; plus `workdir/separators.json`
  mapping 'dnn_ls_init' / 'dnn' / 'unet' to those directories (merged with an existing one, so
  the DNN and the U-Net can be trained by separate runs into one workdir).
- `evaluate_separators(dataset_root, split, separators, out_dir, ...)` scores the mixture, IBM and
  IRM at each model's STFT settings and every given separator on the split; writes
  `separation_scores.{md,csv}`, per-track CSV, `separation_si_sdr.png`, what each output is made
  of (`separation_composition.{md,csv}`, a heat map per separator beside the mixture's) and the
  stems of the first evaluation track (`stems/<track>/<method>/<instrument>.wav` +
  `mixture.wav`).
- `run_experiment(root, out_dir, config)` does both (the README's demo).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from mt3x import trainer
from mt3x.audio.io import write_audio
from mt3x.data.slakh import read_split
from mt3x.errors import Mt3xError
from mt3x.util.files import atomic_path
from separation import checkpoints, data, evaluate, separate, training
from separation.model_objects import DNNSeparator, UNetSeparator

LS_INIT_LABEL = "DNN, LS init"
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Settings of training and evaluation (defaults: a few minutes on 2 CPU cores, demo set).

    `models` picks what `train_separators` trains: any of 'dnn', 'unet'.
    """
    instruments: str = "4stem"
    models: tuple[str, ...] = ("dnn", "unet")
    sample_rate: int = 16000
    window_seconds: float = 2.0
    batch_size: int = 8
    seed: int = 0
    dnn_n_fft: int = 256
    dnn_hop: int = 128
    dnn_context: int = 3
    dnn_frame_skip: int = 1
    dnn_activation: str = "relu"
    dnn_loss: str = "sse"
    dnn_layers: int = 2
    dnn_ls_batches: int = 10
    dnn_steps_per_layer: int = 30
    dnn_finetune_steps: int = 60
    dnn_learning_rate: float = 1e-4
    dnn_wiener_power: float = 2.0
    """Exponent of the DNN's Wiener masks (2: power ratio, 1: amplitude ratio)."""
    unet_n_fft: int = 1024
    unet_hop: int = 256
    unet_channels: tuple[int, ...] = (16, 32, 64)
    unet_steps: int = 150
    unet_learning_rate: float = 1e-3
    unet_lr_schedule: str = "constant"
    """'constant', or 'cosine': linear warm-up over the first 5% of `unet_steps`, then cosine
    decay to 0 at `unet_steps` (for long runs)."""
    unet_magnitude_loss: str = "l2"
    unet_waveform_loss_weight: float = 0.0
    unet_magnitude_loss_weight: float = 1.0
    unet_si_sdr_loss_weight: float = 0.0
    """Weight of -SI-SDR (dB) of the U-Net's waveform estimates in its loss."""
    unet_mask: str = "softmax"
    save_every_steps: int = 1000
    eval_split: str = "test"
    eval_max_tracks: int | None = None
    eval_max_seconds: float | None = 30.0
    bss_eval: bool = True
    show_progress: bool = True
    """Progress bars with step/s, loss and ETA for every training stage."""
    dnn_keep_best: bool = True
    """Score the DNN's least-squares snapshots and its gradient training on `validation/`
    windows (mean SI-SDR) and keep the best, so training never ends below its LS start."""
    dnn_validation_batches: int = 4
    """Fixed batches of validation windows (no remixing, no gains) for dnn_keep_best."""
    dnn_validate_every: int = 0
    """Also score every this many steps inside a stage (0: stage ends only)."""
    train_remix: bool = True
    """Training windows remix every group from its own random track with a random gain in
    [0.25, 1.25] (`data.SeparationWindows`). Such windows hold every group at once, denser than
    real tracks (2-5 parts); False trains on windows of the real mixtures (no gains)."""


@dataclasses.dataclass
class TrainedSeparator:
    """One trained separator: its row label, model, host params and run directory."""
    label: str
    model: Any
    params: Any
    directory: Path


def train_separators(dataset_root: str | Path, workdir: str | Path,
                     config: ExperimentConfig = ExperimentConfig(), *, gin_config: str = ""
                     ) -> dict[str, TrainedSeparator]:
    """Trains the configured separators; returns {'dnn_ls_init', 'dnn', 'unet'} (those trained).

    Args:
      dataset_root: a folder in Slakh2100's layout (`train/` is used).
      workdir: run root (resumable: stages with checkpoints continue where they stopped).
      config: the settings.
      gin_config: operative gin text, saved next to every trainer checkpoint.
    """
    root, workdir = Path(dataset_root), Path(workdir)
    unknown = set(config.models) - {"dnn", "unet"}
    if unknown or not config.models:
        raise Mt3xError(f"ExperimentConfig.models {config.models!r}: expected a non-empty "
                             "subset of ('dnn', 'unet')")
    training.unet_rate_schedule(config.unet_learning_rate, config.unet_steps,
                                config.unet_lr_schedule)   # a bad name fails before any work
    groups = data.parse_instruments(config.instruments)
    names = tuple(g.name for g in groups)
    tracks = read_split(root, "train")
    window = int(config.window_seconds * config.sample_rate)

    def train_data(seed: int):
        return data.SeparationWindows(tracks, groups, sample_rate=config.sample_rate,
                                      window_samples=window, batch_size=config.batch_size,
                                      seed=seed, remix=config.train_remix,
                                      gain_range=(0.25, 1.25) if config.train_remix else None)

    train_kwargs = {"gin_config": gin_config, "show_progress": config.show_progress,
                    "checkpoint": trainer.CheckpointOptions(
                        save_every_steps=config.save_every_steps)}
    out: dict[str, TrainedSeparator] = {}
    if "dnn" in config.models:
        dnn = DNNSeparator(instruments=names, sample_rate=config.sample_rate,
                           n_fft=config.dnn_n_fft, hop_length=config.dnn_hop,
                           context=config.dnn_context, frame_skip=config.dnn_frame_skip,
                           activation=config.dnn_activation, loss_type=config.dnn_loss,
                           wiener_power=config.dnn_wiener_power)
        layerwise = training.train_dnn_layerwise(
            dnn, train_data, workdir / "dnn", num_layers=config.dnn_layers,
            ls_batches=config.dnn_ls_batches, steps_per_layer=config.dnn_steps_per_layer,
            finetune_steps=config.dnn_finetune_steps, learning_rate=config.dnn_learning_rate,
            seed=config.seed, train_kwargs=train_kwargs,
            validate=_dnn_validation(root, groups, config, window),
            validate_every=config.dnn_validate_every)
        if layerwise.validation:
            log.info("DNN validation SI-SDR %s; kept %s", layerwise.validation, layerwise.best)
        ls_model, ls_params = layerwise.ls_init
        ls_dir = checkpoints.save_params_checkpoint(workdir / "dnn_ls_init", ls_model, ls_params,
                                                    groups=groups, seed=config.seed)
        out["dnn_ls_init"] = TrainedSeparator(LS_INIT_LABEL, ls_model, ls_params, ls_dir)
        model, params = layerwise.trained
        if layerwise.final_stage is None:   # LS layers or a mid-stage snapshot kept as best
            final_dir = checkpoints.save_params_checkpoint(
                workdir / "dnn" / ("best" if layerwise.best else "ls_layers"), model, params,
                groups=groups, seed=config.seed)
        else:
            final_dir = workdir / "dnn" / layerwise.final_stage
            checkpoints.write_separator_json(final_dir, model, groups)
        out["dnn"] = TrainedSeparator(f"DNN, {config.dnn_layers} layers trained", model, params,
                                      final_dir)
    if "unet" in config.models:
        unet = UNetSeparator(instruments=names, sample_rate=config.sample_rate,
                             n_fft=config.unet_n_fft, hop_length=config.unet_hop,
                             channels=tuple(config.unet_channels),
                             mask=config.unet_mask,
                             magnitude_loss=config.unet_magnitude_loss,
                             magnitude_loss_weight=config.unet_magnitude_loss_weight,
                             waveform_loss_weight=config.unet_waveform_loss_weight,
                             si_sdr_loss_weight=config.unet_si_sdr_loss_weight)
        unet_params = training.train_unet(unet, train_data, workdir / "unet",
                                          num_steps=config.unet_steps,
                                          learning_rate=config.unet_learning_rate,
                                          lr_schedule=config.unet_lr_schedule,
                                          seed=config.seed, train_kwargs=train_kwargs)
        checkpoints.write_separator_json(workdir / "unet", unet, groups)
        out["unet"] = TrainedSeparator("U-Net", unet, unet_params, workdir / "unet")
    index_path = workdir / "separators.json"
    index = json.loads(index_path.read_text()) if index_path.is_file() else {}
    index.update({key: str(sep.directory.absolute()) for key, sep in out.items()})
    with atomic_path(index_path) as tmp:
        tmp.write_text(json.dumps(index, indent=2) + "\n")
    return out


def _dnn_validation(root: Path, groups: Sequence[data.InstrumentGroup], config: ExperimentConfig,
                    window: int):
    """`validate` for the layer-wise DNN (None when off or without validation tracks)."""
    if not config.dnn_keep_best or config.dnn_validation_batches < 1:
        return None
    try:
        tracks = read_split(root, "validation")
    except Exception:   # noqa: BLE001 - no validation split: train without selection
        tracks = []
    if not tracks:
        log.warning("no validation tracks under %s: the DNN keeps its last stage", root)
        return None
    windows = data.SeparationWindows(tracks, groups, sample_rate=config.sample_rate,
                                     window_samples=window, batch_size=config.batch_size,
                                     seed=config.seed + 7, remix=False, gain_range=None)
    return training.validation_si_sdr(
        itertools.islice(iter(windows), config.dnn_validation_batches))


def evaluate_separators(dataset_root: str | Path, split: str,
                        separators: Sequence[tuple[str, Any, Any]], out_dir: str | Path, *,
                        instruments: str | Sequence[data.InstrumentGroup] | None = None, max_tracks: int | None = None,
                        max_seconds: float | None = 30.0, bss_eval: bool = True,
                        stems_of_first_track: bool = True,
                        ood_root: str | Path | None = None, ood_split: str = "test"
                        ) -> dict[str, Any]:
    """Scores the framing rows and every separator on `dataset_root/split` (and, with
    `ood_root`, on an out-of-domain folder's `ood_split` too, side by side).

    Args:
      separators: (row label, model, host params); all must share instruments and sample rate.
      instruments: the instrument groups of the targets, or their spec string (as the models were
        trained with; the group names must equal the separators' instrument names).
      max_tracks: evaluate the first this many tracks (sorted by id); max_seconds: truncate each.
      ood_root: an out-of-domain Slakh-layout folder (e.g. `mt3x-data build --preset ood-eval`);
        its tables go to `out_dir/out-of-domain/`, and `separation_domains.md` puts both side by
        side.
    Returns: {'table': in-domain markdown, 'rows', 'paths'}, plus 'domains_table' and
      'ood_rows' with `ood_root`.
    """
    if not separators:
        raise Mt3xError("evaluate_separators: no separators given")
    first = separators[0][1]
    names, rate = tuple(first.instruments), first.sample_rate
    for label, model, _ in separators:
        if tuple(model.instruments) != names or model.sample_rate != rate:
            raise Mt3xError(
                f"separator {label!r} has instruments {model.instruments} at {model.sample_rate} "
                f"Hz; the first has {names} at {rate} Hz: evaluate models of one target set")
    if instruments is None:
        raise Mt3xError("evaluate_separators: pass the instrument groups (or spec) of the targets")
    groups = (data.parse_instruments(instruments) if isinstance(instruments, str)
              else tuple(instruments))
    if tuple(g.name for g in groups) != names:
        raise Mt3xError(f"instrument spec {instruments!r} names {[g.name for g in groups]}; "
                             f"the separators separate {list(names)}")
    out_dir = Path(out_dir)
    estimators: dict[str, evaluate.Estimator] = {}
    stfts = list(dict.fromkeys(m.stft_config for _, m, _ in separators))
    for label, est in evaluate.oracle_estimators(stfts[0]).items():
        if label == "mixture":
            estimators[label] = est
    for stft in stfts:
        for label, est in evaluate.oracle_estimators(stft).items():
            if label != "mixture":
                estimators[f"{label} (n_fft {stft.n_fft})"] = est
    for label, model, params in separators:
        estimators[label] = (lambda m, p: lambda mix, src: separate.separate_with_model(m, p, mix)
                             )(model, params)
    models = [label for label, _, _ in separators]
    rows, paths = _score_split(estimators, dataset_root, split, groups, names, rate, out_dir,
                               max_tracks=max_tracks, max_seconds=max_seconds,
                               bss_eval=bss_eval, stems_of_first_track=stems_of_first_track,
                               models=models)
    result: dict[str, Any] = {"table": evaluate.markdown_table(rows), "rows": rows}
    if ood_root is not None:
        ood_rows, ood_paths = _score_split(
            estimators, ood_root, ood_split, groups, names, rate, out_dir / "out-of-domain",
            max_tracks=max_tracks, max_seconds=max_seconds, bss_eval=bss_eval,
            stems_of_first_track=False, models=models)
        paths.update({f"out-of-domain {k}": v for k, v in ood_paths.items()})
        table = evaluate.domains_markdown({"in-domain": rows, "out-of-domain": ood_rows})
        paths["domains"] = out_dir / "separation_domains.md"
        with atomic_path(paths["domains"]) as tmp:
            tmp.write_text(table)
        result.update(domains_table=table, ood_rows=ood_rows)
    result["paths"] = {k: str(v) for k, v in paths.items()}
    return result


def _score_split(estimators: dict[str, evaluate.Estimator], root: str | Path, split: str,
                 groups: Sequence[data.InstrumentGroup], names: Sequence[str], rate: int,
                 out_dir: Path, *, max_tracks: int | None, max_seconds: float | None,
                 bss_eval: bool, stems_of_first_track: bool, models: Sequence[str] = ()
                 ) -> tuple[list[evaluate.TableRow], dict[str, Any]]:
    """Scores every estimator on `root/split`; writes the tables, what each output is made of (a
    heat map per learned model in `models`) and the first track's stems under `out_dir`; returns
    (rows, paths)."""
    tracks = read_split(root, split)
    if max_tracks is not None:
        tracks = tracks[:max_tracks]
    examples = list(data.evaluation_examples(tracks, groups, rate, max_seconds=max_seconds))
    scores = evaluate.score_tracks(estimators, examples, names, rate, bss_eval=bss_eval)
    rows = evaluate.summarize_scores(scores)
    paths = evaluate.write_table(rows, scores, out_dir)
    paths["chart"] = evaluate.write_bar_chart(rows, out_dir / "separation_si_sdr.png")
    paths.update(evaluate.write_compositions(scores, out_dir, pictures=models))
    if stems_of_first_track:
        track_id, mixture, sources = examples[0]
        stem_dir = out_dir / "stems" / track_id
        write_audio(stem_dir / "mixture.wav", mixture, rate)
        for method, est_fn in estimators.items():
            if method.startswith("IBM"):
                continue
            est = est_fn(mixture, sources)
            for j, name in enumerate(names):
                write_audio(stem_dir / evaluate.file_label(method) / f"{name}.wav",
                            np.clip(est[j], -1, 1), rate)
        paths["stems"] = stem_dir
    return rows, paths


def run_experiment(root: str | Path, out_dir: str | Path,
                   config: ExperimentConfig = ExperimentConfig(), *, gin_config: str = "",
                   ood_root: str | Path | None = None) -> dict[str, Any]:
    """Trains (under out_dir/runs), evaluates and writes everything under `out_dir`; with
    `ood_root` (a Slakh-layout folder whose test split is out of domain) also scores there and
    adds the side-by-side 'domains_table'."""
    out_dir = Path(out_dir)
    trained = train_separators(root, out_dir / "runs", config, gin_config=gin_config)
    order = [k for k in ("dnn_ls_init", "dnn", "unet") if k in trained]
    result = evaluate_separators(
        root, config.eval_split, [(trained[k].label, trained[k].model, trained[k].params)
                                  for k in order], out_dir,
        instruments=config.instruments, max_tracks=config.eval_max_tracks,
        max_seconds=config.eval_max_seconds, bss_eval=config.bss_eval, ood_root=ood_root)
    summary = {"table": result["table"], "paths": result["paths"],
               "checkpoints": {k: str(trained[k].directory) for k in order},
               "config": dataclasses.asdict(config)}
    if "domains_table" in result:
        summary["domains_table"] = result["domains_table"]
    with atomic_path(out_dir / "experiment.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    return summary


def main_demo(root: str, out_dir: str, overrides: Mapping[str, Any] | None = None) -> str:
    """Runs `run_experiment` with optional config overrides; returns the markdown table."""
    config = dataclasses.replace(ExperimentConfig(), **(overrides or {}))
    return run_experiment(root, out_dir, config)["table"]

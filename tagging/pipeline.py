"""End-to-end jobs: train on a Slakh2100-layout folder, tag audio files, cluster tracks.

These are what `mt3x-tag` calls; each returns plain results and writes files atomically.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mt3x.audio.io import read_audio, resample
from mt3x.data.slakh import read_split
from mt3x.util.files import atomic_path
from tagging.cluster import TRACK_STAT_NAMES, TrackClusters, cluster_tracks
from tagging.examples import (InstrumentGrouping, LabelConfig, SnippetExamples,
                              build_examples, cut_snippets)
from tagging.features import FeatureConfig, compute_features
from tagging.importance import BandImportance, band_importance, region_summary
from tagging.model import (METRIC_COLUMNS, Tagger, TrainConfig, evaluate,
                           metrics_markdown, save_tagger, train_tagger)
from tagging.plots import cluster_plot, importance_chart

__all__ = [
    "TagResult",
    "TrainResult",
    "cluster_folder",
    "load_split_examples",
    "tag_audio",
    "tag_file",
    "train_on_folder",
    "write_cluster_outputs",
    "write_tags_csv",
    "write_training_outputs",
]


@dataclasses.dataclass
class TagResult:
    """Per-second activity of one recording.

    Attributes:
      start_seconds: f64[snippets], start of each snippet (s); one snippet per started second.
      probabilities: f64[snippets, instruments].
      decisions: bool[snippets, instruments].
      instruments: column names.
    """

    start_seconds: np.ndarray
    probabilities: np.ndarray
    decisions: np.ndarray
    instruments: list[str]


def tag_audio(tagger: Tagger, audio: np.ndarray, sample_rate: int) -> TagResult:
    """Tags mono `audio` f32[samples] at `sample_rate` Hz (resampled to the tagger's rate)."""
    config = tagger.feature_config
    audio = np.asarray(audio, np.float32)
    if sample_rate != config.sample_rate:
        audio = np.asarray(resample(audio, sample_rate, config.sample_rate), np.float32)
    snippets = cut_snippets(audio, config.sample_rate, config.snippet_seconds, partial="pad")
    proba, decisions = tagger.predict(compute_features(snippets, config))
    starts = np.arange(snippets.shape[0]) * config.snippet_seconds
    return TagResult(starts, proba, decisions, list(tagger.instruments))


def tag_file(tagger: Tagger, path: str | os.PathLike) -> TagResult:
    """Reads `path` (mono mix-down, resampled) and tags it. Raises AudioError on a bad file."""
    audio, rate = read_audio(path, sample_rate=tagger.feature_config.sample_rate, mono=True)
    return tag_audio(tagger, audio, rate)


def write_tags_csv(result: TagResult, path: str | os.PathLike, *,
                   snippet_seconds: float = 1.0) -> Path:
    """CSV, one row per snippet: start_s, end_s, then p_<instrument> and <instrument> (0/1)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["start_s", "end_s"] + [f"p_{n}" for n in result.instruments]
                        + list(result.instruments))
        for i, start in enumerate(result.start_seconds):
            writer.writerow([f"{start:g}", f"{start + snippet_seconds:g}"]
                            + [f"{p:.4f}" for p in result.probabilities[i]]
                            + [int(d) for d in result.decisions[i]])
    return path


def load_split_examples(root: str | os.PathLike, split: str, *,
                        instruments: Sequence[str] | None = None,
                        grouping: InstrumentGrouping = InstrumentGrouping(),
                        label_config: LabelConfig = LabelConfig(),
                        feature_config: FeatureConfig = FeatureConfig(),
                        progress: bool = False) -> SnippetExamples:
    """Examples of every track of `root/split` (Slakh2100 layout)."""
    tracks = read_split(root, split)
    return build_examples(tracks, instruments=instruments, grouping=grouping,
                          label_config=label_config, feature_config=feature_config,
                          progress=progress)


@dataclasses.dataclass
class TrainResult:
    """What `train_on_folder` produced."""

    tagger: Tagger
    rows: list[dict[str, Any]]
    importance: BandImportance
    regions: list[dict[str, Any]]
    label_agreement: dict[str, float]
    split_sizes: dict[str, int]


def label_agreement(examples: SnippetExamples) -> dict[str, float]:
    """How often the energy and MIDI rules agree, over snippets x instruments present in the
    track: overall rate, and Cohen's-kappa-free breakdown (both on, both off, only one)."""
    mask = examples.present
    energy = examples.energy_labels[mask]
    midi = examples.midi_labels[mask]
    if energy.size == 0:
        return {"agreement": math.nan, "cells": 0}
    return {"agreement": float(np.mean(energy == midi)), "cells": int(energy.size),
            "both_on": float(np.mean(energy & midi)), "both_off": float(np.mean(~energy & ~midi)),
            "energy_only": float(np.mean(energy & ~midi)),
            "midi_only": float(np.mean(~energy & midi))}


def train_on_folder(root: str | os.PathLike, *,
                    grouping: InstrumentGrouping = InstrumentGrouping(),
                    label_config: LabelConfig = LabelConfig(),
                    feature_config: FeatureConfig = FeatureConfig(),
                    train_config: TrainConfig = TrainConfig(),
                    progress: bool = False) -> TrainResult:
    """Builds train/validation/test examples of `root`, trains, evaluates on test."""
    feature_config.validate()
    train = load_split_examples(root, "train", grouping=grouping, label_config=label_config,
                                feature_config=feature_config, progress=progress)
    common = dict(instruments=train.instruments, grouping=grouping, label_config=label_config,
                  feature_config=feature_config, progress=progress)
    validation = load_split_examples(root, "validation", **common)
    test = load_split_examples(root, "test", **common)
    tagger = train_tagger(train, validation, config=train_config, feature_config=feature_config,
                          label_config=label_config, grouping=grouping)
    rows = evaluate(tagger, test, train=train)
    importance = band_importance(tagger)
    return TrainResult(tagger=tagger, rows=rows, importance=importance,
                       regions=region_summary(importance), label_agreement=label_agreement(test),
                       split_sizes={"train": len(train), "validation": len(validation),
                                    "test": len(test)})


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_training_outputs(result: TrainResult, out_dir: str | os.PathLike) -> dict[str, Path]:
    """out_dir/model/ (the tagger), metrics.md, metrics.csv, importance.png, importance.csv,
    summary.json. Returns the paths by name."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"model": save_tagger(result.tagger, out / "model")}
    paths["metrics_md"] = out / "metrics.md"
    regions_md = "\n".join(
        f"| {r['region']} | {r['bands']} | {r['band_fraction']:.2f} | {r['gain_fraction']:.2f} | "
        f"{r['gain_per_band_ratio']:.2f} |" for r in result.regions)
    skipped = "".join(f"- skipped {k}: {v}\n" for k, v in result.tagger.skipped.items())
    _write_text(paths["metrics_md"],
                f"# Instrument tagging: test split\n\nsnippets: {result.split_sizes}; labels: "
                f"{result.tagger.label_config.source}\n\n{metrics_markdown(result.rows)}\n"
                f"{skipped}\n## Band importance (gain share, mean over instruments)\n\n"
                "| region | bands | share of bands | share of band gain | ratio |\n"
                f"|---|---:|---:|---:|---:|\n{regions_md}\n")
    paths["metrics_csv"] = out / "metrics.csv"
    with atomic_path(paths["metrics_csv"]) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(METRIC_COLUMNS), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(result.rows)
    paths["importance_png"] = importance_chart(result.importance, out / "importance.png",
                                               split_hz=result.tagger.feature_config.split_hz)
    paths["importance_csv"] = out / "importance.csv"
    imp = result.importance
    with atomic_path(paths["importance_csv"]) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["instrument"] + [f"{hz:.0f}Hz" for hz in imp.band_centres_hz]
                        + imp.other_names)
        for i, name in enumerate(imp.instruments):
            writer.writerow([name] + [f"{v:.5f}" for v in imp.band_share[i]]
                            + [f"{v:.5f}" for v in imp.other_share[i]])
    paths["summary"] = out / "summary.json"
    _write_text(paths["summary"], json.dumps(
        {"split_sizes": result.split_sizes, "label_agreement_test": result.label_agreement,
         "regions": result.regions, "metrics": result.rows, "skipped": result.tagger.skipped},
        indent=2, default=float) + "\n")
    return paths


def cluster_folder(root: str | os.PathLike, split: str, *, k: int = 4, seed: int = 0,
                   feature_config: FeatureConfig = FeatureConfig(),
                   progress: bool = False) -> tuple[TrackClusters, dict[str, list[str]]]:
    """Clusters the tracks of `root/split`; also returns each track's instrument classes."""
    tracks = read_split(root, split)
    examples = build_examples(tracks, feature_config=feature_config, progress=progress)
    clusters = cluster_tracks(examples, k=k, seed=seed)
    classes = {str(t.track_id): sorted({s.inst_class for s in t.stems
                                        if getattr(s, "audio_rendered", True)}) for t in tracks}
    return clusters, classes


def write_cluster_outputs(clusters: TrackClusters, classes: dict[str, list[str]],
                          out_dir: str | os.PathLike) -> dict[str, Path]:
    """out_dir/clusters.csv (track, cluster, PCA x/y, statistics, instruments), clusters.png."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "clusters.csv"
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["track", "cluster", "pc1", "pc2", *TRACK_STAT_NAMES, "instruments"])
        for i, track in enumerate(clusters.track_ids):
            writer.writerow([track, int(clusters.labels[i]),
                             f"{clusters.projection[i, 0]:.4f}", f"{clusters.projection[i, 1]:.4f}",
                             *[f"{v:.4f}" for v in clusters.statistics[i]],
                             ";".join(classes.get(track, []))])
    return {"csv": csv_path, "png": cluster_plot(clusters, out / "clusters.png")}

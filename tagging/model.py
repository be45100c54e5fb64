"""One LightGBM binary classifier per instrument: train, evaluate, save and load.

Training: each instrument's booster learns `p(instrument plays in the snippet | features)` on the
train split, with early stopping on the validation split's binary log-loss. Its decision threshold
is the one that maximises F1 on validation (0.5 when validation has fewer than 5 positive or
negative snippets of it, or `tune_thresholds=False`). With `threshold_objective='micro'` the
thresholds are instead tuned jointly for the micro F1 of all instrument x snippet decisions pooled
on validation: one threshold shared by all instruments (`micro_thresholds`). Per-instrument F1
switches a rare instrument on almost always (its best F1 is often "always on"), which costs many
false positives in the pooled count.
Instruments with fewer than `min_positives` positive (or negative) train snippets are skipped and
reported.

Evaluation (`evaluate`): per instrument precision, recall, F1 (at the threshold), ROC AUC (NaN
when the test split holds only one class), accuracy and balanced accuracy; micro averages (all
instrument-snippet decisions pooled) and macro averages (mean over instruments); and the
majority-class baseline (each instrument always predicted as its majority class in train).

On disk (`save_tagger` / `load_tagger`), a directory written atomically:
  manifest.json       {format, instruments: [{name, model_file, threshold, best_iteration,
                       train_positives, train_snippets}], feature_names, feature_config,
                       label_config, grouping}
  <instrument>.txt    LightGBM text model
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
from sklearn import metrics as skm

from mt3x.errors import Mt3xError
from mt3x.util.files import atomic_path, resolve_inside
from tagging.examples import InstrumentGrouping, LabelConfig, SnippetExamples
from tagging.features import FeatureConfig, feature_names

__all__ = [
    "ModelDirError",
    "Tagger",
    "TrainConfig",
    "evaluate",
    "load_tagger",
    "metrics_markdown",
    "micro_thresholds",
    "save_tagger",
    "train_tagger",
]

MANIFEST = "manifest.json"
FORMAT = "mt3x-tagger-1"


class ModelDirError(Mt3xError):
    """A tagger directory is missing, incomplete or does not match the features."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """LightGBM settings (see the LightGBM parameter docs); every random choice uses `seed`."""

    learning_rate: float = 0.05
    num_leaves: int = 15
    min_data_in_leaf: int = 10
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    lambda_l2: float = 1.0
    max_rounds: int = 500
    early_stopping_rounds: int = 30
    min_positives: int = 5
    tune_thresholds: bool = True
    threshold_objective: str = "instrument"
    num_threads: int = 1
    seed: int = 0

    def lgb_params(self) -> dict[str, Any]:
        return {
            "objective": "binary", "metric": "binary_logloss", "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves, "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction, "bagging_fraction": self.bagging_fraction,
            "bagging_freq": 1, "lambda_l2": self.lambda_l2, "num_threads": self.num_threads,
            "seed": self.seed, "deterministic": True, "force_row_wise": True, "verbose": -1,
        }


@dataclasses.dataclass
class Tagger:
    """Trained per-instrument boosters and what is needed to apply them to new audio."""

    instruments: list[str]
    boosters: dict[str, lgb.Booster]
    thresholds: dict[str, float]
    feature_names: list[str]
    feature_config: FeatureConfig
    label_config: LabelConfig
    grouping: InstrumentGrouping
    info: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """f32[n, features] -> f64[n, instruments] probabilities of playing."""
        features = np.asarray(features, np.float32)
        if features.ndim != 2 or features.shape[1] != len(self.feature_names):
            raise ModelDirError(
                f"features: expected [n, {len(self.feature_names)}], got {features.shape}")
        if features.shape[0] == 0:
            return np.zeros((0, len(self.instruments)))
        return np.stack([self.boosters[name].predict(features, num_iteration=self._best(name))
                         for name in self.instruments], axis=1)

    def predict(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities f64[n, instruments], decisions bool[n, instruments])."""
        proba = self.predict_proba(features)
        limits = np.array([self.thresholds[name] for name in self.instruments])
        return proba, proba >= limits

    def _best(self, name: str) -> int | None:
        best = self.boosters[name].best_iteration
        return best if best and best > 0 else None


def _best_threshold(y: np.ndarray, proba: np.ndarray, min_count: int = 5) -> float:
    """The probability threshold maximising F1 on (y, proba); 0.5 when either class has fewer
    than `min_count` snippets (too few to tune on)."""
    if min(int(y.sum()), int((~y.astype(bool)).sum())) < min_count:
        return 0.5
    precision, recall, thresholds = skm.precision_recall_curve(y, proba)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    best = int(np.argmax(f1[:-1]))
    return float(thresholds[best])


def _pooled_f1(y: np.ndarray, pred: np.ndarray) -> float:
    denom = float(y.sum() + pred.sum())
    return 2.0 * float(np.sum(y & pred)) / denom if denom else 0.0


def micro_thresholds(y: np.ndarray, proba: np.ndarray, *, passes: int = 0,
                     candidates: int = 51) -> np.ndarray:
    """f64[instruments] thresholds maximising the pooled (micro) F1 of `proba >= thresholds`.

    Args:
      y: bool[n, instruments] validation labels.
      proba: f64[n, instruments] validation probabilities.
      passes: coordinate-ascent sweeps over the instruments after the shared threshold; 0
        (default) keeps one shared threshold: on 24 validation tracks, per-instrument refinement
        raised validation F1 but lowered test micro F1 (0.695 -> 0.602 in-domain).
      candidates: quantiles of each instrument's probabilities tried (plus 'never on', 1.01).

    The shared threshold (over 201 pooled quantiles) with the best pooled F1; with passes > 0,
    then one instrument's threshold at a time moves while the pooled F1 strictly improves."""
    y = np.asarray(y, bool)
    proba = np.asarray(proba, np.float64)
    if y.size == 0:
        return np.full(y.shape[1], 0.5)
    pooled = np.unique(np.quantile(proba, np.linspace(0.0, 1.0, 201)))
    start = max(pooled, key=lambda t: _pooled_f1(y, proba >= t))
    limits = np.full(y.shape[1], float(start))
    best = _pooled_f1(y, proba >= limits)
    for _ in range(passes):
        for i in range(y.shape[1]):
            options = np.unique(np.quantile(proba[:, i], np.linspace(0.0, 1.0, candidates)))
            for t in [*options.tolist(), 1.01]:
                trial = limits.copy()
                trial[i] = t
                value = _pooled_f1(y, proba >= trial)
                if value > best + 1e-12:
                    best, limits = value, trial
    return limits


def train_tagger(train: SnippetExamples, validation: SnippetExamples, *,
                 label_source: str | None = None, config: TrainConfig = TrainConfig(),
                 feature_config: FeatureConfig = FeatureConfig(),
                 label_config: LabelConfig = LabelConfig(),
                 grouping: InstrumentGrouping = InstrumentGrouping()) -> Tagger:
    """Trains one booster per instrument of `train` (columns of train.instruments).

    `validation` must have the same instrument columns. `label_source` defaults to
    `label_config.source`."""
    if config.threshold_objective not in ("instrument", "micro"):
        raise Mt3xError("threshold_objective: expected 'instrument' or 'micro', got "
                        f"{config.threshold_objective!r}")
    if train.instruments != validation.instruments:
        raise Mt3xError("validation examples have other instrument columns than train: "
                        f"{validation.instruments} vs {train.instruments}")
    if len(validation) == 0:
        raise Mt3xError("validation split has no snippets; early stopping needs some")
    source = label_source or label_config.source
    y_train, y_val = train.labels(source), validation.labels(source)
    names = train.feature_names
    boosters, thresholds, info, skipped = {}, {}, {}, {}
    for col, name in enumerate(train.instruments):
        positives = int(y_train[:, col].sum())
        negatives = len(train) - positives
        if min(positives, negatives) < config.min_positives:
            skipped[name] = (f"{positives} positive / {negatives} negative train snippets "
                             f"(< {config.min_positives})")
            continue
        dtrain = lgb.Dataset(train.features, label=y_train[:, col].astype(np.float32),
                             feature_name=names, free_raw_data=False)
        dval = lgb.Dataset(validation.features, label=y_val[:, col].astype(np.float32),
                           reference=dtrain)
        booster = lgb.train(config.lgb_params(), dtrain, num_boost_round=config.max_rounds,
                            valid_sets=[dval], valid_names=["validation"],
                            callbacks=[lgb.early_stopping(config.early_stopping_rounds,
                                                          verbose=False)])
        boosters[name] = booster
        proba = booster.predict(validation.features, num_iteration=booster.best_iteration or None)
        thresholds[name] = (_best_threshold(y_val[:, col], proba) if config.tune_thresholds
                            else 0.5)
        info[name] = {"best_iteration": int(booster.best_iteration or booster.current_iteration()),
                      "train_positives": positives, "train_snippets": len(train)}
    if not boosters:
        raise Mt3xError(f"no instrument has enough positive and negative train snippets: {skipped}")
    if config.tune_thresholds and config.threshold_objective == "micro":
        kept = [train.instruments.index(n) for n in boosters]
        proba = np.stack([b.predict(validation.features, num_iteration=b.best_iteration or None)
                          for b in boosters.values()], axis=1)
        thresholds = dict(zip(boosters, micro_thresholds(y_val[:, kept], proba).tolist()))
    return Tagger(instruments=list(boosters), boosters=boosters, thresholds=thresholds,
                  feature_names=list(names), feature_config=feature_config,
                  label_config=label_config, grouping=grouping, info=info, skipped=skipped)


def _binary_row(y: np.ndarray, pred: np.ndarray, proba: np.ndarray | None) -> dict[str, float]:
    y, pred = y.astype(bool), pred.astype(bool)
    tp = float(np.sum(y & pred))
    fp = float(np.sum(~y & pred))
    fn = float(np.sum(y & ~pred))
    tn = float(np.sum(~y & ~pred))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    tnr = tn / (tn + fp) if tn + fp else math.nan
    balanced = np.nanmean([recall if tp + fn else math.nan, tnr])
    auc = math.nan
    if proba is not None and 0 < y.sum() < y.size:
        auc = float(skm.roc_auc_score(y, proba))
    return {"support": int(tp + fn), "snippets": int(y.size), "precision": precision,
            "recall": recall, "f1": f1, "auc": auc, "accuracy": (tp + tn) / max(y.size, 1),
            "balanced_accuracy": float(balanced)}


def evaluate(tagger: Tagger, test: SnippetExamples, *, train: SnippetExamples | None = None,
             label_source: str | None = None) -> list[dict[str, Any]]:
    """Rows of per-instrument scores on `test`, then 'micro' and 'macro' rows.

    Every row: instrument, support, snippets, precision, recall, f1, auc, accuracy,
    balanced_accuracy, and the majority-class baseline's baseline_accuracy / baseline_f1 (the
    majority is taken from `train` when given, else from `test`)."""
    source = label_source or tagger.label_config.source
    columns = [test.instruments.index(n) for n in tagger.instruments]
    y = test.labels(source)[:, columns]
    proba, pred = tagger.predict(test.features)
    if train is not None:
        train_cols = [train.instruments.index(n) for n in tagger.instruments]
        majority = train.labels(source)[:, train_cols].mean(axis=0) > 0.5
    else:
        majority = y.mean(axis=0) > 0.5
    base = np.broadcast_to(majority, y.shape)
    rows = []
    for i, name in enumerate(tagger.instruments):
        row = {"instrument": name, **_binary_row(y[:, i], pred[:, i], proba[:, i])}
        baseline = _binary_row(y[:, i], base[:, i], None)
        row["baseline_accuracy"] = baseline["accuracy"]
        row["baseline_f1"] = baseline["f1"]
        rows.append(row)
    micro = {"instrument": "micro", **_binary_row(y.ravel(), pred.ravel(), proba.ravel())}
    micro_base = _binary_row(y.ravel(), base.ravel(), None)
    micro["baseline_accuracy"], micro["baseline_f1"] = micro_base["accuracy"], micro_base["f1"]
    macro: dict[str, Any] = {"instrument": "macro", "support": int(sum(r["support"] for r in rows)),
                             "snippets": int(y.shape[0])}
    for key in ("precision", "recall", "f1", "auc", "accuracy", "balanced_accuracy",
                "baseline_accuracy", "baseline_f1"):
        values = [r[key] for r in rows if not (isinstance(r[key], float) and math.isnan(r[key]))]
        macro[key] = float(np.mean(values)) if values else math.nan
    return rows + [micro, macro]


METRIC_COLUMNS = ("instrument", "support", "snippets", "precision", "recall", "f1", "auc",
                  "accuracy", "balanced_accuracy", "baseline_accuracy", "baseline_f1")


def metrics_markdown(rows: list[dict[str, Any]]) -> str:
    """A markdown table of `evaluate` rows."""
    lines = ["| " + " | ".join(METRIC_COLUMNS) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(METRIC_COLUMNS) - 1)) + "|"]
    for row in rows:
        cells = []
        for key in METRIC_COLUMNS:
            value = row[key]
            if isinstance(value, float):
                cells.append("n/a" if math.isnan(value) else f"{value:.3f}")
            else:
                cells.append(f"**{value}**" if key == "instrument" and value in ("micro", "macro")
                             else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _model_file(name: str, taken: set[str]) -> str:
    stem = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "instrument"
    candidate, k = f"{stem}.txt", 1
    while candidate in taken:
        k += 1
        candidate = f"{stem}_{k}.txt"
    taken.add(candidate)
    return candidate


def save_tagger(tagger: Tagger, directory: str | os.PathLike) -> Path:
    """Writes the tagger directory atomically (replacing an older one); returns its path."""
    directory = Path(directory)
    taken: set[str] = set()
    with atomic_path(directory, is_dir=True) as tmp:
        entries = []
        for name in tagger.instruments:
            model_file = _model_file(name, taken)
            booster = tagger.boosters[name]
            booster.save_model(str(tmp / model_file), num_iteration=booster.best_iteration or None)
            entries.append({"name": name, "model_file": model_file,
                            "threshold": float(tagger.thresholds[name]),
                            **tagger.info.get(name, {})})
        manifest = {"format": FORMAT, "instruments": entries,
                    "feature_names": list(tagger.feature_names),
                    "feature_config": tagger.feature_config.to_json(),
                    "label_config": tagger.label_config.to_json(),
                    "grouping": tagger.grouping.to_json(), "skipped": tagger.skipped}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return directory


def resolve_model_dir(directory: str | os.PathLike) -> Path:
    """The directory holding manifest.json: `directory` itself or its `model/` subfolder."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelDirError(f"{directory}: tagger model directory not found")
    for candidate in (directory, directory / "model"):
        if (candidate / MANIFEST).is_file():
            return candidate
    raise ModelDirError(f"{directory}: no {MANIFEST} (expected a directory written by "
                        "`mt3x-tag train`)")


def load_tagger(directory: str | os.PathLike) -> Tagger:
    """Reads a directory written by `save_tagger` (or its parent written by `mt3x-tag train`)."""
    directory = resolve_model_dir(directory)
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ModelDirError(f"{path}: unreadable manifest ({err})") from err
    if manifest.get("format") != FORMAT:
        raise ModelDirError(f"{path}: field 'format' is {manifest.get('format')!r}, "
                            f"expected {FORMAT!r}")
    try:
        feature_config = FeatureConfig.from_json(manifest["feature_config"])
        names = list(manifest["feature_names"])
        entries = manifest["instruments"]
        label_config = LabelConfig.from_json(manifest["label_config"])
        grouping = InstrumentGrouping.from_json(manifest["grouping"])
    except (KeyError, TypeError) as err:
        raise ModelDirError(f"{path}: missing or malformed field {err}") from err
    if names != feature_names(feature_config):
        raise ModelDirError(f"{path}: 'feature_names' do not match the features of its "
                            "'feature_config' (written by another version?)")
    boosters, thresholds, info = {}, {}, {}
    for entry in entries:
        try:
            model_path = resolve_inside(directory, str(entry["model_file"]), source=str(path),
                                        field=f"instruments[{entry.get('name')!r}].model_file")
        except Mt3xError as err:
            raise ModelDirError(str(err)) from None
        if not model_path.is_file():
            raise ModelDirError(f"{model_path}: model file named in {path} is missing")
        try:
            booster = lgb.Booster(model_file=str(model_path))
        except lgb.basic.LightGBMError as err:
            raise ModelDirError(f"{model_path}: not a LightGBM model ({err})") from err
        if booster.num_feature() != len(names):
            raise ModelDirError(f"{model_path}: model has {booster.num_feature()} features, "
                                f"manifest names {len(names)}")
        boosters[entry["name"]] = booster
        thresholds[entry["name"]] = float(entry["threshold"])
        info[entry["name"]] = {k: v for k, v in entry.items()
                               if k not in ("name", "model_file", "threshold")}
    return Tagger(instruments=[e["name"] for e in entries], boosters=boosters,
                  thresholds=thresholds, feature_names=names, feature_config=feature_config,
                  label_config=label_config, grouping=grouping, info=info,
                  skipped=dict(manifest.get("skipped", {})))

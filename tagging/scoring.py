"""A tagger scored next to its baselines, in domain and out of domain (`mt3x-tag eval`).

Methods (rows), each scored on every dataset given (column groups, e.g. 'in-domain' and
'out-of-domain'), with micro F1 (all instrument x snippet decisions pooled), micro ROC AUC
(pooled scores) and macro F1 (mean over instruments):

- `tagger`: the LightGBM tagger at its tuned thresholds.
- `constant prior`: every snippet gets each instrument's training-set frequency as its score
  (`Tagger.info[name]['train_positives'] / ['train_snippets']`); its decisions switch on the
  instruments that are usually on: the k most frequent instruments, k chosen to maximise the
  micro F1 such a constant predictor has on the training labels (`prior_decisions`; that F1 is
  2 * sum(top-k prior) / (k + sum(prior)), so it needs the prior only). Its pooled AUC measures
  how well "frequent instruments play" ranks cells; per instrument it is 0.5.
- `majority class`: each instrument always predicted as its majority class in training (on when
  its prior > 0.5); its scores are its 0/1 decisions.

Instruments of a dataset that the tagger does not know are not scored (their column does not
exist); `snippets` and `tracks` say what each figure rests on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from sklearn import metrics as skm

from mt3x.errors import Mt3xError
from tagging.examples import SnippetExamples
from tagging.model import Tagger

METHODS = ("tagger", "constant prior", "majority class")
SCORE_COLUMNS = ("micro_f1", "micro_auc", "macro_f1")


@dataclass(frozen=True)
class DomainScores:
    """One method on one dataset: micro F1, micro ROC AUC (NaN when the pooled labels hold
    one class only), macro F1, and the snippets / tracks it rests on."""

    micro_f1: float
    micro_auc: float
    macro_f1: float
    snippets: int
    tracks: int


def training_prior(tagger: Tagger) -> np.ndarray:
    """f64[instruments]: each instrument's share of positive training snippets.

    Raises:
      Mt3xError: the model directory does not record training counts (an older format).
    """
    prior = []
    for name in tagger.instruments:
        info = tagger.info.get(name, {})
        if not info.get("train_snippets"):
            raise Mt3xError(f"model instrument {name!r}: no train_positives / train_snippets "
                            "recorded; retrain it with `mt3x-tag train`")
        prior.append(float(info["train_positives"]) / float(info["train_snippets"]))
    return np.asarray(prior)


def prior_decisions(prior: np.ndarray) -> np.ndarray:
    """bool[instruments]: the k most frequent instruments on, k maximising the constant
    predictor's expected micro F1 on the training labels, 2 * sum(top-k prior) / (k + sum
    prior) (ties in k keep the smaller set; all off when every prior is 0)."""
    prior = np.asarray(prior, np.float64)
    order = np.argsort(-prior, kind="stable")
    total = float(prior.sum())
    best_k, best_f1 = 0, 0.0
    for k in range(1, len(prior) + 1):
        f1 = 2.0 * float(prior[order[:k]].sum()) / (k + total)
        if f1 > best_f1 + 1e-12:
            best_k, best_f1 = k, f1
    decisions = np.zeros(len(prior), bool)
    decisions[order[:best_k]] = True
    return decisions


def _f1(y: np.ndarray, pred: np.ndarray) -> float:
    tp = float(np.sum(y & pred))
    denom = float(np.sum(y) + np.sum(pred))
    return 2.0 * tp / denom if denom else 0.0


def score_decisions(y: np.ndarray, pred: np.ndarray, scores: np.ndarray, *,
                    tracks: int) -> DomainScores:
    """Scores of bool[n, instruments] decisions and float[n, instruments] scores against
    bool[n, instruments] labels."""
    y, pred = np.asarray(y, bool), np.asarray(pred, bool)
    scores = np.broadcast_to(np.asarray(scores, np.float64), y.shape)
    auc = math.nan
    if 0 < y.sum() < y.size:
        auc = float(skm.roc_auc_score(y.ravel(), scores.ravel()))
    macro = float(np.mean([_f1(y[:, i], pred[:, i]) for i in range(y.shape[1])])) \
        if y.shape[1] else 0.0
    return DomainScores(micro_f1=_f1(y.ravel(), pred.ravel()), micro_auc=auc, macro_f1=macro,
                        snippets=int(y.shape[0]), tracks=tracks)


def score_methods(tagger: Tagger, examples: SnippetExamples, *,
                  label_source: str | None = None) -> dict[str, DomainScores]:
    """{method: DomainScores} of the tagger and its two baselines on `examples` (whose label
    columns include every tagger instrument)."""
    missing = [n for n in tagger.instruments if n not in examples.instruments]
    if missing:
        raise Mt3xError(f"examples lack label columns for {missing}")
    if len(examples) == 0:
        raise Mt3xError("no snippets to score")
    columns = [examples.instruments.index(n) for n in tagger.instruments]
    y = examples.labels(label_source or tagger.label_config.source)[:, columns]
    tracks = len(set(np.asarray(examples.track_ids).tolist()))
    proba, pred = tagger.predict(examples.features)
    prior = training_prior(tagger)
    usual = np.broadcast_to(prior_decisions(prior), y.shape)
    majority = np.broadcast_to(prior > 0.5, y.shape)
    return {
        "tagger": score_decisions(y, pred, proba, tracks=tracks),
        "constant prior": score_decisions(y, usual, prior, tracks=tracks),
        "majority class": score_decisions(y, majority, majority.astype(np.float64),
                                          tracks=tracks),
    }


def format_domains_table(by_domain: Mapping[str, Mapping[str, DomainScores]]) -> str:
    """Methods as rows; per domain (in the given order) micro F1, micro AUC and macro F1
    columns; then the snippets and tracks each domain rests on."""
    domains = list(by_domain)
    width = 9
    top = f"{'':<16}" + "".join(f"{d:^{3 * width}}" for d in domains)
    head = f"{'method':<16}" + "".join(f"{'micro F1':>{width}}{'AUC':>{width}}"
                                         f"{'macro F1':>{width}}" for _ in domains)
    lines = [top.rstrip(), head]

    def cell(value: float) -> str:
        return f"{'-' if math.isnan(value) else f'{value:.3f}':>{width}}"

    for method in METHODS:
        row = f"{method:<16}"
        for domain in domains:
            s = by_domain[domain][method]
            row += cell(s.micro_f1) + cell(s.micro_auc) + cell(s.macro_f1)
        lines.append(row)
    sizes = ", ".join(f"{d}: {by_domain[d]['tagger'].snippets} snippets of "
                      f"{by_domain[d]['tagger'].tracks} tracks" for d in domains)
    lines.append(f"({sizes})")
    return "\n".join(lines)


def scores_json(by_domain: Mapping[str, Mapping[str, DomainScores]]) -> dict[str, Any]:
    """The same figures as a JSON-able {domain: {method: {name: value}}} (NaN -> None)."""
    def clean(value: Any) -> Any:
        return None if isinstance(value, float) and math.isnan(value) else value

    return {domain: {method: {k: clean(v) for k, v in vars(s).items()}
                     for method, s in methods.items()}
            for domain, methods in by_domain.items()}


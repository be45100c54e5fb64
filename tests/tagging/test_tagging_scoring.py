"""Baselines of `mt3x-tag eval` on a toy label matrix, against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from mt3x.errors import Mt3xError
from tagging.examples import InstrumentGrouping, LabelConfig
from tagging.features import FeatureConfig
from tagging.model import Tagger
from tagging.scoring import prior_decisions, score_decisions, training_prior

# 4 snippets x instruments A, B, C.
Y = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [1, 0, 1]], bool)


def _tagger(positives, snippets=100):
    names = ["A", "B", "C"]
    return Tagger(instruments=names, boosters={}, thresholds={}, feature_names=[],
                  feature_config=FeatureConfig(), label_config=LabelConfig(),
                  grouping=InstrumentGrouping(),
                  info={n: {"train_positives": p, "train_snippets": snippets}
                        for n, p in zip(names, positives)})


def test_constant_prior_switches_on_the_usual_instruments():
    prior = training_prior(_tagger([80, 30, 10]))
    np.testing.assert_allclose(prior, [0.8, 0.3, 0.1])
    # Expected train micro F1 of the top-k set: k=1 0.727, k=2 0.6875, k=3 0.571.
    assert prior_decisions(prior).tolist() == [True, False, False]
    # [0.45, 0.4, 0.1]: k=1 0.462, k=2 0.576, k=3 0.481; the majority class is all off.
    assert prior_decisions(np.array([0.45, 0.4, 0.1])).tolist() == [True, True, False]
    assert not prior_decisions(np.zeros(3)).any()


def test_prior_and_majority_scores_by_hand():
    prior = np.array([0.8, 0.3, 0.1])
    s = score_decisions(Y, np.broadcast_to(prior_decisions(prior), Y.shape), prior, tracks=2)
    # A on everywhere: TP 3, FP 1, FN 3 (B twice, C once) -> micro F1 6 / 10.
    assert s.micro_f1 == pytest.approx(0.6)
    assert s.macro_f1 == pytest.approx((6 / 7 + 0 + 0) / 3)
    # Pooled cells, 6 positive and 6 negative; ties count one half: 26 of 36 pairs.
    assert s.micro_auc == pytest.approx(26 / 36)
    assert (s.snippets, s.tracks) == (4, 2)
    low = np.array([0.45, 0.4, 0.1])
    usual = score_decisions(Y, np.broadcast_to(prior_decisions(low), Y.shape), low, tracks=2)
    assert usual.micro_f1 == pytest.approx(10 / 14)  # TP 5, FP 3, FN 1
    majority = np.broadcast_to(low > 0.5, Y.shape)
    assert score_decisions(Y, majority, majority.astype(float), tracks=2).micro_f1 == 0.0


def test_auc_is_nan_when_the_labels_hold_one_class():
    s = score_decisions(np.zeros((3, 2), bool), np.zeros((3, 2), bool), np.full(2, 0.3), tracks=1)
    assert np.isnan(s.micro_auc) and s.micro_f1 == 0.0


def test_a_model_without_training_counts_is_refused():
    tagger = _tagger([1, 2, 3])
    tagger.info.pop("B")
    with pytest.raises(Mt3xError, match="'B'"):
        training_prior(tagger)

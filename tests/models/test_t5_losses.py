"""Loss against a hand numpy computation (t5x semantics)."""

import numpy as np
import pytest

from mt3x.models.losses import cross_entropy_with_z_loss, weighted_loss_and_metrics

RNG = np.random.default_rng(7)
LOGITS = (RNG.normal(size=(2, 3, 5)) * 3).astype(np.float32)
TARGETS = np.array([[1, 4, 0], [2, 2, 3]], np.int32)
WEIGHTS = np.array([[1, 1, 0], [1, 1, 1]], np.float32)


def _numpy_loss(logits, targets, weights, z_loss, smoothing, normalization):
    logits = logits.astype(np.float64)
    vocab = logits.shape[-1]
    log_z = np.log(np.sum(np.exp(logits), axis=-1))
    log_probs = logits - log_z[..., None]
    soft = np.full(logits.shape, smoothing / (vocab - 1))
    for idx in np.ndindex(targets.shape):
        soft[idx + (targets[idx],)] = 1 - smoothing
    entropy = 0.0
    if smoothing:
        entropy = -((1 - smoothing) * np.log(1 - smoothing)
                    + smoothing * np.log(smoothing / (vocab - 1)))
    per_token = -np.sum(soft * log_probs, -1) - entropy + z_loss * log_z ** 2
    total = np.sum(per_token * weights)
    z_total = np.sum(z_loss * log_z ** 2 * weights)
    if normalization == "mean":
        total, z_total = total / weights.sum(), z_total / weights.sum()
    return total, z_total


@pytest.mark.parametrize("normalization", ["sum", "mean"])
@pytest.mark.parametrize("z_loss,smoothing", [(0.0, 0.0), (1e-4, 0.0), (0.1, 0.0), (1e-4, 0.1)])
def test_loss_matches_numpy(normalization, z_loss, smoothing):
    loss, metrics = weighted_loss_and_metrics(LOGITS, TARGETS, WEIGHTS, z_loss=z_loss,
                                              label_smoothing=smoothing,
                                              normalization=normalization)
    expected, expected_z = _numpy_loss(LOGITS, TARGETS, WEIGHTS, z_loss, smoothing,
                                       normalization)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert float(metrics["z_loss"]) == pytest.approx(expected_z, rel=1e-5, abs=1e-9)
    assert float(metrics["cross_entropy"]) == pytest.approx(expected - expected_z, rel=1e-5)
    assert float(metrics["num_tokens"]) == 5.0
    hits = (LOGITS.argmax(-1) == TARGETS) * WEIGHTS
    assert float(metrics["accuracy"]) == pytest.approx(hits.sum() / 5.0)


def test_sum_is_mean_times_token_count_and_padding_ignored():
    total, _ = weighted_loss_and_metrics(LOGITS, TARGETS, WEIGHTS, normalization="sum")
    mean, _ = weighted_loss_and_metrics(LOGITS, TARGETS, WEIGHTS, normalization="mean")
    assert float(total) == pytest.approx(5 * float(mean), rel=1e-6)
    changed = LOGITS.copy()
    changed[0, 2] += 100.0  # a zero-weight position
    assert float(weighted_loss_and_metrics(changed, TARGETS, WEIGHTS)[0]) == float(total)


def test_perfect_smoothed_prediction_costs_zero():
    vocab, smoothing = 6, 0.2
    soft = np.full(vocab, smoothing / (vocab - 1))
    soft[3] = 1 - smoothing
    logits = np.log(soft).astype(np.float32)[None]
    loss, z = cross_entropy_with_z_loss(logits, np.array([3]), label_smoothing=smoothing)
    assert float(loss[0]) == pytest.approx(0.0, abs=1e-6) and float(z[0]) == 0.0


def test_unknown_normalization_raises():
    with pytest.raises(ValueError, match="normalization"):
        weighted_loss_and_metrics(LOGITS, TARGETS, WEIGHTS, normalization="tokens")

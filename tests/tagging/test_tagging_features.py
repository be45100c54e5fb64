"""Spectral features: golden values on tones and noise, parity with a librosa reference."""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from tagging.features import (FeatureConfig, FeatureConfigError, band_centres_hz,
                              band_filterbank, band_of_feature, bin_frequencies_hz,
                              compute_features, feature_names, snippet_features)
from tests.tagging.conftest import tone

CONFIG = FeatureConfig()
NAMES = feature_names(CONFIG)
COL = {name: i for i, name in enumerate(NAMES)}
SR = CONFIG.sample_rate


def _features(*signals: np.ndarray) -> np.ndarray:
    return compute_features(np.stack(signals), CONFIG)


@pytest.mark.parametrize("freq", [110.0, 440.0, 1000.0, 3100.0])
def test_pure_tone_centroid_level_and_band(freq):
    amplitude = 0.4
    feats = _features(tone(freq, 1.0, amplitude))[0]
    assert feats[COL["centroid_hz"]] == pytest.approx(freq, rel=0.01)
    # Parseval-normalised power: a sine of amplitude A has power A^2 / 2.
    assert feats[COL["level_mean_db"]] == pytest.approx(10 * np.log10(amplitude ** 2 / 2), abs=0.1)
    band_means = feats[[COL[n] for n in NAMES if n.endswith("_mean_db") and n.startswith("band")]]
    nearest = np.argmin(np.abs(np.log(band_centres_hz(CONFIG) / freq)))
    assert np.argmax(band_means) == nearest
    assert feats[COL["flatness"]] < 1e-3


def test_flatness_and_band_energy_ratio_separate_noise_low_and_high_tones():
    noise = np.random.default_rng(0).normal(0, 0.1, SR).astype(np.float32)
    low, high, white = _features(tone(200.0, 1.0), tone(5000.0, 1.0), noise)
    # White noise: per-frame flatness of a periodogram is about exp(-euler_gamma) = 0.56.
    assert white[COL["flatness"]] == pytest.approx(np.exp(-np.euler_gamma), abs=0.06)
    assert low[COL["ber_db"]] > 40 and high[COL["ber_db"]] < -40
    # White noise: power below 2 kHz over power above it = the ratio of the bandwidths.
    expected = 10 * np.log10((2000 - 40) / (7600 - 2000))
    assert white[COL["ber_db"]] == pytest.approx(expected, abs=0.5)


def test_band_energies_sum_to_the_power_in_range():
    """The triangular bands are a partition of unity on [fmin, fmax]."""
    weights = band_filterbank(CONFIG)
    freqs = bin_frequencies_hz(CONFIG)
    inside = (freqs >= CONFIG.fmin_hz) & (freqs <= CONFIG.fmax_hz)
    np.testing.assert_allclose(weights[inside].sum(axis=1)[freqs[inside] >= band_centres_hz(
        CONFIG)[0]], 1.0, atol=1e-12)
    assert np.all(weights[~inside] == 0)
    assert np.all(weights.sum(axis=0) > 0)


def test_band_statistics_match_a_librosa_reference():
    rng = np.random.default_rng(1)
    t = np.arange(SR) / SR
    signal = (0.2 * np.sin(2 * np.pi * 330 * t) * (t < 0.6) + rng.normal(0, 0.02, SR)
              + 0.1 * np.sin(2 * np.pi * 2500 * t) * (t > 0.3)).astype(np.float32)
    ours = _features(signal)[0]
    spec = librosa.stft(signal, n_fft=CONFIG.n_fft, hop_length=CONFIG.hop_length, window="hann",
                        center=True, pad_mode="reflect")          # [bins, frames]
    window = librosa.filters.get_window("hann", CONFIG.n_fft)
    scale = np.full(spec.shape[0], 2.0)
    scale[[0, -1]] = 1.0
    power = (np.abs(spec.T) ** 2) * scale / (CONFIG.n_fft * np.sum(window ** 2))
    bands_db = np.maximum(10 * np.log10(np.maximum(power @ band_filterbank(CONFIG), 1e-10)), -100)
    expected = np.stack([bands_db.mean(0), bands_db.std(0), bands_db.max(0)], -1).ravel()
    np.testing.assert_allclose(ours[:expected.size], expected, atol=0.02)
    inside = (bin_frequencies_hz(CONFIG) >= CONFIG.fmin_hz) & (
        bin_frequencies_hz(CONFIG) <= CONFIG.fmax_hz)
    frame_energy = power[:, inside].sum(1)
    centroid = (power[:, inside] @ bin_frequencies_hz(CONFIG)[inside]) / frame_energy
    weighted = np.sum(centroid * frame_energy) / frame_energy.sum()
    assert ours[COL["centroid_hz"]] == pytest.approx(weighted, rel=1e-3)


def test_batched_equals_one_at_a_time_and_silence_is_floored():
    rng = np.random.default_rng(2)
    batch = rng.normal(0, 0.1, (3, SR)).astype(np.float32)
    batch[2] = 0.0
    together = compute_features(batch, CONFIG, batch_size=2)
    alone = np.stack([np.asarray(snippet_features(b[None], CONFIG))[0] for b in batch])
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-3)
    assert together[2, COL["level_max_db"]] == CONFIG.floor_db


def test_feature_names_carry_band_centres():
    assert len(NAMES) == len(set(NAMES)) == CONFIG.num_bands * 3 + 8
    centres = band_centres_hz(CONFIG)
    parsed = [band_of_feature(n) for n in NAMES]
    bands = [p for p in parsed if p is not None]
    assert len(bands) == CONFIG.num_bands * 3
    for index, hz in bands:
        assert hz == pytest.approx(round(centres[index]))
    assert band_of_feature("centroid_hz") is None


@pytest.mark.parametrize("kwargs", [dict(fmax_hz=9000.0), dict(split_hz=30.0),
                                    dict(n_fft=256, fmin_hz=20.0), dict(num_bands=1)])
def test_bad_configs_raise(kwargs):
    with pytest.raises(FeatureConfigError):
        FeatureConfig(**kwargs).validate()
    assert FeatureConfig.from_json(CONFIG.to_json()) == CONFIG

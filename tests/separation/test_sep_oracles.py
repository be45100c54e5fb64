"""Oracle masks through mt3x.audio's STFT/iSTFT."""

import numpy as np
import pytest

from separation import metrics, oracles
from separation.spectral import StftConfig

SR = 16000


def _stems(seed: int, n: int = 8000):
    """A low tone, a high tone and a broadband click track (disjoint-ish in time-frequency)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    low = 0.5 * np.sin(2 * np.pi * 150 * t) + 0.2 * np.sin(2 * np.pi * 300 * t + 1.0)
    high = 0.3 * np.sin(2 * np.pi * 3000 * t) * (t > 0.1)
    clicks = np.zeros(n)
    clicks[rng.integers(0, n, 6)] = 0.8
    return np.stack([low, high, clicks]).astype(np.float32)


@pytest.mark.parametrize("n_fft,hop", [(256, 128), (1024, 256)])
def test_unit_mask_reconstructs_the_stem(n_fft, hop):
    cfg = StftConfig(n_fft, hop)
    stem = _stems(0)[0]
    est = oracles.oracle_estimates(stem, stem[None], "irm", cfg)
    assert est.shape == (1, stem.size)
    assert metrics.si_sdr(stem, est[0]) > 60.0
    est_ibm = oracles.oracle_estimates(stem, stem[None], "ibm", cfg)
    assert metrics.si_sdr(stem, est_ibm[0]) > 60.0


def test_irm_estimates_sum_to_the_mixture_and_separate():
    cfg = StftConfig(1024, 256)
    stems = _stems(1)
    mixture = stems.sum(0)
    est = oracles.oracle_estimates(mixture, stems, "irm", cfg)
    np.testing.assert_allclose(est.sum(0), mixture, atol=2e-4)
    # tones are well separated at 15.6 Hz bins
    for j in (0, 1):
        assert metrics.si_sdr(stems[j], est[j]) > 20.0
    mix_rows = oracles.oracle_estimates(mixture, stems, "mixture", cfg)
    np.testing.assert_array_equal(mix_rows[2], mixture)
    ibm = oracles.oracle_estimates(mixture, stems, "ibm", cfg)
    gain_irm = metrics.si_sdr_improvement(stems, est, mixture)
    gain_ibm = metrics.si_sdr_improvement(stems, ibm, mixture)
    assert np.all(gain_irm > 5.0) and np.all(gain_ibm > 5.0)


def test_irm_with_uncovered_residual_keeps_it_out():
    cfg = StftConfig(512, 128)
    stems = _stems(2)
    mixture = stems.sum(0)
    # only the low tone is a target: the rest is residual, which must not leak into it
    est = oracles.oracle_estimates(mixture, stems[:1], "irm", cfg)
    assert metrics.si_sdr(stems[0], est[0]) > 20.0
    assert metrics.si_sdr(stems[0], est[0]) - metrics.si_sdr(stems[0], mixture) > 15.0


def test_masks_are_in_unit_range():
    import jax.numpy as jnp
    rng = np.random.default_rng(3)
    s = jnp.asarray(rng.standard_normal((2, 5, 7)) + 1j * rng.standard_normal((2, 5, 7)))
    irm = oracles.ideal_ratio_mask(s, s[0] * 0.5)
    assert float(irm.min()) >= 0 and float(irm.max()) <= 1
    np.testing.assert_allclose(irm.sum(0) + jnp.abs(s[0] * 0.5) ** 2 / (
        (jnp.abs(s) ** 2).sum(0) + jnp.abs(s[0] * 0.5) ** 2), 1.0, atol=1e-5)
    ibm = oracles.ideal_binary_mask(s, s.sum(0))
    assert set(np.unique(np.asarray(ibm))) <= {0.0, 1.0}


def test_unknown_oracle_is_a_user_error():
    from mt3x.errors import Mt3xError
    with pytest.raises(Mt3xError, match="oracle kind"):
        oracles.oracle_estimates(np.zeros(100), np.zeros((1, 100)), "best", StftConfig())

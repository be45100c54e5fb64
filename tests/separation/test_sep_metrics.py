"""SI-SDR, SDR, BSSEval v4 wrappers and summaries."""

import fast_bss_eval.numpy
import jax.numpy as jnp
import numpy as np
import pytest

from separation import metrics


def _signal(rng, n=8000):
    t = np.arange(n) / 8000.0
    return np.sin(2 * np.pi * 220 * t) + 0.3 * rng.standard_normal(n)


def test_si_sdr_golden_orthogonal_noise():
    rng = np.random.default_rng(0)
    s = _signal(rng)
    s -= s.mean()
    n = rng.standard_normal(s.size)
    n -= n.mean()
    n -= (n @ s) / (s @ s) * s                      # orthogonal to s, zero mean
    n *= np.sqrt((s @ s) / (n @ n)) * 10 ** (-12.5 / 20)   # 12.5 dB below s
    assert metrics.si_sdr(s, s + n) == pytest.approx(12.5, abs=1e-9)
    assert metrics.sdr(s, s + n) == pytest.approx(12.5, abs=1e-9)


def test_si_sdr_self_is_large_and_scale_invariant():
    rng = np.random.default_rng(1)
    s = _signal(rng)
    est = s + 0.2 * rng.standard_normal(s.size)
    assert metrics.si_sdr(s, s) >= 200.0
    assert metrics.si_sdr(s, 0.25 * est) == pytest.approx(metrics.si_sdr(s, est), abs=1e-9)
    assert metrics.si_sdr(s, 4.0 * est + 0.5) == pytest.approx(metrics.si_sdr(s, est), abs=1e-9)
    # plain SDR is not scale invariant
    assert metrics.sdr(s, 0.25 * est) < metrics.sdr(s, est) - 3


def test_si_sdr_matches_fast_bss_eval_and_jax():
    rng = np.random.default_rng(2)
    ref = rng.standard_normal((3, 4000))
    est = ref + rng.standard_normal((3, 4000)) * np.array([[0.1], [0.5], [2.0]])
    ours = metrics.si_sdr(ref, est)
    theirs = fast_bss_eval.numpy.si_sdr(ref, est, zero_mean=True)
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    value, defined = metrics.si_sdr_jax(jnp.asarray(ref, jnp.float32), jnp.asarray(est, jnp.float32))
    assert bool(np.all(defined))
    np.testing.assert_allclose(np.asarray(value), ours, atol=1e-3)


def test_si_sdr_improvement():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((2, 4000))
    mix = a + b
    imp = metrics.si_sdr_improvement(np.stack([a, b]), np.stack([a + 0.1 * b, b]), mix)
    assert imp[0] == pytest.approx(metrics.si_sdr(a, a + 0.1 * b) - metrics.si_sdr(a, mix))
    assert imp[1] >= 200.0 - 1.0


def test_silent_reference_is_undefined_not_nan_in_summary():
    rng = np.random.default_rng(4)
    ref = np.stack([rng.standard_normal(1000), np.zeros(1000)])
    est = ref + 0.1
    values = metrics.si_sdr(ref, est)
    assert np.isfinite(values[0]) and np.isnan(values[1])
    assert list(metrics.reference_is_silent(ref)) == [False, True]
    v, defined = metrics.si_sdr_jax(jnp.asarray(ref), jnp.asarray(est))
    assert list(np.asarray(defined)) == [True, False] and np.all(np.isfinite(np.asarray(v)))
    assert float(metrics.masked_mean(v, defined)) == pytest.approx(float(v[0]), abs=1e-4)
    summary = metrics.summarize(list(values) + [None, 3.0])
    assert summary.n_defined == 2 and summary.n_undefined == 2
    assert summary.median == pytest.approx((values[0] + 3.0) / 2)
    assert "2 undef." in summary.format()
    assert metrics.summarize([float("nan")]).median is None
    assert metrics.summarize([]).format() == "n/a"
    assert metrics.as_optional(values) == [float(values[0]), None]


def test_shape_mismatch_is_a_user_error():
    from mt3x.errors import Mt3xError
    with pytest.raises(Mt3xError, match="equal length"):
        metrics.si_sdr(np.zeros(10), np.zeros(11))


def test_bss_eval_v4_noise_level_and_silent_source():
    rng = np.random.default_rng(5)
    sr = 4000
    refs = rng.standard_normal((3, 3 * sr))
    refs[2] = 0.0                                   # a silent stem
    noise = rng.standard_normal((3, 3 * sr)) * 0.1  # 20 dB below the references
    scores = metrics.bss_eval_v4(refs, refs + noise, sr)
    for j in (0, 1):
        assert scores[j].sdr == pytest.approx(20.0, abs=1.0)
        assert scores[j].windows_defined == 3 and scores[j].windows_total == 3
        assert scores[j].sir > scores[j].sdr
    assert scores[2].sdr is None and scores[2].windows_defined == 0
    sdr, sir, sar = metrics.whole_signal_bss_eval(refs[:2], refs[:2] + noise[:2])
    np.testing.assert_allclose(sdr, 20.0, atol=1.0)


def test_output_composition_shares_sum_to_one_and_name_the_leaks():
    rng = np.random.default_rng(3)
    n = 20000
    a, b, other = rng.standard_normal((3, n))
    silent = np.zeros(n)
    sources = np.stack([2.0 * a, b, silent])  # energies 4 : 1 : 0, the residual 1
    mixture = sources.sum(0) + other
    noise = rng.standard_normal(n)
    # output 0: 0.5 of a, 0.5 of b, noise; output 1: 3 x (b + other), scale-free; output 2: zero
    estimates = np.stack([0.5 * sources[0] + 0.5 * b + noise, 3.0 * (b + other), silent])
    shares = metrics.output_composition(sources, estimates, mixture)
    assert shares.shape == (3, 5)  # 3 groups, 'other', artifacts
    np.testing.assert_allclose(shares[0], np.array([1.0, 0.25, 0.0, 0.0, 1.0]) / 2.25, atol=0.01)
    np.testing.assert_allclose(shares[1], [0.0, 0.5, 0.0, 0.5, 0.0], atol=0.01)
    assert np.all(np.isnan(shares[2]))
    np.testing.assert_allclose(shares[:2].sum(1), 1.0, atol=1e-12)
    perfect = metrics.output_composition(sources[:2], sources[:2], mixture)
    np.testing.assert_allclose(perfect, [[1, 0, 0, 0], [0, 1, 0, 0]], atol=1e-9)
    # the mixture as every output: each source's share of the mixture energy (4 : 1 : 1)
    as_mixture = metrics.output_composition(sources[:2], np.stack([mixture, mixture]), mixture)
    np.testing.assert_allclose(as_mixture, [[4 / 6, 1 / 6, 1 / 6, 0]] * 2, atol=0.01)

"""Streaming least squares, context stacking and the DNN's least-squares growth."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mt3x.errors import Mt3xError
from separation import context, least_squares
from separation.model_objects import DNNSeparator
from separation.models.dnn import ContextDNN, grow_by_least_squares


def _lstsq_centred(x, s):
    """numpy closed form on centred data."""
    mx, ms = x.mean(0), s.mean(0)
    w_t, *_ = np.linalg.lstsq(x - mx, s - ms, rcond=None)
    return w_t.T, ms - w_t.T @ mx


def test_streamed_solution_equals_numpy_lstsq():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 12)) @ rng.standard_normal((12, 12)) + 2.0
    s = x @ rng.standard_normal((12, 5)) + 0.3 * rng.standard_normal((3000, 5)) - 1.0
    stats = least_squares.LeastSquaresStats.zeros(12, 5)
    for chunk in np.array_split(np.arange(3000), [700, 701, 2000]):   # uneven, one of size 1
        stats = stats.add(x[chunk], s[chunk])
    w, b = least_squares.solve(stats, ridge=0.0)
    w_ref, b_ref = _lstsq_centred(x, s)
    np.testing.assert_allclose(w, w_ref, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(b, b_ref, rtol=1e-9, atol=1e-9)
    assert stats.count == 3000


def test_accumulation_is_stable_with_a_large_offset():
    rng = np.random.default_rng(1)
    x = 1e5 + rng.standard_normal((4000, 3))      # raw moments would cancel catastrophically
    s = x[:, :1] * 2.0
    stats = least_squares.accumulate(((x[i:i + 500], s[i:i + 500]) for i in range(0, 4000, 500)),
                                     3, 1)
    xc = x - x.mean(0)
    np.testing.assert_allclose(stats.cxx, xc.T @ xc, rtol=1e-9)
    w, b = least_squares.solve(stats, ridge=0.0)
    np.testing.assert_allclose(w, [[2.0, 0.0, 0.0]], atol=1e-8)


def test_mask_excludes_pairs():
    rng = np.random.default_rng(2)
    x, s = rng.standard_normal((200, 4)), rng.standard_normal((200, 2))
    mask = rng.random(200) < 0.5
    a = least_squares.LeastSquaresStats.zeros(4, 2).add(x, s, mask)
    b = least_squares.LeastSquaresStats.zeros(4, 2).add(x[mask], s[mask])
    assert a.count == b.count
    np.testing.assert_allclose(a.cxx, b.cxx, atol=1e-10)
    np.testing.assert_allclose(a.csx, b.csx, atol=1e-10)


def test_singular_inputs_are_regularised_not_inverted():
    rng = np.random.default_rng(3)
    base = rng.standard_normal((500, 3))
    x = np.concatenate([base, base[:, :1], np.zeros((500, 2))], axis=1)   # rank 3 of 6
    s = base @ np.array([[1.0], [2.0], [-1.0]])
    stats = least_squares.LeastSquaresStats.zeros(6, 1).add(x, s)
    w, b = least_squares.solve(stats)
    assert np.all(np.isfinite(w))
    np.testing.assert_allclose(x @ w.T + b, s, atol=1e-4)
    # constant inputs: W = 0, b = mean target
    const = least_squares.LeastSquaresStats.zeros(2, 1).add(np.ones((10, 2)), np.arange(10.)[:, None])
    w0, b0 = least_squares.solve(const)
    assert np.all(w0 == 0) and b0[0] == pytest.approx(4.5)
    with pytest.raises(Mt3xError, match="no training pairs"):
        least_squares.solve(least_squares.LeastSquaresStats.zeros(2, 1))


def test_stack_context_and_gamma():
    mag = jnp.arange(1, 1 + 5 * 2, dtype=jnp.float32).reshape(5, 2)
    st = context.stack_context(mag, context=1, frame_skip=2)
    assert st.shape == (5, 3, 2)
    np.testing.assert_array_equal(st[2], mag[jnp.array([0, 2, 4])])
    np.testing.assert_array_equal(st[0, 0], [0, 0])        # beyond the start: zeros
    np.testing.assert_array_equal(st[3, 2], [0, 0])
    inputs, gamma = context.normalized_context(mag, context=1, frame_skip=1)
    norms = np.linalg.norm(np.asarray(context.stack_context(mag, 1, 1)), axis=-1)
    np.testing.assert_allclose(gamma[:, 0], norms.mean(-1), rtol=1e-6)
    np.testing.assert_allclose(context.centre_frame(inputs, 2, 1) * gamma, mag, rtol=1e-6)
    # level independence
    inputs10, gamma10 = context.normalized_context(10 * mag, context=1)
    np.testing.assert_allclose(inputs10, inputs, rtol=1e-5)
    np.testing.assert_allclose(gamma10, 10 * gamma, rtol=1e-5)


def _toy_batches(model: DNNSeparator, seed: int, n_batches: int = 3):
    """Two 'instruments': a low harmonic tone (target) and high-passed noise, random gains."""
    rng = np.random.default_rng(seed)
    sr, n = model.sample_rate, 4096
    t = np.arange(n) / sr
    for _ in range(n_batches):
        f0 = rng.uniform(100, 400, size=(4, 1))
        tone = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6)) / k for k in (1, 2, 3))
        tone *= rng.uniform(0.05, 1.0, size=(4, 1)) * (np.sin(2 * np.pi * 3 * t) > -0.3)
        noise = np.diff(rng.standard_normal((4, n + 1)), axis=-1) * rng.uniform(0.05, 0.5, (4, 1))
        yield {"mixture": (tone + noise).astype(np.float32),
               "sources": tone[:, None].astype(np.float32)}


def test_ls_layer_equals_lstsq_and_beats_identity_baseline():
    model = DNNSeparator(instruments=("tone",), n_fft=64, hop_length=32, context=2, num_layers=0,
                         activation="linear")
    pairs = [model.ls_pairs(b, "tone") for b in _toy_batches(model, seed=0)]
    grown, params, stats = grow_by_least_squares(model.network, None, pairs, ridge=1e-9)
    assert grown.num_layers == 1 and params["layer_0"]["kernel"].shape == (5 * 33, 33)
    x = np.concatenate([np.asarray(p[0], np.float64) for p in pairs])
    s = np.concatenate([np.asarray(p[1], np.float64) for p in pairs])
    w_ref, b_ref = _lstsq_centred(x, s)
    pred_ref = x @ w_ref.T + b_ref
    pred = np.asarray(grown.apply({"params": params}, jnp.asarray(x, jnp.float32)), np.float64)
    rel = np.linalg.norm(pred - pred_ref) / np.linalg.norm(pred_ref)
    assert rel < 1e-3
    err_ls = np.sum((pred - s) ** 2)
    err_identity = np.sum((x[:, 2 * 33:3 * 33] - s) ** 2)
    err_lstsq = np.sum((pred_ref - s) ** 2)
    assert err_ls <= err_lstsq * 1.001
    assert err_ls < 0.5 * err_identity
    # a second (ReLU) layer grown on top never increases the training error
    relu = ContextDNN(33, 1, "relu")
    grown2, params2, _ = grow_by_least_squares(relu, params, pairs, ridge=1e-9)
    pred2 = np.asarray(grown2.apply({"params": params2}, jnp.asarray(x, jnp.float32)))
    assert np.sum((pred2 - s) ** 2) <= err_ls * 1.001


def test_ls_init_through_the_model_lowers_loss_vs_identity():
    model = DNNSeparator(instruments=("tone",), n_fft=64, hop_length=32, context=2, num_layers=0)
    batches = list(_toy_batches(model, seed=1))
    pairs = (model.ls_pairs(b, "tone") for b in batches)
    net, p, _ = grow_by_least_squares(model.network, None, pairs)
    grown_model = DNNSeparator(instruments=("tone",), n_fft=64, hop_length=32, context=2,
                               num_layers=net.num_layers)
    loss, metrics = jax.jit(grown_model.loss)({"tone": p}, batches[0], jax.random.key(0))
    assert float(metrics["loss_vs_identity"]) < 0.5
    assert float(metrics["si_sdr"]) > 5.0

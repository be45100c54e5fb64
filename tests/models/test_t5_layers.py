"""Numerics of the building blocks against hand-computed values and numpy references."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mt3x.models.layers import (MASKED_BIAS, DenseGeneral, RMSNorm, activation_fn,
                                dot_product_attention, mask_to_bias, rms_norm,
                                sinusoid_position_table)


def test_sinusoid_golden_values_denominator_half_minus_one():
    # features 8 -> half 4, frequencies 10000 ** (-i / 3) = 1, 0.0464158883, 0.0021544347, 1e-4
    table = sinusoid_position_table(16, 8)
    assert table.dtype == np.float32 and table.shape == (16, 8)
    np.testing.assert_array_equal(table[0], [0, 0, 0, 0, 1, 1, 1, 1])
    np.testing.assert_allclose(
        table[1], [0.8414709848, 0.0463992235, 0.0021544330, 0.0000999999998,
                   0.5403023059, 0.9989229775, 0.9999976792, 0.999999995], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(
        table[7], [0.6569865987, 0.3192246467, 0.0150804665, 0.0006999999,
                   0.7539022543, 0.9476790743, 0.9998862882, 0.9999997550], rtol=1e-6)


def test_sinusoid_mt3_width_uses_255_not_256():
    table = sinusoid_position_table(2048, 512)
    # Last frequency is exactly 1e-4 with denominator 255: sin(1000 * 1e-4) = sin(0.1).
    assert table[1000, 255] == pytest.approx(0.0998334166, abs=1e-7)
    # (A port using 256 would give sin(1000 * 10000 ** (-255 / 256)) = 0.10348.)
    assert table[1000, 511] == pytest.approx(math.cos(0.1), abs=1e-7)
    assert table[5, 0] == pytest.approx(math.sin(5.0), abs=1e-7)


def test_rms_norm_matches_numpy_float64_and_casts():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 5, 16)).astype(np.float32) * 3
    scale = rng.uniform(0.5, 2, size=16).astype(np.float32)
    expected = x / np.sqrt(np.mean(x.astype(np.float64) ** 2, -1, keepdims=True) + 1e-6) * scale
    np.testing.assert_allclose(rms_norm(jnp.asarray(x), scale), expected, rtol=2e-6)
    tiny = np.full((1, 4), 1e-4, np.float32)  # eps matters when mean(x^2) ~ 1e-8
    np.testing.assert_allclose(rms_norm(tiny, np.ones(4, np.float32)),
                               1e-4 / np.sqrt(1e-8 + 1e-6), rtol=1e-6)
    out = rms_norm(jnp.asarray(x, jnp.bfloat16), scale, dtype=jnp.bfloat16)
    assert out.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(out, np.float32), expected, rtol=2e-2, atol=2e-2)
    module_out = RMSNorm().apply({"params": {"scale": scale}}, x)
    np.testing.assert_allclose(module_out, expected, rtol=2e-6)


def test_gelu_is_tanh_approximation():
    x = np.linspace(-4, 4, 33).astype(np.float32)
    x64 = x.astype(np.float64)
    tanh_gelu = 0.5 * x64 * (1 + np.tanh(np.sqrt(2 / np.pi) * (x64 + 0.044715 * x64 ** 3)))
    np.testing.assert_allclose(activation_fn("gelu")(x), tanh_gelu, rtol=1e-5, atol=1e-6)
    assert float(activation_fn("gelu")(jnp.float32(1.5))) == pytest.approx(1.3995716, abs=1e-6)
    np.testing.assert_array_equal(activation_fn("linear")(x), x)


def test_dense_general_kernel_is_flattened_and_bias_free():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)  # contract the last two axes
    kernel = rng.normal(size=(20, 6)).astype(np.float32)
    layer = DenseGeneral(6, ("joined_kv", "embed"), num_input_axes=2)
    out = layer.apply({"params": {"kernel": kernel}}, x)
    np.testing.assert_allclose(out, x.reshape(2, 3, 20) @ kernel, rtol=1e-5, atol=1e-5)
    params = layer.init(jax.random.key(0), x)["params"]
    assert set(params) == {"kernel"} and params["kernel"].names == ("joined_kv", "embed")
    heads = DenseGeneral((2, 3), ("embed", "joined_kv")).apply(
        {"params": {"kernel": kernel[:5]}}, x)  # [..., 5] -> [..., 2 heads, 3]
    np.testing.assert_allclose(heads, (x @ kernel[:5]).reshape(2, 3, 4, 2, 3), rtol=1e-5, atol=1e-5)


def test_unscaled_attention_and_mask_bias():
    rng = np.random.default_rng(2)
    q = rng.normal(size=(1, 3, 2, 4)).astype(np.float32)
    k = rng.normal(size=(1, 5, 2, 4)).astype(np.float32)
    v = rng.normal(size=(1, 5, 2, 4)).astype(np.float32)
    mask = np.ones((1, 1, 3, 5), bool)
    mask[..., 3:] = False
    bias = mask_to_bias(jnp.asarray(mask), jnp.float32)
    assert float(bias.min()) == MASKED_BIAS
    out = dot_product_attention(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), bias)
    logits = np.einsum("bqhd,bkhd->bhqk", q, k)[..., :3]  # no 1/sqrt(d)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    np.testing.assert_allclose(out, np.einsum("bhqk,bkhd->bqhd", w, v[:, :3]), rtol=1e-5)

"""Optimizers: schedules, MT3's Adafactor, freezing by name, gradient accumulation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mt3x.trainer import (TrainerError, accumulate_gradients, adafactor_mt3, adamw,
                          constant_schedule, freeze, freeze_mask, make_optimizer,
                          warmup_cosine_schedule, warmup_rsqrt_schedule)


def _params():
    rng = np.random.default_rng(0)
    return {"params": {
        "encoder": {"layers_0": {"kernel": jnp.asarray(rng.normal(size=(256, 128)), jnp.float32)},
                    "layers_4": {"kernel": jnp.asarray(rng.normal(size=(4, 4)), jnp.float32)}},
        "decoder": {"layers_1": {"kernel": jnp.asarray(rng.normal(size=(4, 4)), jnp.float32)},
                    "bias": jnp.ones((4,), jnp.float32)}}}


def test_schedules_golden_values():
    assert float(constant_schedule(1e-3)(12345)) == pytest.approx(1e-3)
    rsqrt = warmup_rsqrt_schedule(1.0, 100)
    assert [float(rsqrt(s)) for s in (0, 50, 100, 400)] == pytest.approx([0.0, 0.5, 1.0, 0.5])
    cosine = warmup_cosine_schedule(2.0, 10, 110, end_value=0.0)
    assert [float(cosine(s)) for s in (5, 10, 60, 110)] == pytest.approx([1.0, 2.0, 1.0, 0.0],
                                                                           abs=1e-6)
    with pytest.raises(TrainerError, match="warmup_steps"):
        warmup_cosine_schedule(1.0, 10, 5)


def test_adafactor_mt3_is_factored_without_momentum_and_clips_updates():
    params = _params()
    tx = adafactor_mt3(1e-3)
    state = tx.init(params)
    # Factored second moments and no momentum: no state array as large as the 256x128 kernel.
    assert max(leaf.size for leaf in jax.tree.leaves(state)) < 256 * 128
    assert {leaf.shape for leaf in jax.tree.leaves(state)} >= {(256,), (128,)}
    # A huge gradient is clipped to update RMS 1 before the parameter scale and the lr:
    # |update| RMS = lr * RMS(param).
    grads = jax.tree.map(lambda p: 1e6 * jnp.sign(p) + 1e5, params)
    updates, _ = tx.update(grads, state, params)
    kernel = params["params"]["encoder"]["layers_0"]["kernel"]
    update = updates["params"]["encoder"]["layers_0"]["kernel"]
    rms = lambda a: float(jnp.sqrt(jnp.mean(jnp.square(a))))
    assert rms(update) == pytest.approx(1e-3 * rms(kernel), rel=0.05)


@pytest.mark.parametrize("base", ["adafactor", "adamw"])
def test_frozen_parameters_get_exactly_zero_updates(base):
    params = _params()
    tx = make_optimizer(name=base, learning_rate=0.1, freeze_patterns=("^encoder/", "bias$"),
                        weight_decay=0.5)
    state = tx.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    for _ in range(2):
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    original = _params()
    moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), params, original)["params"]
    assert moved == {"encoder": {"layers_0": {"kernel": False}, "layers_4": {"kernel": False}},
                     "decoder": {"layers_1": {"kernel": True}, "bias": False}}


def test_freeze_mask_names_and_typo_error():
    mask = freeze_mask(_params(), ["layers_[0-3]/"])["params"]
    assert mask["encoder"]["layers_0"]["kernel"] and mask["decoder"]["layers_1"]["kernel"]
    assert not mask["encoder"]["layers_4"]["kernel"]
    with pytest.raises(TrainerError, match=r"'\^encodr/' matches no parameter"):
        freeze(optax.sgd(0.1), ["^encodr/"]).init(_params())
    with pytest.raises(TrainerError, match="not a valid regex"):
        freeze_mask(_params(), ["(("])


def test_gradient_accumulation_equals_one_step_on_the_mean_gradient():
    params = {"w": jnp.array([1.0, -2.0, 3.0])}
    g1, g2 = {"w": jnp.array([0.5, 1.0, -1.0])}, {"w": jnp.array([1.5, -3.0, 2.0])}
    tx = accumulate_gradients(optax.sgd(0.1), 2)
    state = tx.init(params)
    updates, state = tx.update(g1, state, params)
    after_first = optax.apply_updates(params, updates)
    np.testing.assert_array_equal(after_first["w"], params["w"])  # nothing applied yet
    updates, state = tx.update(g2, state, after_first)
    after_second = optax.apply_updates(after_first, updates)
    expected = params["w"] - 0.1 * (g1["w"] + g2["w"]) / 2
    np.testing.assert_allclose(after_second["w"], expected, rtol=1e-6)
    with pytest.raises(TrainerError, match=">= 1"):
        accumulate_gradients(optax.sgd(0.1), 0)


def test_adamw_with_norm_clipping_and_bad_name():
    params = {"w": jnp.array([1.0, 1.0])}
    tx = adamw(0.1, weight_decay=0.0, max_grad_norm=1.0)
    updates, _ = tx.update({"w": jnp.array([30.0, 40.0])}, tx.init(params), params)
    # Adam's first step is lr * sign(g) (bias-corrected m / sqrt(v)), independent of scale.
    np.testing.assert_allclose(updates["w"], [-0.1, -0.1], rtol=1e-4)
    with pytest.raises(TrainerError, match="'adafactor' or 'adamw'"):
        make_optimizer(name="sgd")

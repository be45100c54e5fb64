"""Separator networks and Model objects: shapes, masks, sharded-vs-single-device loss."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mt3x.errors import Mt3xError
from separation.model_objects import DNNSeparator, UNetSeparator
from separation.models.unet import SpectrogramUNet

TINY_UNET = dict(instruments=("a", "b"), sample_rate=16000, n_fft=64, hop_length=16,
                 channels=(4, 8))
TINY_DNN = dict(instruments=("a", "b"), n_fft=64, hop_length=32, context=2, num_layers=2)


def _batch(batch_size=8, samples=1024, n_inst=2, seed=0, silent_last=True):
    rng = np.random.default_rng(seed)
    sources = (rng.standard_normal((batch_size, n_inst, samples)) * 0.1).astype(np.float32)
    if silent_last:
        sources[-1] = 0.0                          # an all-silent example
    return {"mixture": sources.sum(1) + 0.01 * rng.standard_normal((batch_size, samples)).astype(
        np.float32) * (np.arange(batch_size) < batch_size - 1)[:, None],
            "sources": sources}


def _unbox(tree):
    return nn.meta.unbox(tree)


@pytest.mark.parametrize("mask", ["sigmoid", "softmax"])
def test_unet_masks_shape_and_range(mask):
    net = SpectrogramUNet(3, channels=(4, 8), mask=mask)
    mag = jnp.abs(jax.random.normal(jax.random.key(0), (2, 10, 33)))
    params = net.init(jax.random.key(1), mag)
    masks = net.apply(params, mag)
    assert masks.shape == (2, 3, 10, 33)
    assert float(masks.min()) >= 0.0 and float(masks.max()) <= 1.0
    if mask == "softmax":
        assert float(masks.sum(1).max()) <= 1.0 + 1e-6
    boxed = jax.tree.leaves(params, is_leaf=lambda x: isinstance(x, nn.Partitioned))
    assert all(isinstance(b, nn.Partitioned) for b in boxed)


def test_unet_frequency_pooling_reaches_eight_bins():
    net = SpectrogramUNet(1, channels=(2, 2, 2, 2))
    mag = jnp.ones((1, 3, 2049))
    out, inter = net.apply(net.init(jax.random.key(0), mag), mag,
                           capture_intermediates=lambda m, _: m.name == "enc_3",
                           mutable=["intermediates"])
    assert inter["intermediates"]["enc_3"]["__call__"][0].shape == (1, 3, 8, 2)
    assert out.shape == (1, 1, 3, 2049)


def test_unet_rejects_bins_not_divisible():
    with pytest.raises(Mt3xError, match="divisible"):
        UNetSeparator(n_fft=100, channels=(4, 8))


@pytest.mark.parametrize("kind", ["dnn", "unet"])
def test_model_objects_predict_shapes_and_finite_grads(kind):
    model = DNNSeparator(**TINY_DNN) if kind == "dnn" else UNetSeparator(**TINY_UNET)
    batch = _batch(batch_size=2)
    params = _unbox(model.init(jax.random.key(0), batch))
    out = jax.jit(model.predict)(params, {"mixture": batch["mixture"]})
    assert out["sources"].shape == (2, 2, 1024)
    grads = jax.jit(jax.grad(lambda p: model.loss(p, batch, jax.random.key(0))[0]))(params)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def test_unet_softmax_estimates_never_exceed_the_mixture():
    model = UNetSeparator(**TINY_UNET, mask="softmax")
    batch = _batch(batch_size=2)
    params = _unbox(model.init(jax.random.key(0), batch))
    masks, spec = model.masks(params, jnp.asarray(batch["mixture"]))
    assert float(masks.sum(1).max()) <= 1.0 + 1e-6


def test_batch_with_wrong_instrument_count_is_refused():
    model = DNNSeparator(**TINY_DNN)
    batch = _batch(n_inst=3, batch_size=2)
    params = _unbox(model.init(jax.random.key(0), batch))
    with pytest.raises(Mt3xError, match="one stem per instrument"):
        model.loss(params, batch, jax.random.key(0))


@pytest.mark.parametrize("kind", ["dnn", "unet"])
def test_loss_on_8_devices_matches_1_device(kind):
    assert jax.device_count() == 8
    model = DNNSeparator(**TINY_DNN) if kind == "dnn" else UNetSeparator(**TINY_UNET)
    batch = _batch(batch_size=8)
    params = _unbox(model.init(jax.random.key(0), batch))
    single = jax.jit(model.loss)(params, batch, jax.random.key(1))
    mesh = Mesh(np.array(jax.devices()).reshape(8, 1), ("data", "model"))
    data = NamedSharding(mesh, PartitionSpec("data"))
    rep = NamedSharding(mesh, PartitionSpec())
    sharded_batch = {k: jax.device_put(v, data) for k, v in batch.items()}
    sharded = jax.jit(model.loss, in_shardings=(rep, data, rep))(
        jax.device_put(params, rep), sharded_batch, jax.random.key(1))
    assert set(sharded[0].sharding.device_set) == set(jax.devices())
    np.testing.assert_allclose(float(sharded[0]), float(single[0]), rtol=2e-5)
    for name in single[1]:
        np.testing.assert_allclose(float(sharded[1][name]), float(single[1][name]), rtol=1e-4,
                                   atol=1e-5, err_msg=name)
    assert 0.0 < float(single[1]["si_sdr_defined"]) < 1.0     # the silent example is excluded


def test_freq_down_equals_a_strided_convolution():
    from separation.models.unet import FreqDown, FreqUp
    x = jax.random.normal(jax.random.key(0), (2, 5, 32, 3))
    down = FreqDown(4, 3)
    p = nn.meta.unbox(down.init(jax.random.key(1), x))
    kernel = p["params"]["proj"]["kernel"].reshape(2, 4, 3, 3, 4)   # [half, bin, t, cin, cout]
    conv_kernel = kernel.transpose(2, 0, 1, 3, 4).reshape(3, 8, 3, 4)  # [t, 8 bins, cin, cout]
    ref = jax.lax.conv_general_dilated(x, conv_kernel, (1, 4), ((1, 1), (2, 2)),
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
    ref = ref + p["params"]["proj"]["bias"]
    np.testing.assert_allclose(down.apply(p, x), ref, atol=1e-5)
    # FreqUp is the adjoint layout: <down_lin(x), y> == <x, up_lin(y)> with shared weights
    up = FreqUp(3, 3)
    y = jax.random.normal(jax.random.key(2), (2, 5, 8, 4))
    pu = nn.meta.unbox(up.init(jax.random.key(3), y))
    assert up.apply(pu, y).shape == (2, 5, 32, 3)
    # up input (time shift s, c_in = down's c_out) -> (half, bin, c_out = down's c_in)
    up_kernel = jnp.flip(kernel, axis=2).transpose(2, 4, 0, 1, 3).reshape(3 * 4, 8 * 3)
    pu = {"params": {"proj": {"kernel": up_kernel}, "bias": jnp.zeros(3)}}
    lin_down = down.apply({"params": {"proj": {"kernel": p["params"]["proj"]["kernel"],
                                               "bias": jnp.zeros(4)}}}, x)
    np.testing.assert_allclose(jnp.vdot(lin_down, y), jnp.vdot(x, up.apply(pu, y)), rtol=1e-4)

"""Properties of mt3x.audio's kernels: reconstruction, adjointness, jit/vmap/grad, dtypes,
sharding, and argument errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mt3x import audio
from mt3x.errors import Mt3xError
from spectral_refs import harmonic_audio


@pytest.mark.parametrize("n_fft,hop,win_length", [
    (2048, 512, None), (1024, 256, None), (512, 128, None), (256, 64, None), (2048, 128, None),
    (512, 100, 400), (64, 32, None),
])
def test_istft_inverts_stft(n_fft, hop, win_length):
    rng = np.random.default_rng(n_fft + hop)
    signal = (0.5 * rng.standard_normal((2, 6000))).astype(np.float32)
    spectrum = audio.stft(signal, n_fft, hop, win_length=win_length)
    restored = audio.istft(spectrum, n_fft, hop, win_length=win_length, length=6000)
    assert restored.shape == signal.shape and restored.dtype == jnp.float32
    assert np.abs(np.asarray(restored) - signal).max() <= 1e-5


def test_istft_without_centering_inverts_interior():
    signal = harmonic_audio(4096, 16000, seed=1)
    spectrum = audio.stft(signal, 512, 128, center=False)
    restored = np.asarray(audio.istft(spectrum, 512, 128, center=False))
    assert restored.shape == ((spectrum.shape[0] - 1) * 128 + 512,)
    np.testing.assert_allclose(restored[512:-512], signal[512:len(restored) - 512], atol=1e-5)


@pytest.mark.parametrize("frame_length,hop", [(256, 64), (300, 128), (100, 130), (300, 2)])
def test_overlap_add_is_the_adjoint_of_frame(frame_length, hop):
    rng = np.random.default_rng(0)
    count = 9
    length = (count - 1) * hop + frame_length
    x = rng.standard_normal((2, length)).astype(np.float32)
    y = rng.standard_normal((2, count, frame_length)).astype(np.float32)
    framed = audio.frame(x, frame_length, hop)
    assert framed.shape == (2, count, frame_length)
    added = audio.overlap_add(y, hop)
    assert added.shape == (2, length)
    np.testing.assert_allclose(float(jnp.vdot(framed, y)), float(jnp.vdot(x, added)), rtol=1e-4)
    # and against a direct loop
    expected = np.zeros((2, length), np.float32)
    for i in range(count):
        expected[:, i * hop:i * hop + frame_length] += y[:, i]
    np.testing.assert_allclose(np.asarray(added), expected, atol=1e-5)


def test_window_sum_square_matches_overlap_add():
    window = audio.get_window("hann", 400, 512)
    expected = np.asarray(audio.overlap_add(np.tile(window ** 2, (7, 1)), 100))
    np.testing.assert_allclose(audio.window_sum_square(window, 7, 100), expected, rtol=1e-6)


def test_windows():
    periodic = audio.get_window("hann", 16)
    np.testing.assert_allclose(periodic, 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(16) / 16),
                               atol=2e-7)
    np.testing.assert_allclose(audio.get_window("hann_symmetric", 16), np.hanning(16), atol=2e-7)
    padded = audio.get_window(np.arange(1.0, 5.0), 4, 10)
    np.testing.assert_array_equal(padded, [0, 0, 0, 1, 2, 3, 4, 0, 0, 0])


def test_banded_mel_equals_dense():
    rng = np.random.default_rng(4)
    spectrum = np.abs(rng.standard_normal((3, 20, 1025))).astype(np.float32)
    for weights in (audio.mel_filterbank_htk(512, 1025, 16000, 20.0, 7600.0),
                    audio.mel_filterbank_slaney(128, 1025, 22050)):
        banded = np.asarray(audio.apply_mel(spectrum, weights, method="banded"))
        dense = spectrum @ weights.astype(np.float64)
        np.testing.assert_allclose(banded, dense, rtol=1e-5, atol=1e-6)


def test_jit_and_vmap_agree_with_eager_batched_call():
    rng = np.random.default_rng(5)
    signal = rng.standard_normal((3, 2, 3000)).astype(np.float32)
    eager = audio.stft(signal, 512, 128)
    assert eager.shape == (3, 2, 1 + 3000 // 128, 257)
    jitted = jax.jit(lambda s: audio.stft(s, 512, 128))(signal)
    mapped = jax.vmap(jax.vmap(lambda s: audio.stft(s, 512, 128)))(signal)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), atol=1e-5)
    np.testing.assert_allclose(np.asarray(mapped), np.asarray(eager), atol=1e-5)

    frames = rng.standard_normal((2, 16, 128)).astype(np.float32)
    batched = audio.mt3_log_mel(frames)
    one_by_one = jax.vmap(audio.mt3_log_mel)(frames[:, None])[:, 0]
    np.testing.assert_allclose(np.asarray(one_by_one), np.asarray(batched), atol=1e-5)


def test_grad_of_log_mel_matches_finite_differences():
    rng = np.random.default_rng(6)
    frames = (0.3 * rng.standard_normal((1, 4, 128))).astype(np.float32)
    frames[0, 3] = 0.0  # a silent frame: magnitude 0 must not produce NaN gradients
    weights = rng.standard_normal((1, 4, 512)).astype(np.float32)

    def loss(x):
        return jnp.mean(audio.mt3_log_mel(x) * weights)

    grad = np.asarray(jax.jit(jax.grad(loss))(frames))
    assert np.all(np.isfinite(grad))
    direction = rng.standard_normal(frames.shape).astype(np.float32)
    direction[0, 3] = 0.0  # moving off silence crosses the log floor's kink
    direction /= np.linalg.norm(direction)
    step = 1e-2
    value = jax.jit(loss)
    numeric = (float(value(frames + step * direction)) - float(value(frames - step * direction))) / (
        2 * step)
    analytic = float(np.sum(grad * direction))
    assert abs(numeric - analytic) <= 2e-2 * abs(analytic) + 1e-6


def test_stft_istft_are_differentiable():
    signal = jnp.asarray(harmonic_audio(2048, 16000, seed=2))
    grad = jax.grad(lambda s: jnp.sum(audio.istft(audio.stft(s, 256, 64), 256, 64,
                                                  length=2048) ** 2))(signal)
    np.testing.assert_allclose(np.asarray(grad), 2 * np.asarray(signal), atol=1e-4)


def test_bfloat16_input_is_computed_in_float32():
    rng = np.random.default_rng(7)
    frames = rng.standard_normal((2, 32, 128)).astype(jnp.bfloat16)
    out = audio.mt3_log_mel(frames)
    assert out.dtype == jnp.float32
    expected = audio.mt3_log_mel(np.asarray(frames, np.float32))
    np.testing.assert_array_equal(np.asarray(out), np.asarray(expected))
    spectrum = audio.stft(jnp.asarray(frames.reshape(2, -1)), 256, 64)
    assert spectrum.dtype == jnp.complex64


def test_mt3_log_mel_sharded_over_8_devices_equals_single_device():
    devices = jax.devices()
    assert len(devices) == 8
    mesh = Mesh(np.array(devices), ("data",))
    rng = np.random.default_rng(8)
    frames = (0.2 * rng.standard_normal((8, 256, 128))).astype(np.float32)
    single = np.asarray(jax.jit(audio.mt3_log_mel)(jax.device_put(frames, devices[0])))
    sharding = NamedSharding(mesh, PartitionSpec("data"))
    sharded_in = jax.device_put(frames, sharding)
    sharded = jax.jit(audio.mt3_log_mel, out_shardings=sharding)(sharded_in)
    assert len(sharded.sharding.device_set) == 8
    np.testing.assert_allclose(np.asarray(sharded), single, atol=1e-5)


def test_mt3_config_and_sample_frames():
    config = audio.Mt3SpectrogramConfig()
    assert (config.sample_rate, config.hop_width, config.fft_size, config.num_mel_bins,
            config.mel_lo_hz, config.mel_hi_hz, config.frames_per_segment) == (
                16000, 128, 2048, 512, 20.0, 7600.0, 256)
    assert config.frames_per_second == 125.0
    frames = audio.mt3_sample_frames(np.ones((2, 256), np.float32))
    assert frames.shape == (2, 3, 128)  # a multiple of the hop still gains a zero frame, as in MT3
    assert np.all(frames[:, 2] == 0) and np.all(frames[:, :2] == 1)


@pytest.mark.parametrize("call", [
    lambda: audio.frame(np.zeros(10), 0, 1),
    lambda: audio.stft(np.zeros(100), 64, 16, window="kaiser"),
    lambda: audio.stft(np.zeros(100), 64, 16, win_length=65),
    lambda: audio.stft(np.zeros(10), 64, 16),  # too short to reflect-pad
    lambda: audio.istft(np.zeros((3, 10), np.complex64), 64, 16),
    lambda: audio.mel_filterbank_htk(10, 257, 16000, 20.0, 9000.0),
    lambda: audio.mel_filterbank_slaney(10, 257, 16000, norm="l3"),
    lambda: audio.mt3_log_mel(np.zeros((1, 256, 100), np.float32)),
])
def test_bad_arguments_raise_mt3x_errors(call):
    with pytest.raises(Mt3xError):
        call()


@pytest.mark.parametrize("plan", [(1, 1), (1, 2), (2, 1), (3, 2)])
def test_mt3_log_mel_in_steps_equals_one_call(plan):
    # map_in_steps (CPU: a few segments per step) must give the one-call result bit for bit,
    # whatever the grouping, and the same gradient up to float32 rounding.
    from mt3x.audio.framing import cpu_step_plan, map_in_steps
    from mt3x.audio.mt3_frontend import _segment_log_mel

    config = audio.MT3_SPECTROGRAM_CONFIG
    rng = np.random.default_rng(9)
    segments = (0.2 * rng.standard_normal((12, 20, 128))).astype(np.float32)

    def in_steps(x, plan):
        return map_in_steps(lambda c: _segment_log_mel(c, config, "auto"), x, 20 * 2048, plan)

    one_call = np.asarray(jax.jit(lambda x: _segment_log_mel(x, config, "auto"))(segments))
    stepped = np.asarray(jax.jit(lambda x: in_steps(x, plan))(segments))
    np.testing.assert_array_equal(stepped, one_call)
    grads = [np.asarray(jax.jit(jax.grad(lambda x, p=p: jnp.sum(in_steps(x, p) ** 2)))(segments))
             for p in (plan, (1, 12))]
    # (the backward pass sums in another order: equal up to float32 rounding)
    np.testing.assert_allclose(grads[0], grads[1], atol=1e-5 * np.abs(grads[1]).max())
    # the automatic plan: contiguous groups, one per device when the count allows
    assert cpu_step_plan(464, 256 * 2048) == (8, 2)  # conftest: 8 CPU devices
    assert cpu_step_plan(29, 256 * 2048) == (1, 1)  # 29 is prime: one segment per step
    assert cpu_step_plan(8, 256 * 2048) == (1, 8)  # one segment per device: a single step

"""Parity of mt3x.audio's spectral kernels with tf.signal (MT3's front end) and librosa."""

from __future__ import annotations

import os

import jax
import librosa
import numpy as np
import pytest

from mt3x import audio
from spectral_refs import harmonic_audio, tf_mt3_log_mel

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
tf = pytest.importorskip("tensorflow")

_mt3_log_mel = jax.jit(audio.mt3_log_mel)


def _segments(waveform: np.ndarray, count: int) -> np.ndarray:
    frames = audio.mt3_sample_frames(waveform)
    return frames[:count * 256].reshape(count, 256, 128)


# --------------------------------------------------------------------------------------------
# MT3 front end


def test_mt3_log_mel_matches_tf_on_noise():
    rng = np.random.default_rng(0)
    segments = (0.1 * rng.standard_normal((2, 256, 128))).astype(np.float32)
    ours = np.asarray(_mt3_log_mel(segments))
    reference = tf_mt3_log_mel(segments)
    assert ours.shape == (2, 256, 512) and ours.dtype == np.float32
    assert np.abs(ours - reference).max() <= 1e-3


@pytest.mark.parametrize("quantise", [False, True], ids=["float", "pcm16"])
def test_mt3_log_mel_matches_tf_on_harmonic_audio(quantise):
    # Pure synthetic tones have mel bands ~1e-7 of the frame energy, where only bit-identical
    # windows and filterbanks agree (a 1-ulp window difference moves such bands by > 1.0 in log).
    waveform = harmonic_audio(2 * 256 * 128, 16000, seed=3)
    if quantise:
        waveform = (np.round(waveform * 32767) / 32767).astype(np.float32)
    segments = _segments(waveform, 2)
    ours = np.asarray(_mt3_log_mel(segments))
    reference = tf_mt3_log_mel(segments)
    if not quantise:
        assert reference.min() < -13  # the test does reach near-silent bands
    assert np.abs(ours - reference).max() <= 1e-3


def test_short_last_segment_matches_mt3_padding():
    # MT3 transforms a short segment on its own and pads the log-mel with 0.0 rows.
    waveform = harmonic_audio(100 * 128, 16000, seed=5)
    frames = audio.mt3_sample_frames(waveform)  # 101 frames (MT3 appends a whole zero hop)
    assert frames.shape == (101, 128)
    short = tf_mt3_log_mel(frames[None])[0]
    reference = np.zeros((256, 512), np.float32)
    reference[:101] = short
    padded = np.zeros((1, 256, 128), np.float32)
    padded[0, :101] = frames
    ours = np.asarray(jax.jit(audio.mt3_log_mel)(padded, num_valid_frames=np.array([101])))
    assert np.abs(ours[0] - reference).max() <= 1e-3
    assert np.all(ours[0, 101:] == 0.0)


def test_mt3_sample_frames_match_mt3_framing():
    rng = np.random.default_rng(1)
    for length in (1000, 1280, 128, 5):
        waveform = rng.standard_normal(length).astype(np.float32)
        # mt3.preprocessors._audio_to_frames: pad by hop - len % hop, then tf.signal.frame.
        padded = np.pad(waveform, [0, 128 - len(waveform) % 128])
        reference = tf.signal.frame(padded, 128, 128, pad_end=True).numpy()
        np.testing.assert_array_equal(audio.mt3_sample_frames(waveform), reference)


# --------------------------------------------------------------------------------------------
# filterbanks

_HTK_CASES = [
    (512, 1025, 16000, 20.0, 7600.0),  # MT3
    (80, 513, 22050, 0.0, 11025.0),
    (128, 257, 16000, 125.0, 3800.0),
    (64, 1025, 44100, 30.0, 20000.0),
    (10, 30, 1000, 10.0, 400.0),  # sizes not a multiple of 8: scalar tails
    (13, 1001, 16000, 10.0, 4000.0),
]


@pytest.mark.parametrize("args", _HTK_CASES)
def test_mel_filterbank_htk_is_tf_linear_to_mel_weight_matrix(args):
    reference = tf.signal.linear_to_mel_weight_matrix(*args).numpy()
    ours = audio.mel_filterbank_htk(*args)
    assert ours.dtype == np.float32 and ours.shape == reference.shape
    np.testing.assert_array_equal(ours, reference)


@pytest.mark.parametrize("kwargs", [
    dict(sr=22050, n_fft=2048, n_mels=128),
    dict(sr=16000, n_fft=512, n_mels=40, fmin=20.0, fmax=7600.0),
    dict(sr=44100, n_fft=4096, n_mels=96, htk=True),
    dict(sr=16000, n_fft=1024, n_mels=64, norm=None),
    dict(sr=16000, n_fft=1024, n_mels=64, norm=2.0),
])
def test_mel_filterbank_slaney_is_librosa(kwargs):
    reference = librosa.filters.mel(**kwargs).T
    ours = audio.mel_filterbank_slaney(
        kwargs["n_mels"], kwargs["n_fft"] // 2 + 1, kwargs["sr"],
        kwargs.get("fmin", 0.0), kwargs.get("fmax"), htk=kwargs.get("htk", False),
        norm=kwargs.get("norm", "slaney"))
    assert ours.dtype == np.float32 and ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, rtol=1e-6, atol=1e-9)


# --------------------------------------------------------------------------------------------
# STFT / iSTFT


@pytest.mark.parametrize("n_fft,hop,win_length,pad_mode", [
    (512, 128, None, "reflect"),
    (2048, 512, None, "constant"),
    (400, 160, 300, "reflect"),
])
def test_stft_matches_librosa_centred(n_fft, hop, win_length, pad_mode):
    signal = harmonic_audio(9000, 16000, seed=7)
    reference = librosa.stft(signal, n_fft=n_fft, hop_length=hop, win_length=win_length,
                             window="hann", center=True, pad_mode=pad_mode).T
    ours = np.asarray(audio.stft(signal, n_fft, hop, win_length=win_length, center=True,
                                 pad_mode=pad_mode))
    assert ours.shape == reference.shape and ours.dtype == np.complex64
    scale = np.abs(reference).max()
    assert np.abs(ours - reference).max() <= 1e-5 * scale


@pytest.mark.parametrize("n_fft,hop,length", [(2048, 128, 5000), (512, 160, 16000), (256, 100, 999)])
def test_stft_matches_tf_signal_pad_end(n_fft, hop, length):
    signal = np.random.default_rng(2).standard_normal((2, length)).astype(np.float32)
    reference = tf.signal.stft(signal, n_fft, hop, fft_length=n_fft, pad_end=True).numpy()
    ours = np.asarray(audio.stft(signal, n_fft, hop, center=False, pad_end=True))
    assert ours.shape == reference.shape
    assert np.abs(ours - reference).max() <= 1e-5 * np.abs(reference).max()


@pytest.mark.parametrize("length", [None, 7000, 9500])
def test_istft_matches_librosa(length):
    signal = harmonic_audio(9000, 16000, seed=8)
    spectrum = librosa.stft(signal, n_fft=512, hop_length=128)
    reference = librosa.istft(spectrum, hop_length=128, n_fft=512, length=length)
    ours = np.asarray(audio.istft(spectrum.T, 512, 128, length=length))
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, atol=2e-6)


@pytest.mark.parametrize("length,frame_length,hop,pad_end", [
    (1000, 256, 64, False), (1000, 256, 64, True), (1000, 300, 128, True),
    (1000, 100, 130, True), (777, 300, 2, False), (50, 64, 16, False), (50, 64, 16, True),
])
def test_frame_matches_tf_signal_frame(length, frame_length, hop, pad_end):
    signal = np.random.default_rng(3).standard_normal((3, length)).astype(np.float32)
    reference = tf.signal.frame(signal, frame_length, hop, pad_end=pad_end, pad_value=0.5).numpy()
    ours = np.asarray(audio.frame(signal, frame_length, hop, pad_end=pad_end, pad_value=0.5))
    np.testing.assert_array_equal(ours, reference)

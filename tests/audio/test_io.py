"""Tests for mt3x.audio.io: reading, writing, mixing down, resampling and bad files."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
import soundfile
from scipy import signal as scipy_signal

from mt3x.audio.io import AudioError, quantize_pcm16, read_audio, resample, write_audio
from mt3x.errors import Mt3xError


def _noise(shape, seed=0, scale=0.3):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).clip(-1, 1).astype(np.float32)


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_pcm16_round_trip_is_exact_quantisation(tmp_path, suffix):
    audio = _noise(4000)
    path = write_audio(tmp_path / f"a{suffix}", audio, 16000)
    back, sr = read_audio(path)
    assert sr == 16000 and back.dtype == np.float32 and back.shape == (4000,)
    np.testing.assert_array_equal(back, quantize_pcm16(audio).astype(np.float32) / 32768)
    assert np.abs(back - audio).max() <= 0.5 / 32768 + 1e-9


def test_int16_input_is_written_verbatim(tmp_path):
    ints = np.array([-32768, -1, 0, 1, 32767, 12345], np.int16)
    write_audio(tmp_path / "i.flac", ints, 8000)
    raw, _ = soundfile.read(tmp_path / "i.flac", dtype="int16")
    np.testing.assert_array_equal(raw, ints)


def test_sum_of_int16_stems_reads_as_sum_of_readings(tmp_path):
    a = quantize_pcm16(_noise(1000, seed=1, scale=0.2))
    b = quantize_pcm16(_noise(1000, seed=2, scale=0.2))
    write_audio(tmp_path / "a.flac", a, 16000)
    write_audio(tmp_path / "b.flac", b, 16000)
    write_audio(tmp_path / "m.flac", (a.astype(np.int32) + b).astype(np.int16), 16000)
    ra, rb, rm = (read_audio(tmp_path / f"{n}.flac")[0] for n in "abm")
    np.testing.assert_array_equal(rm, ra + rb)


def test_float_wav_round_trip_and_clipping(tmp_path):
    audio = np.stack([_noise(3000, seed=3), np.linspace(-2, 2, 3000, dtype=np.float32)])
    write_audio(tmp_path / "f.wav", audio, 22050, subtype="FLOAT")
    back, sr = read_audio(tmp_path / "f.wav", mono=False)
    assert sr == 22050 and back.shape == (2, 3000)
    np.testing.assert_array_equal(back[0], audio[0])
    np.testing.assert_array_equal(back[1], np.clip(audio[1], -1, 1))


def test_mixdown_is_channel_mean(tmp_path):
    stereo = np.stack([_noise(2000, seed=4), _noise(2000, seed=5)])
    write_audio(tmp_path / "s.wav", stereo, 16000, subtype="FLOAT")
    mono, _ = read_audio(tmp_path / "s.wav")
    np.testing.assert_allclose(mono, stereo.mean(axis=0), atol=1e-7)
    single, _ = read_audio(tmp_path / "s.wav", mono=False)
    assert single.shape == (2, 2000)
    write_audio(tmp_path / "m.wav", stereo[0], 16000, subtype="FLOAT")
    assert read_audio(tmp_path / "m.wav", mono=False)[0].shape == (1, 2000)


@pytest.mark.parametrize("suffix,subtype", [(".wav", "PCM_16"), (".wav", "FLOAT"), (".flac", "PCM_16")])
def test_writes_are_byte_reproducible(tmp_path, suffix, subtype):
    audio = _noise(5000, seed=6)
    first = write_audio(tmp_path / f"a{suffix}", audio, 16000, subtype=subtype).read_bytes()
    os.utime(tmp_path / f"a{suffix}", (0, 0))
    second = write_audio(tmp_path / f"b{suffix}", audio, 16000, subtype=subtype).read_bytes()
    assert hashlib.sha256(first).digest() == hashlib.sha256(second).digest()
    assert b"PEAK" not in first


def test_write_is_atomic_on_failure(tmp_path):
    target = tmp_path / "keep.wav"
    write_audio(target, _noise(100), 16000)
    before = target.read_bytes()
    with pytest.raises(AudioError, match="NaN"):
        write_audio(target, np.full(100, np.nan, np.float32), 16000)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.wav"]


def test_bad_write_arguments(tmp_path):
    with pytest.raises(AudioError, match="suffix"):
        write_audio(tmp_path / "a.xyz", _noise(10), 16000)
    with pytest.raises(AudioError, match="shape"):
        write_audio(tmp_path / "a.wav", np.zeros((1, 2, 3), np.float32), 16000)
    with pytest.raises(AudioError, match="shape"):
        write_audio(tmp_path / "a.wav", np.zeros(0, np.float32), 16000)


@pytest.mark.parametrize("orig,target", [(44100, 16000), (16000, 44100), (22050, 16000), (48000, 16000)])
def test_resample_matches_scipy_and_preserves_tone(orig, target):
    t = np.arange(orig) / orig
    tone = np.sin(2 * np.pi * 440.0 * t).astype(np.float32)
    out = resample(tone, orig, target)
    assert out.dtype == np.float32 and out.shape == (int(np.ceil(orig * target / orig)),)
    from math import gcd
    g = gcd(orig, target)
    ref = scipy_signal.resample_poly(tone.astype(np.float64), target // g, orig // g)
    np.testing.assert_allclose(out, ref, atol=1e-6)
    # Away from the edges the output is the same tone sampled at the new rate.
    t_out = np.arange(out.shape[0]) / target
    middle = slice(target // 10, -target // 10)
    np.testing.assert_allclose(out[middle], np.sin(2 * np.pi * 440.0 * t_out)[middle], atol=2e-3)


def test_resample_batched_identity_and_deterministic():
    x = _noise((3, 1600), seed=7)
    np.testing.assert_array_equal(resample(x, 16000, 16000), x)
    a, b = resample(x, 16000, 8000), resample(x, 16000, 8000)
    assert a.shape == (3, 800)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a[1], resample(x[1], 16000, 8000), atol=0)
    with pytest.raises(AudioError):
        resample(x, 0, 16000)


def test_read_with_resampling(tmp_path):
    write_audio(tmp_path / "a.flac", _noise(4410, seed=8), 44100)
    audio, sr = read_audio(tmp_path / "a.flac", sample_rate=16000)
    assert sr == 16000 and audio.shape == (1600,)


@pytest.mark.parametrize("suffix", [".ogg", ".mp3"])
def test_lossy_formats_read(tmp_path, suffix):
    t = np.arange(16000) / 16000
    tone = (0.5 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    soundfile.write(tmp_path / f"t{suffix}", tone, 16000)  # the pinned wheel's libsndfile encodes both
    audio, sr = read_audio(tmp_path / f"t{suffix}")
    assert sr == 16000 and abs(audio.shape[0] - 16000) < 2000
    # A lossy codec keeps a pure tone's energy (RMS of 0.5 sin = 0.354).
    assert abs(np.sqrt(np.mean(audio[2000:-2000] ** 2)) - 0.3536) < 0.05


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg", ".mp3"])
def test_truncated_files_raise_naming_file(tmp_path, suffix):
    path = tmp_path / f"cut{suffix}"
    soundfile.write(path, _noise(16000, seed=9, scale=0.1), 16000)
    _truncate(path)
    with pytest.raises(AudioError, match=r"cut\.\w+: .*(truncated|corrupt)"):
        read_audio(path)


def test_missing_empty_and_garbage_files(tmp_path):
    with pytest.raises(AudioError, match="nope.wav: audio file not found"):
        read_audio(tmp_path / "nope.wav")
    (tmp_path / "empty.flac").write_bytes(b"")
    with pytest.raises(AudioError, match="empty.flac: audio file is empty"):
        read_audio(tmp_path / "empty.flac")
    (tmp_path / "junk.wav").write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(AudioError, match="junk.wav: not a readable audio file"):
        read_audio(tmp_path / "junk.wav")
    soundfile.write(tmp_path / "zero.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="zero.wav: audio file has no samples"):
        read_audio(tmp_path / "zero.wav")
    assert issubclass(AudioError, Mt3xError)

"""Unit tests: loudness, augmentation, instruments, MIDI sources and rendering."""

from __future__ import annotations

import numpy as np
import pretty_midi
import pytest

from mt3x.data import augment, instruments, loudness, render, sources
from tests.data.conftest import scale, write_piece


# ----------------------------------------------------------------------------- loudness

def test_k_weighting_matches_bs1770_48k_coefficients():
    (shelf_b, shelf_a), (hp_b, hp_a) = loudness.k_weighting_coefficients(48000)
    np.testing.assert_allclose(shelf_b, [1.53512485958697, -2.69169618940638, 1.19839281085285], atol=1e-10)
    np.testing.assert_allclose(shelf_a, [1.0, -1.69065929318241, 0.73248077421585], atol=1e-10)
    np.testing.assert_allclose(hp_b, [1.0, -2.0, 1.0])
    np.testing.assert_allclose(hp_a, [1.0, -1.99004745483398, 0.99007225036621], atol=1e-10)


@pytest.mark.parametrize("sr", [16000, 44100, 48000])
def test_loudness_calibration_997hz_full_scale(sr):
    t = np.arange(5 * sr) / sr
    tone = np.sin(2 * np.pi * 997 * t)
    assert abs(loudness.integrated_loudness(tone, sr) - (-3.01)) < 0.05
    assert abs(loudness.integrated_loudness(0.1 * tone, sr) - (-23.01)) < 0.05


def test_loudness_gating():
    sr = 16000
    assert loudness.integrated_loudness(np.zeros(sr * 2), sr) == float("-inf")
    assert loudness.integrated_loudness(np.ones(100), sr) == float("-inf")  # shorter than a block
    tone = np.sin(2 * np.pi * 997 * np.arange(4 * sr) / sr)
    padded = np.concatenate([tone, np.zeros(8 * sr)])  # silence is gated out (ungated: -7.8 LUFS)
    assert abs(loudness.integrated_loudness(padded, sr) - loudness.integrated_loudness(tone, sr)) < 0.3


# ----------------------------------------------------------------------------- augmentation

def test_white_noise_reaches_requested_snr():
    rng = np.random.default_rng(0)
    signal = np.sin(2 * np.pi * 220 * np.arange(160000) / 16000).astype(np.float32)
    noisy = augment.add_white_noise(signal, 10.0, rng)
    noise = noisy - signal
    snr = 10 * np.log10(np.mean(signal.astype(np.float64) ** 2) / np.mean(noise.astype(np.float64) ** 2))
    assert abs(snr - 10.0) < 0.1
    np.testing.assert_array_equal(augment.add_white_noise(np.zeros(100, np.float32), 10.0, rng), 0)


@pytest.mark.parametrize("kind,rt60_range", [("hall", (1.6, 2.6)), ("room", (0.2, 0.5))])
def test_synthetic_ir_decays_with_rt60(kind, rt60_range):
    sr = 16000
    ir, info = augment.synthetic_ir(kind, sr, np.random.default_rng(1))
    assert ir[0] == 1.0 and ir.dtype == np.float32
    assert rt60_range[0] <= info["rt60"] <= rt60_range[1]
    assert abs(ir.shape[0] - info["rt60"] * sr) <= 2
    tail = ir[1:].astype(np.float64) ** 2
    quarter = tail.shape[0] // 4
    first, last = tail[:quarter].sum(), tail[-quarter:].sum()
    assert 10 * np.log10(first / last) > 25  # about 45 dB of decay between the first and last quarter
    again, _ = augment.synthetic_ir(kind, sr, np.random.default_rng(1))
    np.testing.assert_array_equal(ir, again)


def test_augment_stems_is_seeded_and_keeps_length():
    stems = [np.random.default_rng(k).standard_normal(8000).astype(np.float32) * 0.1 for k in range(3)]
    aug = augment.Augmentation(ir="random", noise_snr_db=(20, 30), gain_db=(-6, 0))
    a, info_a, stem_a = augment.augment_stems(stems, aug, 16000, seed=5)
    b, info_b, stem_b = augment.augment_stems(stems, aug, 16000, seed=5)
    c, _, _ = augment.augment_stems(stems, aug, 16000, seed=6)
    assert info_a == info_b and stem_a == stem_b and info_a["ir"]["kind"] == "random"
    for x, y, z, s in zip(a, b, c, stems):
        assert x.shape == s.shape
        np.testing.assert_array_equal(x, y)
        assert not np.array_equal(x, z)
    assert all(-6 <= s["gain_db"] <= 0 and 20 <= s["noise_snr_db"] <= 30 for s in stem_a)
    with pytest.raises(Exception, match="augmentation ir"):
        augment.Augmentation(ir="cathedral")


# ----------------------------------------------------------------------------- instruments

def test_instrument_classes_and_names():
    assert instruments.inst_class(0, False) == "Piano"
    assert instruments.inst_class(33, False) == "Bass"
    assert instruments.inst_class(48, False) == "Strings (continued)"
    assert instruments.inst_class(0, True) == "Drums"
    assert instruments.program_name(24, False) == "Acoustic Guitar (nylon)"
    assert instruments.SLAKH_CLASS_PROGRAMS["Electric Bass"] == 33


def test_recipes():
    rng = np.random.default_rng(0)
    parts = [(5, False), (5, False), (0, True), (5, False), (5, False), (5, False)]
    fixed = instruments.Recipe("fixed", programs=(0, 48, 24, 33)).choose(parts, rng)
    assert [c.program for c in fixed] == [0, 48, 0, 24, 33, 0]
    assert fixed[2].is_drum and fixed[2].inst_class == "Drums"
    pool = instruments.Recipe("pool", pool=(40, 41, 42, 43, 56)).choose(parts, rng)
    pitched = [c.program for c in pool if not c.is_drum]
    assert len(set(pitched)) == 5 and set(pitched) <= {40, 41, 42, 43, 56}
    classes = instruments.Recipe("classes", classes=("Tuba", "Oboe")).choose(parts[:2], rng)
    assert sorted(c.program for c in classes) == [58, 68]
    assert [c.program for c in instruments.Recipe("source").choose(parts, rng)] == [5, 5, 0, 5, 5, 5]
    with pytest.raises(Exception, match="unknown Slakh classes"):
        instruments.Recipe("classes", classes=("Kazoo",))


# ----------------------------------------------------------------------------- sources

def _inst(notes, program=0, is_drum=False):
    inst = pretty_midi.Instrument(program=program, is_drum=is_drum)
    inst.notes = [pretty_midi.Note(90, p, s, e) for p, s, e in notes]
    return inst


def test_crop_loop_transpose():
    inst = _inst([(60, 0.0, 1.0), (62, 1.0, 2.0), (64, 2.0, 3.0)])
    cropped = sources.crop_instrument(inst, 0.5, 2.5)
    assert [(n.pitch, n.start, n.end) for n in cropped.notes] == [(60, 0.0, 0.5), (62, 0.5, 1.5), (64, 1.5, 2.0)]
    looped = sources.loop_instrument(_inst([(60, 0.0, 0.5), (67, 0.5, 1.0)]), 1.0, 2.5)
    assert [(n.pitch, n.start, n.end) for n in looped.notes] == [
        (60, 0.0, 0.5), (67, 0.5, 1.0), (60, 1.0, 1.5), (67, 1.5, 2.0), (60, 2.0, 2.5)]
    low = sources.transpose_instrument(_inst([(60, 0, 1), (5, 1, 2)]), -24)
    assert [n.pitch for n in low.notes] == [36, 5]  # folded back by octaves into range


def test_drum_part_follows_tempo():
    part = sources.drum_part(4.0, 120.0, np.random.default_rng(0))
    assert part.instrument.is_drum
    kicks = [n.start for n in part.instrument.notes if n.pitch == 36]
    snares = [n.start for n in part.instrument.notes if n.pitch == 38]
    np.testing.assert_allclose(kicks, [0.0, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(snares, [0.5, 1.5, 2.5, 3.5])


def test_load_midi_file_and_bad_midi(tmp_path):
    path = write_piece(tmp_path / "ok.mid", [(0, False, scale(60, 4)), (0, True, [(36, 0.0, 0.1)])])
    piece = sources.load_midi_file(path)
    assert piece.piece_id == "midi:ok.mid" and len(piece.parts) == 2
    assert piece.parts[1].instrument.is_drum and abs(piece.end_time - 1.0) < 1e-3
    (tmp_path / "bad.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage")
    with pytest.raises(sources.MidiError, match=r"bad\.mid: MIDI file does not parse"):
        sources.load_midi_file(tmp_path / "bad.mid")
    write_piece(tmp_path / "empty.mid", [(0, False, [])])
    with pytest.raises(sources.MidiError, match=r"empty\.mid: MIDI has no notes"):
        sources.load_midi_file(tmp_path / "empty.mid")
    with pytest.raises(sources.MidiError, match="no .mid"):
        (tmp_path / "sub").mkdir()
        sources.list_midi_dir(tmp_path / "sub")


def test_music21_chorale_parts():
    ids = sources.list_music21_corpus()
    assert len(ids) > 340 and all(i.startswith("music21:bach/") for i in ids)
    piece = sources.load_piece("music21:bach/bwv10.7")
    assert [p.name for p in piece.parts] == ["Soprano", "Alto", "Tenor", "Bass"]
    assert [len(p.instrument.notes) for p in piece.parts] == [43, 49, 56, 58]
    assert piece.parts[0].instrument.notes[0].pitch == 74 and piece.end_time == pytest.approx(44.0)


# ----------------------------------------------------------------------------- rendering

def _peak_hz(audio, sr):
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(audio.shape[0])))
    return np.argmax(spectrum) * sr / audio.shape[0]


@pytest.mark.parametrize("backend", ["fluidsynth", "tinysoundfont"])
def test_render_is_deterministic_timed_and_pitched(backend):
    sr = 16000
    inst = _inst([(69, 0.5, 1.5)], program=73)  # flute A4 from 0.5 s
    a = render.render_instrument(inst, num_samples=2 * sr, sample_rate=sr, backend=backend)
    b = render.render_instrument(inst, num_samples=2 * sr, sample_rate=sr, backend=backend)
    assert a.dtype == np.float32 and a.shape == (2 * sr,)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a[: int(0.49 * sr)]).max() == 0.0  # silent before the note (64-sample blocks)
    assert np.abs(a[int(0.6 * sr): int(1.4 * sr)]).max() > 0.01
    assert abs(_peak_hz(a[int(0.7 * sr): int(1.3 * sr)], sr) - 440.0) < 5.0


def test_sf3_renders_share_one_decoded_font_and_match_fresh_loads():
    """A compressed font is decoded once per process and shared by every stem's synthesizer;
    each render is byte-identical to a synthesizer loading the preset itself, whatever was
    rendered before it."""
    from mt3x.data import fluid_fonts

    sr, font = 16000, "/usr/share/sounds/sf3/FluidR3Mono_GM.sf3"
    fluid_fonts.release_all()
    stems = [_inst([(60, 0.0, 0.4), (64, 0.2, 0.9), (67, 0.3, 0.5)], program=0),
             _inst([(36, 0.0, 0.1), (38, 0.25, 0.3), (42, 0.5, 0.55)], program=0, is_drum=True),
             _inst([(45, 0.1, 0.8)], program=33)]
    fresh = [render.render_instrument(s, num_samples=sr + 17, sample_rate=sr, soundfont=font,
                                      share_fonts=False) for s in stems]
    assert not fluid_fonts._holders
    for order in ([0, 1, 2], [2, 1, 0]):
        for k in order:
            shared = render.render_instrument(stems[k], num_samples=sr + 17, sample_rate=sr,
                                              soundfont=font)
            assert np.abs(shared).max() > 0.01
            np.testing.assert_array_equal(shared, fresh[k])
    assert list(fluid_fonts._holders) == [(font, sr)]
    with pytest.raises(render.RenderError, match=r"FluidR3Mono_GM\.sf3: soundfont has no drum kit 20"):
        render.render_instrument(_inst([(36, 0, 0.1)], program=20, is_drum=True),
                                 num_samples=sr, sample_rate=sr, soundfont=font)
    fluid_fonts.release_all()
    assert not fluid_fonts._holders


def test_render_drums_and_errors(tmp_path):
    sr = 16000
    drums = _inst([(36, 0.0, 0.2), (38, 0.5, 0.7)], program=0, is_drum=True)
    audio = render.render_instrument(drums, num_samples=sr, sample_rate=sr)
    assert np.abs(audio[: sr // 4]).max() > 0.01 and np.abs(audio[sr // 2:]).max() > 0.01
    with pytest.raises(render.RenderError, match=r"TimGM6mb\.sf2: soundfont has no drum kit 1 in bank 128"):
        render.render_instrument(_inst([(36, 0, 0.1)], program=1, is_drum=True), num_samples=sr, sample_rate=sr)
    with pytest.raises(render.RenderError, match=r"missing\.sf2: soundfont not found"):
        render.render_instrument(drums, num_samples=sr, sample_rate=sr, soundfont=tmp_path / "missing.sf2")
    (tmp_path / "fake.sf2").write_bytes(b"RIFF....WAVEjunk")
    with pytest.raises(render.RenderError, match=r"fake\.sf2: not a SoundFont"):
        render.check_soundfont(tmp_path / "fake.sf2")

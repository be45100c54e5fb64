"""Builder tests on tiny MIDI-folder datasets: layout, round trip, modes, augmentation,
determinism, resume and bad input."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import yaml

from mt3x.data.augment import Augmentation
from mt3x.data.builder import build
from mt3x.data.instruments import Recipe
from mt3x.data.plan import BuildConfig, BuildError
from mt3x.data.render import RenderError
from mt3x.data.slakh import list_track_dirs, read_split
from tests.data.conftest import scale, write_piece

TRACK_KEYS = {"UUID", "audio_dir", "lmd_midi_dir", "midi_dir", "normalization_factor", "normalized",
              "overall_gain", "target_peak", "stems", "source_pieces", "mode", "augmentation",
              "renderer", "seed"}
STEM_KEYS = {"audio_rendered", "inst_class", "integrated_loudness", "is_drum", "midi_program_name",
             "midi_saved", "plugin_name", "program_num"}


def tiny(midi_dir, **overrides) -> BuildConfig:
    config = BuildConfig(source="midi-dir", midi_dir=str(midi_dir), num_parts=None,
                         recipe=Recipe("source"), tail_seconds=0.5, split_counts=(4, 1, 1),
                         sample_rate=16000, seed=3)
    return dataclasses.replace(config, **overrides)


def tracks(root):
    return [t for split in ("train", "validation", "test") if list_track_dirs(root, split)
            for t in read_split(root, split)]


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def same_piece(midi_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("same") / "ds"
    report = build(tiny(midi_dir), root)
    return root, report


def test_layout_metadata_and_splits(same_piece):
    root, report = same_piece
    assert len(report.built) == 6 and not report.skipped_tracks
    all_tracks = tracks(root)
    assert [t.track_id for t in all_tracks] == [f"Track{i:05d}" for i in range(1, 7)]
    assert [t.split for t in all_tracks] == ["train"] * 4 + ["validation", "test"]
    pieces_by_split = {}
    for t in all_tracks:
        meta = yaml.safe_load((t.path / "metadata.yaml").read_text())
        assert TRACK_KEYS <= set(meta) and meta["audio_dir"] == "stems" and meta["midi_dir"] == "MIDI"
        assert meta["renderer"] == "fluidsynth" and meta["mode"] == "same-piece"
        assert len(meta["UUID"]) == 32
        for stem in meta["stems"].values():
            assert STEM_KEYS <= set(stem) and stem["plugin_name"] == "TimGM6mb.sf2"
        assert (t.path / "all_src.mid").is_file()
        pieces_by_split.setdefault(t.split, set()).update(meta["source_pieces"])
    assert not (pieces_by_split["train"] & pieces_by_split["validation"])
    assert not (pieces_by_split["train"] & pieces_by_split["test"])
    drum_tracks = [t for t in all_tracks if any(s.is_drum for s in t.stems)]
    assert len(drum_tracks) == 1 and drum_tracks[0].stems[2].inst_class == "Drums"


def test_reader_round_trips_builder(same_piece, midi_dir):
    root, _ = same_piece
    for track in tracks(root):
        meta = yaml.safe_load((track.path / "metadata.yaml").read_text())
        source = pretty_midi.PrettyMIDI(str(midi_dir / meta["source_pieces"][0].split(":", 1)[1]))
        mix = track.load_mix()
        stems = [track.load_stem(s.name) for s in track.stems]
        assert mix.shape == (int(np.ceil((2.0 + 0.5) * 16000)),)
        assert all(s.shape == mix.shape for s in stems)
        np.testing.assert_array_equal(mix, np.sum(stems, axis=0))  # exact: integer sum of int16 stems
        assert 0.5 < np.abs(mix).max() <= 10 ** (-1 / 20) + 1e-4
        sequence = track.note_sequence(program_source="midi")
        for index, (stem, inst) in enumerate(zip(track.stems, source.instruments)):
            got = sorted((n.pitch, round(n.start_time, 3), round(n.end_time, 3))
                         for n in sequence.notes if n.instrument == index)
            want = sorted((n.pitch, round(n.start, 3), round(n.end, 3)) for n in inst.notes)
            assert got == want
            assert {(n.program, n.is_drum) for n in sequence.notes if n.instrument == index} == {
                (inst.program, inst.is_drum)}
            assert stem.program == inst.program


def test_build_is_byte_reproducible_and_resumes(same_piece, midi_dir, tmp_path):
    root, _ = same_piece
    again = tmp_path / "again"
    build(tiny(midi_dir), again, jobs=2)
    assert digest(again) == digest(root)
    # A killed build: one finished track gone, one temporary folder left behind.
    shutil.rmtree(again / "train" / "Track00002")
    (again / "train" / ".Track00003.tmp-dead").mkdir()
    report = build(tiny(midi_dir), again)
    assert report.built == ["Track00002"] and len(report.existing) == 5
    assert digest(again) == digest(root)
    with pytest.raises(BuildError, match="another configuration"):
        build(tiny(midi_dir, seed=4), again)


def test_random_mix_and_unison(midi_dir, tmp_path):
    config = tiny(midi_dir, modes=("random-mix", "unison"), mixes_per_piece=2, random_mix_stems=3,
                  segment_seconds=3.0, split_counts=(4, 2, 0), recipe=Recipe("pool"))
    report = build(config, tmp_path / "ds")
    assert len(report.built) == 12
    for track in tracks(tmp_path / "ds"):
        meta = yaml.safe_load((track.path / "metadata.yaml").read_text())
        sequence = track.note_sequence()
        if meta["mode"] == "random-mix":
            pieces = [s["source_piece"] for s in meta["stems"].values()]
            split_size = {"train": 4, "validation": 2}[track.split]
            assert len(set(pieces)) == len(pieces) == min(3, split_size)
            assert track.load_mix().shape == (int((3.0 + 0.5) * 16000),)
            # looped: every stem has notes in the last second of the 3-s window (pieces are 2 s)
            for k in range(len(pieces)):
                assert any(n.start_time >= 2.0 for n in sequence.notes if n.instrument == k)
        else:
            assert meta["mode"] == "unison" and len(track.stems) == 2
            assert [s.program for s in track.stems] == [0, 24]
            low, high = ([n.pitch for n in sequence.notes if n.instrument == k] for k in (1, 0))
            assert [p + 24 for p in low] == high or all(p < 24 for p in high)
        np.testing.assert_array_equal(track.load_mix(), sum(track.load_stem(s.name) for s in track.stems))
    splits = {t.split for t in tracks(tmp_path / "ds")}
    assert splits == {"train", "validation"}


def test_augmentation_recorded_and_consistent(midi_dir, same_piece, tmp_path):
    aug = Augmentation(ir="room", noise_snr_db=(30.0, 30.0), gain_db=(-6.0, 0.0))
    build(tiny(midi_dir, augmentation=aug), tmp_path / "aug")
    clean_root, _ = same_piece
    for track, clean in zip(tracks(tmp_path / "aug"), tracks(clean_root)):
        meta = yaml.safe_load((track.path / "metadata.yaml").read_text())
        assert meta["augmentation"]["ir"]["kind"] == "room"
        for stem in meta["stems"].values():
            assert stem["augmentation"]["noise_snr_db"] == 30.0 and -6 <= stem["augmentation"]["gain_db"] <= 0
        mix = track.load_mix()
        np.testing.assert_array_equal(mix, sum(track.load_stem(s.name) for s in track.stems))
        assert not np.array_equal(mix, clean.load_mix())
        # white noise at 30 dB SNR fills the release tail that is silent in the clean render
        tail = track.load_stem("S00")[-800:]
        assert np.abs(tail).max() > 0


def test_bad_inputs_skip_or_fail(midi_dir, tmp_path):
    bad_dir = tmp_path / "midi"
    shutil.copytree(midi_dir, bad_dir)
    (bad_dir / "broken.mid").write_bytes(b"not a midi file")
    write_piece(bad_dir / "silent.mid", [(0, False, [])])
    write_piece(bad_dir / "kit.mid", [(0, False, scale(60, 4)), (5, True, [(36, 0.0, 0.1)])])  # no kit 5
    report = build(tiny(bad_dir, split_counts=(5, 1, 1)), tmp_path / "ds")
    assert set(report.skipped_pieces) == {"midi:broken.mid", "midi:silent.mid"}
    assert "broken.mid: MIDI file does not parse" in report.skipped_pieces["midi:broken.mid"]
    assert "silent.mid: MIDI has no notes" in report.skipped_pieces["midi:silent.mid"]
    assert len(report.skipped_tracks) == 1
    (message,) = report.skipped_tracks.values()
    assert "soundfont has no drum kit 5 in bank 128" in message
    assert len(report.built) == 6 and "skipped 1 tracks and 2 pieces" in report.summary()
    with pytest.raises(BuildError, match="broken.mid: MIDI file does not parse"):
        build(tiny(bad_dir, split_counts=(5, 1, 1)), tmp_path / "ds2", on_error="fail")
    with pytest.raises(RenderError, match="nope.sf2: soundfont not found"):
        build(tiny(midi_dir, soundfont=str(tmp_path / "nope.sf2")), tmp_path / "ds3")


def test_44k_wav_and_tinysoundfont(midi_dir, tmp_path):
    config = tiny(midi_dir, sample_rate=44100, audio_format="wav", renderer="tinysoundfont",
                  split_counts=(1, 0, 0), max_pieces=1)
    build(config, tmp_path / "ds")
    (track,) = read_split(tmp_path / "ds", "train")
    assert track.mix_path.name == "mix.wav" and track.sample_rate() == 44100
    meta = yaml.safe_load((track.path / "metadata.yaml").read_text())
    assert meta["renderer"] == "tinysoundfont"
    assert track.load_mix(sample_rate=16000).shape == (40000,)

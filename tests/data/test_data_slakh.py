"""Reader tests: a hand-made folder in real Slakh2100 layout, broken folders, the demo set, CLI, TFDS."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import yaml

from mt3x.audio.io import quantize_pcm16, write_audio
from mt3x.cli import data as data_cli
from mt3x.data.midi import MidiReadError
from mt3x.data.slakh import DatasetError, read_split, read_track
from tests.data.conftest import scale, write_piece

REAL_METADATA = """UUID: 1a81ae092884234f3264e2f45927f00a
audio_dir: /home/ethan/slakh/Track00001/stems
lmd_midi_dir: lmd_matched/O/O/H/TROOHTB128F931F9DF/1a81ae092884234f3264e2f45927f00a.mid
midi_dir: /home/ethan/slakh/Track00001/MIDI
normalization_factor: -13.0
normalized: true
overall_gain: 0.18270259567062658
stems:
  S00:
    audio_rendered: true
    inst_class: Guitar
    integrated_loudness: -12.82074180245363
    is_drum: false
    midi_program_name: Distortion Guitar
    midi_saved: true
    plugin_name: elektrik_guitar.nkm
    program_num: 30
  S01:
    audio_rendered: true
    inst_class: Drums
    integrated_loudness: -13.4
    is_drum: true
    midi_program_name: Drums
    midi_saved: true
    plugin_name: session_kit_full.nkm
    program_num: 128
  S02:
    audio_rendered: false
    inst_class: Bass
    integrated_loudness: null
    is_drum: false
    midi_program_name: Electric Bass (finger)
    midi_saved: true
    plugin_name: scarbee_jay_bass_both.nkm
    program_num: 33
target_peak: -1.0
"""


def make_real_track(root, split="train", track="Track00001", suffix=".flac", sr=44100):
    folder = root / split / track
    (folder / "stems").mkdir(parents=True)
    (folder / "metadata.yaml").write_text(REAL_METADATA)
    rng = np.random.default_rng(0)
    stems = [quantize_pcm16(rng.standard_normal(sr // 2) * 0.1) for _ in range(2)]
    for name, audio in zip(("S00", "S01"), stems):
        write_audio(folder / "stems" / f"{name}{suffix}", audio, sr)
    write_audio(folder / f"mix{suffix}", (stems[0].astype(np.int32) + stems[1]).astype(np.int16), sr)
    # MIDI files carry program 0: the metadata's programs must win.
    write_piece(folder / "MIDI" / "S00.mid", [(0, False, scale(52, 4))])
    write_piece(folder / "MIDI" / "S01.mid", [(0, False, [(36, 0.0, 0.1), (38, 0.25, 0.3)])])
    write_piece(folder / "MIDI" / "S02.mid", [(0, False, scale(28, 2))])
    return folder


def test_real_slakh_layout_reads(tmp_path):
    folder = make_real_track(tmp_path)
    make_real_track(tmp_path, split="omitted", track="Track00002")
    (track,) = read_split(tmp_path, "train")
    assert track.track_id == "Track00001" and track.split == "train" and track.path == folder
    assert [s.name for s in track.stems] == ["S00", "S01", "S02"]
    s00, s01, s02 = track.stems
    assert s00.audio_path == folder / "stems" / "S00.flac"  # from folder names, not /home/ethan/...
    assert (s00.program, s00.inst_class, s01.is_drum, s02.audio_rendered) == (30, "Guitar", True, False)
    assert s02.audio_path is None and s02.midi_path == folder / "MIDI" / "S02.mid"
    assert [s.name for s in track.rendered_stems] == ["S00", "S01"]
    np.testing.assert_array_equal(track.load_mix(), track.load_stem("S00") + track.load_stem("S01"))
    assert track.load_mix(sample_rate=16000).shape == (8000,)
    with pytest.raises(DatasetError, match="S02 has no audio"):
        track.load_stem("S02")
    sequence = track.note_sequence()  # MT3's training programs: drums on program 0 ...
    assert {(n.instrument, n.program, n.is_drum) for n in sequence.notes} == {(0, 30, False), (1, 0, True)}
    metadata_programs = track.note_sequence(program_source="midi")  # ... or metadata's
    assert {(n.program, n.is_drum) for n in metadata_programs.notes} == {(30, False), (128, True)}
    full = track.note_sequence(include_unrendered=True)
    assert {(n.instrument, n.program) for n in full.notes if n.instrument == 2} == {(2, 33)}
    assert len(track.stem_note_sequence("S02").notes) == 2
    (omitted,) = read_split(tmp_path, "omitted")
    assert omitted.split == "omitted"


def test_babyslakh_wav_16k(tmp_path):
    make_real_track(tmp_path, suffix=".wav", sr=16000)
    (track,) = read_split(tmp_path, "train")
    assert track.mix_path.name == "mix.wav" and track.sample_rate() == 16000
    assert track.load_stem("S01").shape == (8000,)


def test_broken_folders_name_the_file(tmp_path):
    folder = make_real_track(tmp_path)
    (folder / "stems" / "S01.flac").unlink()
    with pytest.raises(DatasetError, match=r"Track00001/stems/S01\.flac: stem audio file missing"):
        read_track(folder)
    (folder / "metadata.yaml").write_text("stems: [unclosed\n  - : :")
    with pytest.raises(DatasetError, match=r"metadata\.yaml: corrupt metadata"):
        read_track(folder)
    (folder / "metadata.yaml").write_text(yaml.safe_dump({"stems": {"S00": {"is_drum": False}}}))
    with pytest.raises(DatasetError, match=r"stems\.S00: missing field 'program_num'"):
        read_track(folder)
    (folder / "metadata.yaml").unlink()
    with pytest.raises(DatasetError, match="metadata.yaml: metadata file not found"):
        read_track(folder)
    with pytest.raises(DatasetError, match="validation: no Track"):
        read_split(tmp_path, "validation")


def test_demo_preset(demo_dataset):
    counts = {split: len(read_split(demo_dataset, split)) for split in ("train", "validation", "test")}
    assert counts == {"train": 6, "validation": 2, "test": 2}
    classes, drums = set(), 0
    for split in counts:
        for track in read_split(demo_dataset, split):
            assert track.sample_rate() == 16000
            mix = track.load_mix()
            assert mix.shape == (13 * 16000,)
            np.testing.assert_array_equal(mix, np.sum([track.load_stem(s.name) for s in track.stems], axis=0))
            classes.update(s.inst_class for s in track.stems)
            drums += any(s.is_drum for s in track.stems)
            sequence = track.note_sequence()
            assert sequence.total_time <= 12.0 + 1e-6 and len(sequence.notes) > 20
    assert {"Piano", "Bass", "Strings (continued)", "Guitar", "Drums"} <= classes
    assert drums >= 1


def test_cli_build_info_check(midi_dir, tmp_path, capsys):
    out = tmp_path / "ds"
    args = ["build", "--midi-dir", str(midi_dir), "--out", str(out), "--recipe", "classes",
            "--classes", "Violin,Cello", "--reverb", "room", "--no-progress", "--max-pieces", "3"]
    assert data_cli.main(args) == 0
    assert "built 3 tracks" in capsys.readouterr().out
    assert data_cli.main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "train: 1 tracks" in info and "size on disk" in info
    assert data_cli.main(["check", str(out)]) == 0
    (track,) = read_split(out, "train")
    assert {s.program for s in track.stems if not s.is_drum} <= {40, 42}
    shutil.copy(track.path / "stems" / "S00.flac", track.path / "mix.flac")  # break the mix
    assert data_cli.main(["check", str(out)]) == 1
    assert "differs from the sum of the stems" in capsys.readouterr().out
    assert data_cli.main(["build", "--out", str(tmp_path / "x"), "--soundfont", str(tmp_path / "no.sf2")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "no.sf2: soundfont not found" in err


def test_tfds_builder_round_trip(demo_dataset, tmp_path):
    # In CI (no longer marked slow): the demo dataset is built for test_demo_preset anyway;
    # the TFDS build of its 10 tracks adds ~10 s.
    import note_seq

    from mt3x.data.tfds_slakh import prepare_slakh_tfds

    builder = prepare_slakh_tfds(demo_dataset, tmp_path / "tfds")
    assert builder.info.splits["train"].num_examples == 6
    examples = {ex["track_id"].decode(): ex for ex in builder.as_dataset(split="validation").as_numpy_iterator()}
    for track in read_split(demo_dataset, "validation"):
        ex = examples[track.track_id]
        np.testing.assert_array_equal(ex["audio"], track.load_mix())
        sequence = note_seq.NoteSequence.FromString(ex["sequence"])
        assert len(sequence.notes) == len(track.note_sequence().notes)


def test_unreadable_stem_midi_names_the_file(tmp_path):
    folder = make_real_track(tmp_path)
    (folder / "MIDI" / "S00.mid").write_bytes(b"MThd not a midi file")
    track = read_track(folder)
    with pytest.raises(MidiReadError, match=r"MIDI/S00\.mid: not a readable MIDI file"):
        track.note_sequence()
    with pytest.raises(MidiReadError, match=r"MIDI/S00\.mid: not a readable MIDI file"):
        track.stem_note_sequence("S00")

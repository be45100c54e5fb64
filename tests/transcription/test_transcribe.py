"""Transcription: audio -> segments -> batched decode -> stitched notes -> multi-track MIDI, exact
on an oracle model; `mt3x-transcribe` end to end on a demo mixture with a trained checkpoint;
clear errors for bad checkpoints and bad audio."""

from __future__ import annotations

import shutil

import mido
import numpy as np
import pretty_midi
import pytest
import soundfile

from tests import mt3_testdata as data
from tests.mt3_testdata import OracleModel, oracle_table, reference_notes
from mt3x.cli import transcribe as cli
from mt3x.audio.mt3_config import MT3_SPECTROGRAM_CONFIG
from mt3x.transcription.decoder import Transcriber, load_transcriber
from mt3x.transcription.errors import TranscriptionError
from mt3x.transcription.midi_output import note_sequence_to_pretty_midi, write_midi
from mt3x.transcription.metrics import transcription_metrics
from mt3x.transcription.segments import audio_to_segments

SEGMENT_SECONDS = MT3_SPECTROGRAM_CONFIG.segment_seconds  # 2.048


def oracle_audio(num_samples: int, seed: int = 0) -> np.ndarray:
    """Quiet noise whose first sample of segment s is s + 1 (what OracleModel reads)."""
    audio = (0.05 * np.random.default_rng(seed).standard_normal(num_samples)).astype(np.float32)
    step = 256 * 128
    audio[::step] = np.arange(1, len(audio[::step]) + 1)
    return audio


def test_audio_is_cut_into_mt3_segments():
    audio = np.arange(5 * 16000, dtype=np.float32)
    frames, starts, lengths = audio_to_segments(audio)
    assert frames.shape == (3, 256, 128)          # 625 + 1 frames -> 3 segments of 256
    np.testing.assert_array_equal(lengths, [256, 256, 626 - 512])
    np.testing.assert_allclose(starts, [0.0, SEGMENT_SECONDS, 2 * SEGMENT_SECONDS])
    np.testing.assert_array_equal(frames.reshape(-1)[:audio.size], audio)
    assert not frames.reshape(-1)[audio.size:].any()


def test_oracle_transcription_recovers_every_note_and_writes_named_tracks(tmp_path):
    ns = reference_notes(seconds=5.0)
    audios = [oracle_audio(5 * 16000, seed) for seed in (0, 1)]
    transcriber = Transcriber(OracleModel(oracle_table(ns, 5 * 16000)), None, batch_size=2)
    results = transcriber.transcribe_many(audios)  # 6 segments in 3 batches of 8 (8 devices)
    assert transcriber.decoder.batch_size == 8 and transcriber.decoder.segments_decoded == 6
    for result in results:
        scores = transcription_metrics(ns, result.note_sequence)
        assert scores["Onset + offset + program F1 (full)"] == pytest.approx(1.0)
        assert result.num_segments == 3 and result.invalid_events == 0
        # The oracle ends every segment with EOS and never repeats a note.
        assert result.truncated_segments == 0 and result.duplicate_notes == 0
    midi_path = write_midi(results[0].note_sequence, tmp_path / "oracle.mid")
    pm = pretty_midi.PrettyMIDI(str(midi_path))
    tracks = {(i.name, i.program, i.is_drum): len(i.notes) for i in pm.instruments}
    expected = {(name, program, drum): sum(1 for n in ns.notes
                                           if n.is_drum == drum and (drum or n.program == program))
                for name, program, drum in [("Acoustic Grand Piano", 0, False),
                                            ("Electric Bass (finger)", 33, False),
                                            ("Drums", 0, True)]}
    assert tracks == expected
    channels = {}
    for track in mido.MidiFile(str(midi_path)).tracks:
        names = [m.name for m in track if m.type == "track_name"]
        notes = [m.channel for m in track if m.type == "note_on"]
        if names and notes:
            channels[names[0]] = set(notes)
    assert channels["Drums"] == {9}                            # General MIDI channel 10
    assert 9 not in channels["Acoustic Grand Piano"] | channels["Electric Bass (finger)"]


def test_pretty_midi_tracks_are_sorted_and_drums_use_program_0():
    ns = reference_notes(seconds=2.0)
    ns.notes[2].program = 40  # a drum note's program is ignored
    pm = note_sequence_to_pretty_midi(ns)
    assert [(i.is_drum, i.program) for i in pm.instruments] == [(False, 0), (False, 33),
                                                                (True, 0)]


@pytest.fixture(scope="module")
def demo_mix(tmp_path_factory):
    root = data.tiny_dataset(tmp_path_factory)
    return next((root / "test").glob("Track*/mix.flac"))


def test_cli_transcribes_a_demo_mixture_to_midi_and_png(tmp_path_factory, tmp_path, demo_mix,
                                                        capsys):
    # Seeded random parameters: unlike the trained tiny run, they transcribe notes from this
    # mixture, so the file is compared with a non-empty transcription.
    workdir = data.seeded_tiny_checkpoint(tmp_path_factory)
    reference = tmp_path / "ref.mid"
    write_midi(_track_notes(demo_mix), reference)
    code = cli.main([str(demo_mix), "--checkpoint", str(workdir), "--out", str(tmp_path / "out"),
                     "--reference", str(reference)])
    assert code == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "Multi-instrument (full)" in out                  # the metric table vs the reference
    midi = tmp_path / "out" / "mix.mid"
    assert (tmp_path / "out" / "mix.png").read_bytes()[:4] == b"\x89PNG"
    # The file holds exactly what the library transcribes (same checkpoint, same audio).
    from mt3x.audio.io import read_audio

    transcriber = load_transcriber(workdir, batch_size=8)
    expected = transcriber.transcribe(read_audio(demo_mix, sample_rate=16000)[0]).note_sequence
    assert len(expected.notes) > 0, "the seeded model transcribes no notes: nothing compared"
    pm = pretty_midi.PrettyMIDI(str(midi))
    written = sorted((i.program, i.is_drum, n.pitch, n.start, n.end)
                     for i in pm.instruments for n in i.notes)
    wanted = sorted((0 if n.is_drum else n.program, n.is_drum, n.pitch, n.start_time, n.end_time)
                    for n in expected.notes)
    assert [w[:3] for w in written] == [w[:3] for w in wanted]
    np.testing.assert_allclose([w[3:] for w in written], [w[3:] for w in wanted], atol=5e-3)
    assert {(i.program, i.is_drum) for i in pm.instruments} == {
        (0 if n.is_drum else n.program, n.is_drum) for n in expected.notes}
    # The decoding-health line reports the library's counters for this file.
    result = transcriber.transcribe(read_audio(demo_mix, sample_rate=16000)[0])
    assert (f"decoding health: {result.invalid_events} invalid events, "
            f"{result.duplicate_notes} duplicate notes, {result.truncated_segments} segments "
            f"at the token limit") in out


def _track_notes(mix_path):
    from mt3x.data import read_track

    return read_track(mix_path.parent).note_sequence()


def test_cli_bad_checkpoints_fail_clearly(tmp_path_factory, tmp_path, demo_mix, capsys):
    workdir, _ = data.tiny_run(tmp_path_factory)
    out = str(tmp_path / "out")
    assert cli.main([str(demo_mix), "--checkpoint", str(tmp_path / "nope"), "--out", out]) == 2
    assert "does not exist" in capsys.readouterr().err
    partial = tmp_path / "partial"
    shutil.copytree(workdir, partial)
    for marker in (partial / "checkpoints").glob("*/commit_success.txt"):
        marker.unlink()
    assert cli.main([str(demo_mix), "--checkpoint", str(partial), "--out", out]) == 2
    assert "partial" in capsys.readouterr().err
    assert cli.main([str(demo_mix), "--checkpoint", str(workdir), "--out", out,
                     "--model_config", "small_cpu"]) == 2
    assert "does not match this model" in capsys.readouterr().err
    (partial / "mt3x_model.json").unlink()
    assert cli.main([str(demo_mix), "--checkpoint", str(partial), "--out", out]) == 2
    assert "--model_config" in capsys.readouterr().err


def test_cli_bad_audio_fails_clearly_and_good_files_still_get_written(tmp_path_factory, tmp_path,
                                                                      demo_mix, capsys):
    workdir, _ = data.tiny_run(tmp_path_factory)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really a wave file")
    short = tmp_path / "short.wav"
    soundfile.write(short, 0.5 * np.ones(800, np.float32), 16000)    # 0.05 s
    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros(16000, np.float32), 16000)
    other_mix = next(demo_mix.parent.parent.parent.glob("validation/Track*/mix.flac"))
    code = cli.main([str(broken), str(short), str(silent), str(demo_mix), str(other_mix),
                     str(tmp_path / "missing.flac"), "--checkpoint", str(workdir), "--out",
                     str(tmp_path / "out"), "--no_pianoroll"])
    err = capsys.readouterr().err
    assert code == 2
    assert "broken.wav" in err and "too short" in err and "silent" in err
    assert "missing.flac" in err
    # Both good files are written, under names made unique by their track folder.
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [f"{demo_mix.parent.name}_mix.mid", f"{other_mix.parent.name}_mix.mid"])
    with pytest.raises(TranscriptionError, match="too short"):
        load_transcriber(workdir).transcribe(np.ones(100, np.float32))

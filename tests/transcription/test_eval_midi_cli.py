"""mt3x-eval-midi: metric table, JSON and PNG outputs, and `error: ...` / exit 2 on bad MIDI."""

import json
import os
import subprocess
import sys

import note_seq
import pytest

from mt3x.cli import eval_midi
from mt3x.data.midi import read_midi_note_sequence
from mt3x.transcription import metrics


def _write_midi(path, notes, control_changes=()):
    ns = note_seq.NoteSequence(ticks_per_quarter=220)
    ns.tempos.add(qpm=120)
    for pitch, start, end, program, is_drum in notes:
        ns.notes.add(pitch=pitch, start_time=start, end_time=end, velocity=90, program=program,
                     is_drum=is_drum, instrument=9 if is_drum else {0: 0, 32: 1, 33: 2}[program])
    for time, number, value in control_changes:
        ns.control_changes.add(time=time, control_number=number, control_value=value,
                               instrument=0)
    ns.total_time = max(n.end_time for n in ns.notes)
    note_seq.sequence_proto_to_midi_file(ns, str(path))
    return path


REF = [(60, 0.0, 0.5, 0, False), (64, 0.5, 1.0, 0, False), (40, 0.0, 2.0, 33, False),
       (36, 0.25, 0.3, 0, True), (38, 0.75, 0.8, 0, True)]
EST = [(60, 0.0, 0.5, 0, False), (65, 0.5, 1.0, 0, False), (40, 0.0, 2.0, 32, False),
       (36, 0.26, 0.3, 0, True)]


def test_identical_files_score_one(tmp_path, capsys):
    ref = _write_midi(tmp_path / "ref.mid", REF)
    assert eval_midi.main([str(ref), str(ref)]) == 0
    out = capsys.readouterr().out
    assert "(5 notes)" in out
    for label in ("Onset", "Onset + offset", "Frame", "Multi-instrument (full)",
                  "Drum onset (full)"):
        row = next(line for line in out.splitlines() if line.startswith(label + "  "))
        assert row.split()[-3:] == ["1.0000"] * 3, row


def test_json_and_plot(tmp_path, capsys):
    ref = _write_midi(tmp_path / "ref.mid", REF)
    est = _write_midi(tmp_path / "est.mid", EST)
    out_json, out_png = tmp_path / "m" / "scores.json", tmp_path / "roll.png"
    assert eval_midi.main([str(ref), str(est), "--json", str(out_json),
                           "--plot", str(out_png)]) == 0
    payload = json.loads(out_json.read_text())
    expected = metrics.transcription_metrics(read_midi_note_sequence(ref),
                                             read_midi_note_sequence(est))
    assert payload["metrics"] == pytest.approx(expected)
    # Hand check: non-drum onsets 60 and 40 match of 3 -> 2/3; program 33 vs 32 differs only
    # at full granularity.
    assert payload["metrics"]["Onset F1"] == pytest.approx(2 / 3)
    assert payload["metrics"]["Onset + offset + program F1 (midi_class)"] > \
        payload["metrics"]["Onset + offset + program F1 (full)"]
    assert payload["metrics"]["Drum onset recall (full)"] == pytest.approx(0.5)
    tracks = {(t["program"], t["is_drum"]): t for t in payload["tracks"]}
    assert tracks[(0, False)]["false_positives"] == 1 and tracks[(0, False)]["true_positives"] == 1
    assert tracks[(33, False)]["false_negatives"] == 1
    assert out_png.read_bytes()[:4] == b"\x89PNG"
    assert "wrote" in capsys.readouterr().out


def test_sustain_pedal_applied_unless_disabled(tmp_path):
    ref = _write_midi(tmp_path / "ref.mid", [(60, 0.0, 0.2, 0, False)],
                      control_changes=[(0.1, 64, 127), (1.0, 64, 0)])
    assert read_midi_note_sequence(ref).notes[0].end_time == pytest.approx(1.0)
    assert read_midi_note_sequence(ref, sustain=False).notes[0].end_time == \
        pytest.approx(0.2)


def test_unreadable_midi_exits_2(tmp_path, capsys):
    good = _write_midi(tmp_path / "ref.mid", REF)
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"MThd this is not a midi file")
    assert eval_midi.main([str(good), str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bad.mid" in err and "Traceback" not in err
    assert eval_midi.main([str(tmp_path / "missing.mid"), str(good)]) == 2
    assert "missing.mid: no such MIDI file" in capsys.readouterr().err


def test_console_script_subprocess(tmp_path):
    """The real entry point: a corrupt file gives one `error:` line and exit status 2."""
    ref = _write_midi(tmp_path / "ref.mid", REF)
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"\x00" * 10)
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    fail = subprocess.run([sys.executable, "-m", "mt3x.cli.eval_midi", str(ref), str(bad)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert fail.returncode == 2
    assert fail.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "bad.mid" in fail.stderr and "Traceback" not in fail.stderr

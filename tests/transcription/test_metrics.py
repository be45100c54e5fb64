"""mt3x.transcription.metrics: 1.0 on identical sequences, hand-computed values on a small case, MT3's
frame_metrics golden case, sklearn parity for frame P/R/F1, averaging; and the piano-roll plot."""

import note_seq
import numpy as np
import pytest
from PIL import Image

from mt3x.transcription import metrics

from mt3x.transcription import pianoroll


def _ns(notes):
    ns = note_seq.NoteSequence(ticks_per_quarter=220)
    for pitch, start, end, *rest in notes:
        program = rest[0] if rest else 0
        is_drum = rest[1] if len(rest) > 1 else False
        ns.notes.add(pitch=pitch, start_time=start, end_time=end, velocity=100,
                     program=program, is_drum=is_drum)
    ns.total_time = max([n.end_time for n in ns.notes] + [0.0])
    return ns


REF = [(60, 0.0, 1.0), (62, 1.0, 2.0), (64, 2.0, 3.0), (65, 3.0, 4.0), (67, 6.0, 7.0),
       (36, 0.5, 0.6, 0, True), (38, 1.0, 1.1, 0, True)]
EST = [(60, 0.0, 1.0, 1),          # exact, but program 1
       (62, 1.03, 1.4),            # onset within 50 ms, offset 0.6 s early
       (63, 2.0, 3.0),             # wrong pitch
       (70, 5.0, 6.0),             # extra note
       (67, 6.015, 7.0),           # onset 15 ms late, offset exact
       (36, 0.52, 0.6, 0, True),   # drum hit 20 ms late
       (42, 1.0, 1.1, 0, True)]    # wrong drum


def test_identical_sequences_score_one():
    ns = _ns(REF + [(60, 2.5, 2.9, 33), (48, 0.0, 4.0, 40)])
    scores = metrics.transcription_metrics(ns, ns)
    f1_keys = [k for k in scores if "F1" in k]
    # agnostic onset, note groups, frame, 3 x 3 program-aware, sweep
    assert len(f1_keys) == 1 + 4 + 1 + 9 + 6
    for key in f1_keys + [k for k in scores if "precision" in k or "recall" in k]:
        assert scores[key] == pytest.approx(1.0), key


def test_agnostic_onset_f1_merges_programs_and_drums():
    s = metrics.transcription_metrics(_ns(REF), _ns(EST))
    # All 7 notes per side in one track, programs ignored: 60 (program 1), 62 (30 ms late),
    # 67 (15 ms late) and the drum 36 (20 ms late) match; 63, 70 and drum 42 do not.
    assert (s["Agnostic onset precision"], s["Agnostic onset recall"],
            s["Agnostic onset F1"]) == pytest.approx((4 / 7,) * 3)
    # 60 ms late is outside the 50 ms tolerance; a duplicate on another program is a false
    # positive (one reference note can match only once).
    late = metrics.agnostic_onset_scores(_ns([(60, 0.0, 1.0)]), _ns([(60, 0.06, 1.0)]))
    assert late["Agnostic onset F1"] == 0.0
    doubled = metrics.agnostic_onset_scores(_ns([(60, 0.0, 1.0)]),
                                            _ns([(60, 0.0, 1.0, 0), (60, 0.01, 0.5, 40)]))
    assert (doubled["Agnostic onset precision"], doubled["Agnostic onset recall"]) == \
        pytest.approx((0.5, 1.0))
    assert doubled["Agnostic onset F1"] == pytest.approx(2 / 3)


def test_hand_computed_small_case():
    s = metrics.transcription_metrics(_ns(REF), _ns(EST))
    # 5 non-drum reference and estimated notes; onsets match for 60, 62, 67.
    assert (s["Onset precision"], s["Onset recall"], s["Onset F1"]) == pytest.approx((.6,) * 3)
    # offsets also within max(0.2 * duration, 50 ms): 60 and 67.
    assert s["Onset + offset F1"] == pytest.approx(0.4)
    assert s["Onset + offset + velocity F1"] == pytest.approx(0.4)  # equal velocities
    # Frames at 62.5 fps: ref 62+63+62+63+62 = 312 cells; est 62+23+62+63+62 = 272; 147 shared.
    assert s["Frame Precision"] == pytest.approx(147 / 272)
    assert s["Frame Recall"] == pytest.approx(147 / 312)
    assert s["Frame F1"] == pytest.approx(2 * 147 / (272 + 312))
    # Multi-instrument: full -> program-0 track P 1/4 (4 est), R 1/5; program-1 track P 0
    # (1 est); drums P = R = 1/2 (2 notes each). Sums 2/7 both ways.
    assert s["Onset + offset + program precision (full)"] == pytest.approx(2 / 7)
    assert s["Onset + offset + program recall (full)"] == pytest.approx(2 / 7)
    assert s["Onset + offset + program F1 (full)"] == pytest.approx(2 / 7)
    assert s["Nondrum onset + offset + program precision (full)"] == pytest.approx(0.2)
    assert s["Drum onset F1 (full)"] == pytest.approx(0.5)
    # flat and midi_class put program 1 with program 0: non-drum 2 of 5, drums 1 of 2.
    for g in ("flat", "midi_class"):
        assert s[f"Onset + offset + program F1 ({g})"] == pytest.approx(3 / 7)
        assert s[f"Nondrum onset + offset + program F1 ({g})"] == pytest.approx(0.4)
    # Tolerance sweep (onset + offset): the 15 ms-late onset only counts from 20 ms on.
    assert s["Onset + offset F1 (0.01)"] == pytest.approx(0.2)
    for tol in (0.02, 0.05, 0.1, 0.2, 0.5):
        assert s[f"Onset + offset F1 ({tol})"] == pytest.approx(0.4)


def test_onsets_only_and_track_specs():
    s = metrics.transcription_metrics(
        _ns(REF), _ns(EST), onsets_only=True,
        track_specs=[metrics.TrackSpec("Drums", 0, True), metrics.TrackSpec("Piano", 0)])
    assert "Onset + offset F1" not in s and "Onset + velocity F1" not in s
    assert s["Onset F1"] == pytest.approx(0.6)
    assert s["Drums/Onset F1"] == pytest.approx(0.5)
    assert "Drums/Onset + offset F1" not in s
    # Piano track = program 0 only: est has 4 notes there (60 moved to program 1).
    assert s["Piano/Onset precision"] == pytest.approx(2 / 4)
    assert s["Piano/Onset recall"] == pytest.approx(2 / 5)


def test_pianoroll_matches_pretty_midi_when_instruments_are_distinct():
    import pretty_midi
    ns = _ns(REF + [(60, 2.5, 2.52, 33), (48, 0.0, 4.0, 40)])
    for i, note in enumerate(ns.notes):
        note.instrument = {0: 0, 33: 1, 40: 2}[note.program] if not note.is_drum else 9
    ours = metrics.pianoroll(ns)
    extended = note_seq.NoteSequence()
    extended.CopyFrom(ns)
    metrics.extend_short_notes(extended)
    pm = note_seq.note_sequence_to_pretty_midi(extended)
    for inst in pm.instruments:
        inst.is_drum = False
    theirs = pm.get_piano_roll(fs=62.5)
    n = max(ours.shape[1], theirs.shape[1])
    np.testing.assert_array_equal(np.pad(ours, [(0, 0), (0, n - ours.shape[1])]),
                                  np.pad(theirs, [(0, 0), (0, n - theirs.shape[1])]))
    assert ours[60, int(2.5 * 62.5):int(2.55 * 62.5)].min() >= 100  # 20 ms note -> 50 ms


def test_frame_metrics_golden():
    ref = np.zeros((128, 5))
    est = np.zeros((128, 5))
    ref[10, 0:3] = 127
    est[10, 2:5] = 127
    p, r, _ = metrics.frame_metrics(ref, est, velocity_threshold=1)
    assert p == pytest.approx(1 / 3) and r == pytest.approx(1 / 3)


def test_frame_metrics_match_sklearn():
    from sklearn.metrics import precision_recall_fscore_support
    rng = np.random.default_rng(0)
    for n_ref, n_est in [(40, 40), (40, 55), (30, 10), (0, 5)]:
        ref = rng.integers(0, 60, size=(128, n_ref)) * (rng.random((128, n_ref)) < 0.1)
        est = rng.integers(0, 60, size=(128, n_est)) * (rng.random((128, n_est)) < 0.1)
        n = max(n_ref, n_est)
        ref_p = np.pad(ref, [(0, 0), (0, n - n_ref)]) > 30
        est_p = np.pad(est, [(0, 0), (0, n - n_est)]) > 0
        p, r, f, _ = precision_recall_fscore_support(ref_p.ravel(), est_p.ravel(),
                                                     labels=[True, False], zero_division=0)
        assert metrics.frame_metrics(ref, est, 30) == pytest.approx((p[0], r[0], f[0]))


def test_empty_sequences_do_not_crash():
    empty = _ns([])
    s = metrics.transcription_metrics(empty, empty)
    assert s["Onset F1"] == 0.0 and s["Frame F1"] == 0.0
    s = metrics.transcription_metrics(_ns(REF), empty)
    assert s["Onset recall"] == 0.0 and s["Onset + offset + program F1 (full)"] == 0.0


def test_average_metrics_is_plain_mean():
    avg = metrics.average_metrics([{"a": 1.0, "b": 0.0}, {"a": 0.5}, {"a": 0.0, "b": 1.0}])
    assert avg == {"a": pytest.approx(0.5), "b": pytest.approx(0.5)}
    pairs = [(_ns(REF), _ns(REF)), (_ns(REF), _ns(EST))]
    assert metrics.evaluate_pairs(pairs)["Onset F1"] == pytest.approx(0.8)


def test_format_table_lists_main_rows():
    table = metrics.format_table(metrics.transcription_metrics(_ns(REF), _ns(EST)))
    assert "Multi-instrument (full)" in table
    onset_row = next(line for line in table.splitlines() if line.startswith("Onset  "))
    assert onset_row.split()[-3:] == ["0.6000", "0.6000", "0.6000"]
    assert "Onset + offset @ 0.01 s" in table


def test_match_tracks_counts():
    tracks = {(t.program, t.is_drum): t for t in pianoroll.match_tracks(_ns(REF), _ns(EST))}
    assert set(tracks) == {(0, False), (1, False), (0, True)}
    piano = tracks[(0, False)]
    assert (piano.true_positives, piano.false_positives, piano.false_negatives) == (1, 3, 4)
    assert (tracks[(1, False)].false_positives, tracks[(1, False)].false_negatives) == (1, 0)
    drums = tracks[(0, True)]
    assert (drums.true_positives, drums.false_positives, drums.false_negatives) == (1, 1, 1)
    flat = {(t.program, t.is_drum): t for t in
            pianoroll.match_tracks(_ns(REF), _ns(EST), granularity="flat")}
    assert flat[(0, False)].true_positives == 2


def _red_pixels(path):
    img = np.asarray(Image.open(path).convert("RGB")).astype(int)
    red = np.array([0xd6, 0x27, 0x28])
    return int((np.abs(img - red).sum(-1) < 30).sum())


def test_plot_marks_false_positives(tmp_path):
    out = tmp_path / "roll.png"
    tracks = pianoroll.plot_transcription(_ns(REF), _ns(EST), out, title="case")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(tracks) == 3
    with Image.open(out) as img:
        assert img.size[1] > img.size[0] * 0.4  # three panels stacked
    clean = tmp_path / "clean.png"
    pianoroll.plot_transcription(_ns(REF), _ns(REF), clean)
    # Red = false positives; the legend swatch is red in both images.
    assert _red_pixels(out) > _red_pixels(clean) + 200
    assert [p.name for p in tmp_path.iterdir()] and not list(tmp_path.glob(".*tmp*"))

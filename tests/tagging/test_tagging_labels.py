"""Snippets and activity labels: exact rules on a hand-made Slakh track; energy vs MIDI on demo."""

from __future__ import annotations

import numpy as np
import pytest

from mt3x.data.slakh import read_split
from tagging import examples as examples_lib
from tagging.examples import (FOUR_STEM_GROUPING, GroupingError, InstrumentGrouping,
                              LabelConfig, build_examples, cut_snippets,
                              energy_activity, midi_activity, num_snippets,
                              track_examples)
from tagging.pipeline import label_agreement
from tests.tagging.conftest import SR, StemSpec, tone, tone_stem, write_slakh_track


def test_snippet_counts_and_cutting():
    assert [num_snippets(int(3.5 * SR), SR, 1.0, p) for p in ("pad", "half", "drop")] == [4, 4, 3]
    assert num_snippets(int(3.4 * SR), SR, 1.0, "half") == 3
    audio = np.arange(int(2.5 * SR), dtype=np.float32)
    snippets = cut_snippets(audio, SR)
    assert snippets.shape == (3, SR)
    np.testing.assert_array_equal(snippets[1], audio[SR:2 * SR])
    np.testing.assert_array_equal(snippets[2, :SR // 2], audio[2 * SR:])
    assert not snippets[2, SR // 2:].any()


def test_energy_rule_is_relative_to_the_loudest_snippet_with_an_absolute_floor():
    # Seconds 0-1 at 0 dB (relative), second 2 at -30 dB, second 3 at -50 dB, second 4 silent.
    gains = [1.0, 1.0, 10 ** (-30 / 20), 10 ** (-50 / 20), 0.0]
    audio = np.concatenate([g * tone(300.0, 1.0, 0.5) for g in gains])
    assert energy_activity(audio, SR, 5, threshold_db=-40.0).tolist() == [1, 1, 1, 0, 0]
    assert energy_activity(audio, SR, 5, threshold_db=-60.0).tolist() == [1, 1, 1, 1, 0]
    # A stem that is quiet throughout never plays, however loud its loudest snippet is relatively.
    assert not energy_activity(1e-5 * audio, SR, 5, threshold_db=-40.0, min_dbfs=-70.0).any()


def test_midi_rule_counts_sounding_time_per_snippet():
    # 50 ms in snippet 0, 20 ms in snippet 1.
    assert midi_activity([(0.95, 1.02, False)], 3, min_note_ms=50).tolist() == [1, 0, 0]
    # Overlapping notes count once: two identical 30 ms notes are 30 ms of sound.
    assert midi_activity([(1.2, 1.23, False)] * 2, 3, min_note_ms=50).tolist() == [0, 0, 0]
    # Consecutive short notes add up.
    notes = [(2.0 + 0.02 * i, 2.0 + 0.02 * i + 0.015, False) for i in range(4)]
    assert midi_activity(notes, 3, min_note_ms=50).tolist() == [0, 0, 1]
    # A drum hit with a nominal 10 ms duration counts as 100 ms.
    assert midi_activity([(0.5, 0.51, True)], 2, min_note_ms=50).tolist() == [1, 0]
    assert midi_activity([(0.5, 0.51, False)], 2, min_note_ms=50).tolist() == [0, 0]
    # Notes past the end are ignored.
    assert midi_activity([(5.0, 6.0, False)], 2).tolist() == [0, 0]


def test_groupings():
    assert InstrumentGrouping().group_of(33, False, "Bass") == "Bass"
    cases = [(0, False), (33, False), (0, True), (73, False), (26, False)]
    for spec in ("piano=0-7,guitar=24-31,bass=32-39,drums=drums,other=*", "4stem",
                 "piano;guitar;bass;drums;other=*"):
        grouping = InstrumentGrouping.parse(spec)
        assert [grouping.group_of(p, d, "") for p, d in cases] == [
            "piano", "bass", "drums", "other", "guitar"], spec
        assert InstrumentGrouping.from_json(grouping.to_json()) == grouping
    assert InstrumentGrouping.parse("4stem") == FOUR_STEM_GROUPING
    only = InstrumentGrouping.parse("low=32-39")
    assert only.group_of(33, False, "") == "low"
    assert only.group_of(0, False, "") is None and only.group_of(0, True, "") is None
    # the selectors separation has: Slakh class and stem name
    lead = InstrumentGrouping.parse("strings=class:Strings;lead=stem:S01")
    assert lead.group_of(40, False, "Strings") == "strings"
    assert lead.group_of(0, False, "Piano", "S01") == "lead"
    # taggers saved before the shared syntax still load, with the same groups
    old = {"kind": "programs", "ranges": [["piano", 0, 7], ["bass", 32, 39]], "drums": "drums",
           "other": "other"}
    assert [InstrumentGrouping.from_json(old).group_of(p, d, "") for p, d in cases] == [
        "piano", "bass", "drums", "other", "other"]
    for bad in ("violin", "piano=0-200", "piano=a-b", ""):
        with pytest.raises(GroupingError, match="inst_class"):
            InstrumentGrouping.parse(bad)


@pytest.fixture
def labels_track(tmp_path):
    """A 5-second track in Slakh layout: bass sounding 0-3 s, a pipe 2-5 s whose MIDI note ends at
    4.5 s, a rendered strings stem that is silent although its MIDI holds a note, and a piano stem
    with MIDI but no audio (audio_rendered: false)."""
    seconds = 5.0
    stems = [
        tone_stem(33, 35, seconds, start=0.0, stop=3.0, amplitude=0.4),
        StemSpec(73, [(90, 2.0, 4.5)], tone(1500.0, seconds, 0.2, start=2.0, stop=5.0)),
        StemSpec(40, [(67, 0.0, 5.0)], np.zeros(int(seconds * SR), np.float32)),
        StemSpec(0, [(67, 0.0, 5.0)], None),
    ]
    write_slakh_track(tmp_path, "train", "Track00001", stems)
    (track,) = read_split(tmp_path, "train")
    return track


def test_track_examples_label_matrices(labels_track):
    assert [(s.inst_class, s.audio_rendered) for s in labels_track.stems] == [
        ("Bass", True), ("Pipe", True), ("Strings", True), ("Piano", False)]
    examples = build_examples([labels_track], label_config=LabelConfig(threshold_db=-40.0))
    assert examples.instruments == ["Bass", "Pipe", "Strings"]   # Piano was not rendered
    assert examples.features.shape == (5, len(examples.feature_names))
    energy = examples.energy_labels.astype(int).T.tolist()
    midi = examples.midi_labels.astype(int).T.tolist()
    assert energy == [[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [0, 0, 0, 0, 0]]
    assert midi == [[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]
    assert examples.labels("both").astype(int).T.tolist()[2] == [0] * 5
    assert examples.present.all()
    assert examples.snippet_index.tolist() == [0, 1, 2, 3, 4]
    assert examples.track_ids.tolist() == ["Track00001"] * 5
    # Columns fixed by another split: unknown groups are dropped, absent ones stay all-off.
    other = build_examples([labels_track], instruments=["Drums", "Bass"])
    assert other.energy_labels[:, 0].sum() == 0 and not other.present[:, 0].any()
    assert other.energy_labels[:, 1].tolist() == [1, 1, 1, 0, 0]
    agreement = label_agreement(examples)
    assert agreement["agreement"] == pytest.approx(10 / 15)
    assert agreement["midi_only"] == pytest.approx(5 / 15)


def test_features_batched_across_tracks_equal_per_track_features(tmp_path, monkeypatch):
    # 2.6 s, 4 s and 1.2 s: 3 + 4 + 1 snippets ('half' keeps the 0.6 s end, drops the 0.2 s one).
    for i, seconds in enumerate([2.6, 4.0, 1.2]):
        write_slakh_track(tmp_path, "train", f"Track{i:05d}",
                          [tone_stem(33, 40 + 12 * i, seconds, start=0.0, stop=seconds)])
    tracks = read_split(tmp_path, "train")
    one_by_one = [track_examples(track)[0] for track in tracks]
    monkeypatch.setattr(examples_lib, "FEATURE_CHUNK_SNIPPETS", 4)   # flush mid-way, then at the end
    together = build_examples(tracks)
    assert together.track_ids.tolist() == ["Track00000"] * 3 + ["Track00001"] * 4 + ["Track00002"]
    assert together.snippet_index.tolist() == [0, 1, 2, 0, 1, 2, 3, 0]
    np.testing.assert_allclose(together.features, np.concatenate([e.features for e in one_by_one]),
                               rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(together.energy_labels,
                                  np.concatenate([e.energy_labels for e in one_by_one]))
    # Each track's centroid sits at its own tone (MIDI 40, 52, 64: 82, 165, 330 Hz).
    centroid = together.features[:, together.feature_names.index("centroid_hz")]
    np.testing.assert_allclose(centroid[[0, 3, 7]], [82.4, 164.8, 329.6], rtol=0.02)


# Measured on the demo fixture (seed 0): 0.8746 over 574 snippet x instrument cells (0.9026 over
# 1098 on the former 30-track, 8 s variant); every disagreement is 'energy on, MIDI off' (the 1 s
# release tail after the last note of a 6 s window). Asserted with a margin below the measurement.
DEMO_AGREEMENT_FLOOR = 0.80


def test_energy_and_midi_labels_agree_on_demo_data(demo_examples):
    rates = {split: label_agreement(ex) for split, ex in demo_examples.items()}
    cells = sum(r["cells"] for r in rates.values())
    overall = sum(r["agreement"] * r["cells"] for r in rates.values()) / cells
    print(f"energy/MIDI agreement on demo data: {overall:.4f} over {cells} cells; {rates}")
    assert cells > 50
    assert overall >= DEMO_AGREEMENT_FLOOR

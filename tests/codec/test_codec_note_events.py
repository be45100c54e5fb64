"""NoteSequence -> indexed events: magenta/mt3's note_sequences_test cases as golden values, plus
validation, sustain and overlap trimming."""

import note_seq
import numpy as np
import pytest

from mt3x.codec import (Event, NoteEncodingState, NoteSequenceError, apply_sustain,
                        drop_zero_length_notes, encode_and_index_events,
                        extract_target_sequence, note_encoding_state_to_events,
                        note_event_data_to_events, note_sequence_to_onsets,
                        note_sequence_to_onsets_and_offsets,
                        note_sequence_to_onsets_and_offsets_and_programs, prepare_note_sequence,
                        trim_overlapping_notes, validate_note_sequence)


def _ns(*notes):
    ns = note_seq.NoteSequence()
    for kw in notes:
        ns.notes.add(**kw)
    ns.total_time = max([n.end_time for n in ns.notes] + [0.0])
    return ns


def test_encode_and_index_onsets_golden(test_codec):
    ns = _ns(dict(start_time=1.0, end_time=1.1, pitch=61, velocity=100),
             dict(start_time=2.0, end_time=2.1, pitch=62, velocity=100),
             dict(start_time=3.0, end_time=3.1, pitch=63, velocity=100))
    frame_times = np.arange(0, 4, step=.001)
    times, values = note_sequence_to_onsets(ns)
    ix = encode_and_index_events(None, times, values, note_event_data_to_events, test_codec,
                                 frame_times)
    assert len(ix.event_start_indices) == len(ix.event_end_indices) == len(frame_times)
    expected = [1] * 100 + [162] + [1] * 100 + [163] + [1] * 100 + [164] + [1] * 100
    np.testing.assert_array_equal(ix.events, expected)
    assert (ix.event_start_indices[0], ix.event_end_indices[0]) == (0, 0)
    assert (ix.event_start_indices[1000], ix.event_end_indices[1000]) == (100, 100)
    assert (ix.event_start_indices[2000], ix.event_end_indices[2000]) == (201, 201)
    assert (ix.event_start_indices[3000], ix.event_end_indices[3000]) == (302, 302)
    assert (ix.event_start_indices[-1], ix.event_end_indices[-1]) == (402, 403)


def test_encode_and_index_velocity_golden(test_codec):
    ns = _ns(dict(start_time=1.0, end_time=3.0, pitch=61, velocity=1),
             dict(start_time=2.0, end_time=4.0, pitch=62, velocity=127))
    frame_times = np.arange(0, 4, step=.001)
    times, values = note_sequence_to_onsets_and_offsets(ns)
    ix = encode_and_index_events(None, times, values, note_event_data_to_events, test_codec,
                                 frame_times)
    expected = ([1] * 100 + [230, 162] + [1] * 100 + [356, 163] + [1] * 100 + [229, 162]
                + [1] * 100 + [229, 163])
    np.testing.assert_array_equal(ix.events, expected)
    assert (ix.event_start_indices[1000], ix.event_end_indices[1000]) == (100, 100)
    assert (ix.event_start_indices[2000], ix.event_end_indices[2000]) == (202, 202)
    assert (ix.event_start_indices[3000], ix.event_end_indices[3000]) == (304, 304)
    assert (ix.event_start_indices[-1], ix.event_end_indices[-1]) == (405, 408)


def test_encode_and_index_multitrack_with_state_golden(test_codec):
    ns = _ns(dict(start_time=0.0, end_time=1.0, pitch=37, velocity=127, is_drum=True),
             dict(start_time=1.0, end_time=3.0, pitch=61, velocity=127, program=0),
             dict(start_time=2.0, end_time=4.0, pitch=62, velocity=127, program=40))
    frame_times = np.arange(0, 4, step=.001)
    times, values = note_sequence_to_onsets_and_offsets_and_programs(ns)
    ix = encode_and_index_events(NoteEncodingState(), times, values, note_event_data_to_events,
                                 test_codec, frame_times, note_encoding_state_to_events)
    assert len(ix.state_event_indices) == len(frame_times)
    assert len(ix.events) == 414
    E = Event
    expected = ([E("velocity", 127), E("drum", 37)] + [E("shift", 1)] * 100
                + [E("program", 0), E("velocity", 127), E("pitch", 61)] + [E("shift", 1)] * 100
                + [E("program", 40), E("velocity", 127), E("pitch", 62)] + [E("shift", 1)] * 100
                + [E("program", 0), E("velocity", 0), E("pitch", 61)] + [E("shift", 1)] * 100
                + [E("program", 40), E("velocity", 0), E("pitch", 62)])
    np.testing.assert_array_equal(ix.events, [test_codec.encode_event(e) for e in expected])
    expected_state = [E("tie", 0), E("tie", 0), E("program", 0), E("pitch", 61), E("tie", 0),
                      E("program", 0), E("pitch", 61), E("program", 40), E("pitch", 62),
                      E("tie", 0), E("program", 40), E("pitch", 62), E("tie", 0)]
    np.testing.assert_array_equal(ix.state_events,
                                  [test_codec.encode_event(e) for e in expected_state])
    for frame, start, state in [(0, 0, 0), (1000, 102, 1), (2000, 205, 2), (3000, 308, 5),
                                (3999, 410, 10)]:
        assert ix.event_start_indices[frame] == start
        assert ix.state_event_indices[frame] == state
    assert ix.event_end_indices[-1] == len(expected)
    # Targets for frames 2000..2999 with their tie section (program 0, pitch 61 sounding).
    tie = test_codec.encode_event(E("tie", 0))
    targets = extract_target_sequence(ix, 2000, 3000, state_events_end_token=tie)
    head = [test_codec.encode_event(e) for e in (E("program", 0), E("pitch", 61), E("tie", 0))]
    np.testing.assert_array_equal(targets[:3], head)
    np.testing.assert_array_equal(targets[3:], ix.events[205:308])


def test_encode_and_index_last_token_alignment_golden(test_codec):
    ns = _ns(dict(start_time=0.0, end_time=0.1, pitch=60, velocity=100))
    frame_times = np.arange(0, 1.008, step=.008)
    times, values = note_sequence_to_onsets(ns)
    ix = encode_and_index_events(None, times, values, note_event_data_to_events, test_codec,
                                 frame_times)
    np.testing.assert_array_equal(ix.events, [161] + [1] * 101)
    assert (ix.event_start_indices[0], ix.event_end_indices[0]) == (0, 0)
    assert (ix.event_start_indices[125], ix.event_end_indices[125]) == (101, 102)


def test_empty_file_gets_empty_tie_section(test_codec):
    ix = encode_and_index_events(NoteEncodingState(), [], [], note_event_data_to_events,
                                 test_codec, np.arange(10) / 125, note_encoding_state_to_events)
    tie = test_codec.encode_event(Event("tie", 0))
    np.testing.assert_array_equal(extract_target_sequence(ix, 0, 10, tie), [tie] + [1] * 8)


@pytest.mark.parametrize("note, message", [
    (dict(pitch=128, start_time=0, end_time=1, velocity=10), "pitch must be in 0..127"),
    (dict(pitch=-1, start_time=0, end_time=1, velocity=10), "pitch must be in 0..127"),
    (dict(pitch=60, start_time=-0.5, end_time=1, velocity=10), "start_time must be >= 0"),
    (dict(pitch=60, start_time=1, end_time=1, velocity=10), "zero-length"),
    (dict(pitch=60, start_time=1, end_time=0.5, velocity=10), "zero-length or reversed"),
    (dict(pitch=60, start_time=0, end_time=1, velocity=0), "velocity 0"),
    (dict(pitch=60, start_time=0, end_time=1, velocity=10, program=130), "program 130"),
    (dict(pitch=60, start_time=0, end_time=float("inf"), velocity=10), "finite"),
])
def test_validation_errors(note, message):
    ns = _ns(dict(pitch=60, start_time=0, end_time=1, velocity=10), note)
    with pytest.raises(NoteSequenceError, match=message) as err:
        validate_note_sequence(ns, source="song.mid")
    assert "song.mid: note 1" in str(err.value)


def test_drop_zero_length_notes_counts():
    ns = _ns(dict(pitch=60, start_time=0, end_time=1, velocity=10),
             dict(pitch=61, start_time=1, end_time=1, velocity=10))
    out, dropped = drop_zero_length_notes(ns)
    assert dropped == 1 and [n.pitch for n in out.notes] == [60]
    validate_note_sequence(out)


def test_trim_overlapping_notes():
    ns = _ns(dict(pitch=60, start_time=0.0, end_time=2.0, velocity=10),
             dict(pitch=60, start_time=1.0, end_time=1.5, velocity=20),
             dict(pitch=60, start_time=1.0, end_time=3.0, velocity=30, program=5),  # other prog
             dict(pitch=62, start_time=0.5, end_time=0.7, velocity=40, is_drum=True),
             dict(pitch=62, start_time=0.5, end_time=0.6, velocity=50, is_drum=True))
    out = trim_overlapping_notes(ns)
    got = [(n.pitch, n.start_time, n.end_time, n.velocity) for n in out.notes]
    # The second drum at the same start trims the first to zero length: dropped.
    assert got == [(60, 0.0, 1.0, 10), (60, 1.0, 1.5, 20), (60, 1.0, 3.0, 30),
                   (62, 0.5, 0.6, 50)]
    assert len(ns.notes) == 5  # input untouched


def test_sustain_applied_and_control_changes_dropped():
    ns = _ns(dict(pitch=60, start_time=0.0, end_time=0.5, velocity=10),
             dict(pitch=64, start_time=1.0, end_time=1.2, velocity=10),
             dict(pitch=36, start_time=0.1, end_time=0.2, velocity=10, is_drum=True))
    ns.control_changes.add(time=0.2, control_number=64, control_value=127)
    ns.control_changes.add(time=2.0, control_number=64, control_value=0)
    ns.control_changes.add(time=0.3, control_number=7, control_value=90)
    out = apply_sustain(ns)
    assert [(n.pitch, n.end_time) for n in out.notes] == [(60, 2.0), (64, 2.0), (36, 0.2)]
    assert len(out.control_changes) == 0
    prepared = prepare_note_sequence(ns, is_training=False)
    assert [n.end_time for n in prepared.notes] == [2.0, 2.0, 0.2]
    unsustained = prepare_note_sequence(ns, is_training=False, sustain=False)
    assert [n.end_time for n in unsustained.notes] == [0.5, 1.2, 0.2]
    assert len(unsustained.control_changes) == 0

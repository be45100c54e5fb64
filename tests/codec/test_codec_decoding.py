"""Decoding tokens -> NoteSequence: magenta/mt3's note_sequences_test and metrics_utils_test
decoding cases as golden values (counts of invalid and dropped events included)."""

import numpy as np
import pytest

from mt3x.codec import (CodecError, NoteDecodingState, decode_events, decode_note_event,
                        decode_note_onset_event, flush_note_decoding_state, get_config,
                        tokens_to_note_sequence)


def _notes(ns):
    return [(round(n.start_time, 6), round(n.end_time, 6), n.pitch, n.velocity, n.program,
             n.is_drum, n.instrument) for n in ns.notes]


def _decode(tokens, codec, fn, start_time=0.0, max_time=None):
    state = NoteDecodingState()
    invalid, dropped = decode_events(state, tokens, start_time, max_time, codec, fn)
    ns = flush_note_decoding_state(state)
    return ns, invalid, dropped


@pytest.mark.parametrize("tokens, fn, start, max_time, notes, total, invalid, dropped", [
    # test_decode_note_sequence_events
    ([25, 161, 50, 162], "onset", 0, None,
     [(0.25, 0.26, 60, 100), (0.5, 0.51, 61, 100)], 0.51, 0, 0),
    # ..._onsets_only
    ([5, 161, 25, 162], "onset", 0, None,
     [(0.05, 0.06, 60, 100), (0.25, 0.26, 61, 100)], 0.26, 0, 0),
    # ..._velocity
    ([5, 356, 161, 25, 229, 161], "note", 0, None, [(0.05, 0.25, 60, 127)], 0.25, 0, 0),
    # ..._missing_offset
    ([5, 356, 161, 10, 161, 25, 229, 161], "note", 0, None,
     [(0.05, 0.10, 60, 127), (0.10, 0.25, 60, 127)], 0.25, 0, 0),
    # ..._invalid_tokens
    ([5, -1, 161, -2, 25, 162, 9999], "onset", 0, None,
     [(0.05, 0.06, 60, 100), (0.25, 0.26, 61, 100)], 0.26, 3, 0),
    # ..._allow_event_at_exactly_max_time
    ([161, 25, 162], "onset", 1.0, 1.25,
     [(1.0, 1.01, 60, 100), (1.25, 1.26, 61, 100)], 1.26, 0, 0),
    # ..._dropped_events
    ([5, 161, 30, 162], "onset", 1.0, 1.25, [(1.05, 1.06, 60, 100)], 1.06, 0, 2),
    # ..._invalid_events (velocity in onset-only decoding)
    ([25, 230, 50, 161], "onset", 0, None, [(0.5, 0.51, 60, 100)], 0.51, 1, 0),
])
def test_decode_golden(test_codec, tokens, fn, start, max_time, notes, total, invalid, dropped):
    fn = decode_note_onset_event if fn == "onset" else decode_note_event
    ns, n_invalid, n_dropped = _decode(tokens, test_codec, fn, start, max_time)
    assert [(a, b, p, v) for a, b, p, v, *_ in _notes(ns)] == notes
    assert round(ns.total_time, 6) == total
    assert (n_invalid, n_dropped) == (invalid, dropped)


def test_decode_multitrack_golden(test_codec):
    ns, invalid, dropped = _decode([5, 525, 356, 161, 15, 356, 394, 25, 525, 229, 161],
                                   test_codec, decode_note_event)
    assert _notes(ns) == [(0.15, 0.16, 37, 127, 0, True, 9), (0.05, 0.25, 60, 127, 40, False, 0)]
    assert (invalid, dropped) == (0, 0)


def _segments(*pairs):
    return [(start, np.array(tokens)) for start, tokens in pairs]


def test_event_predictions_onsets_golden(make_test_codec):
    codec = make_test_codec("pitch")
    res = tokens_to_note_sequence(
        _segments((0.0, [20, 160]), (0.4, [20, 161, 50, 162]), (0.8, [163, 20, 164])),
        codec, onsets_only=True)
    assert [(a, b, p, v) for a, b, p, v, *_ in _notes(res.note_sequence)] == [
        (0.2, 0.21, 59, 100), (0.6, 0.61, 60, 100), (0.8, 0.81, 62, 100), (1.0, 1.01, 63, 100)]
    assert round(res.note_sequence.total_time, 6) == 1.01
    assert (res.invalid_events, res.dropped_events) == (0, 2)


def test_event_predictions_offsets_golden(make_test_codec):
    codec = make_test_codec("pitch", "velocity")
    res = tokens_to_note_sequence(
        _segments((0.0, [20, 356, 160]), (0.4, [20, 292, 161]), (0.8, [20, 229, 160, 161])),
        codec)
    assert _notes(res.note_sequence) == [(0.2, 1.0, 59, 127, 0, False, 0),
                                         (0.6, 1.0, 60, 63, 0, False, 0)]
    assert (res.invalid_events, res.dropped_events) == (0, 0)


def test_event_predictions_multitrack_golden(make_test_codec):
    codec = make_test_codec("pitch", "velocity", "drum", "program")
    res = tokens_to_note_sequence(
        _segments((0.0, [20, 517, 356, 160]), (0.4, [20, 356, 399]),
                  (0.8, [20, 517, 229, 160])), codec)
    assert _notes(res.note_sequence) == [(0.6, 0.61, 42, 127, 0, True, 9),
                                         (0.2, 1.0, 59, 127, 32, False, 0)]
    assert (res.invalid_events, res.dropped_events) == (0, 0)


def test_event_predictions_multitrack_ties_golden(make_test_codec):
    codec = make_test_codec("pitch", "velocity", "drum", "program", "tie")
    res = tokens_to_note_sequence(
        # segments given out of order: they are sorted by start time
        _segments((0.8, [613]),                     # nothing tied: the active note ends
                  (0.0, [613, 20, 517, 356, 160]),  # empty tie section
                  (0.4, [517, 160, 613, 20, 356, 399])),  # note tied over
        codec, use_ties=True)
    assert _notes(res.note_sequence) == [(0.6, 0.61, 42, 127, 0, True, 9),
                                         (0.2, 0.8, 59, 127, 32, False, 0)]
    assert round(res.note_sequence.total_time, 6) == 0.8
    assert (res.invalid_events, res.dropped_events) == (0, 0)


def test_impossible_orders_are_counted_not_raised():
    cfg = get_config("mt3")
    c = cfg.codec
    e = c.encode
    tokens = [e("tie", 0),                     # ok: closes the (empty) tie section
              e("tie", 0),                     # tie outside a tie section
              e("program", 3), e("velocity", 0), e("pitch", 60),  # note-off of a silent note
              e("drum", 36),                   # drum with velocity 0
              e("velocity", 1), e("pitch", 60), 50, e("velocity", 0), e("pitch", 60),
              20, e("velocity", 1), e("pitch", 61)]  # back in time: both events invalid
    res = tokens_to_note_sequence([(0.0, tokens)], cfg)
    assert res.invalid_events == 5
    assert _notes(res.note_sequence) == [(0.0, 0.5, 60, 127, 3, False, 0)]


def test_model_ids_and_bad_tokens():
    cfg = get_config("mt3")
    c = cfg.codec
    codec_tokens = [c.encode("tie", 0), c.encode("program", 0), c.encode("velocity", 1),
                    c.encode("pitch", 60), 100, c.encode("velocity", 0), c.encode("pitch", 60)]
    ids = list(cfg.vocabulary.encode(codec_tokens))
    # PAD, UNK, an extra id and a too-large id are invalid; everything after EOS is ignored.
    ids = ids[:4] + [0, 2, 1400, 99999] + ids[4:] + [1, 5, 6, 7]
    res = tokens_to_note_sequence([(0.0, ids)], cfg, from_model_ids=True)
    assert _notes(res.note_sequence) == [(0.0, 1.0, 60, 127, 0, False, 0)]
    assert (res.invalid_events, res.dropped_events) == (4, 0)
    with pytest.raises(CodecError, match="start time"):
        tokens_to_note_sequence([(-1.0, ids)], cfg)
    with pytest.raises(CodecError, match="start time"):
        tokens_to_note_sequence([(float("nan"), ids)], cfg)


def test_start_times_rounded_down_to_step():
    cfg = get_config("mt3")
    c = cfg.codec
    tokens = [c.encode("tie", 0), 3, c.encode("program", 0), c.encode("velocity", 1),
              c.encode("pitch", 60), 10, c.encode("velocity", 0), c.encode("pitch", 60)]
    res = tokens_to_note_sequence([(2.048, tokens)], cfg)  # 256 frames @ 125 fps
    assert _notes(res.note_sequence) == [(2.07, 2.14, 60, 127, 0, False, 0)]
    res = tokens_to_note_sequence([(0.4, tokens)], cfg)  # 0.4 stays 0.4 (float-safe floor)
    assert _notes(res.note_sequence)[0][:2] == (0.43, 0.5)

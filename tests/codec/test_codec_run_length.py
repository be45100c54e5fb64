"""Run-length shifts, redundant state removal and stream merging: magenta/mt3's
run_length_encoding_test cases as golden values, absolute-shift and error cases, and the
vectorised / grouped implementations against straightforward token-by-token loops."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mt3x.codec import (CodecError, get_config, merge_run_length_encoded_targets,
                        remove_redundant_state_changes, run_length_encode_shifts)


def test_remove_redundant_state_changes_golden(test_codec):
    tokens = [3, 525, 356, 161, 2, 525, 356, 161, 355, 394]
    out = remove_redundant_state_changes(tokens, test_codec, ["velocity", "program"])
    np.testing.assert_array_equal(out, [3, 525, 356, 161, 2, 161, 355, 394])


def test_run_length_encode_shifts_golden(test_codec):
    np.testing.assert_array_equal(
        run_length_encode_shifts([1, 1, 1, 161, 1, 1, 1, 162, 1, 1, 1], test_codec),
        [3, 161, 6, 162])


def test_run_length_encode_beyond_max_golden(test_codec):
    np.testing.assert_array_equal(
        run_length_encode_shifts([1] * 202 + [161, 1, 1, 1], test_codec), [100, 100, 2, 161])


def test_run_length_encode_simultaneous_golden(test_codec):
    np.testing.assert_array_equal(
        run_length_encode_shifts([1, 1, 1, 161, 162, 1, 1, 1], test_codec), [3, 161, 162])


def test_run_length_shifts_are_absolute(test_codec):
    # Events after 2 s and 2.5 s, then at 3.5 s: counts from the segment start, split at 100.
    tokens = [161] + [1] * 200 + [162] + [1] * 50 + [163] + [1] * 100 + [164]
    np.testing.assert_array_equal(run_length_encode_shifts(tokens, test_codec),
                                  [161, 100, 100, 162, 100, 100, 50, 163, 100, 100, 100, 50,
                                   164])
    assert run_length_encode_shifts([], test_codec).shape == (0,)
    with pytest.raises(CodecError, match="negative"):
        run_length_encode_shifts([1, -3], test_codec)


def test_merge_run_length_encoded_targets_golden(test_codec):
    targets = np.array([[3, 161, 162, 5, 163],
                        [160, 164, 3, 165, 0]])
    np.testing.assert_array_equal(merge_run_length_encoded_targets(targets, test_codec),
                                  [160, 164, 3, 161, 162, 165, 5, 163])
    # Ragged lists give the same result as the zero-padded array.
    np.testing.assert_array_equal(
        merge_run_length_encoded_targets([[3, 161, 162, 5, 163], [160, 164, 3, 165]],
                                         test_codec),
        [160, 164, 3, 161, 162, 165, 5, 163])


def test_redundant_state_on_mt3_codec():
    c = get_config("mt3").codec
    prog0, vel1, tie = c.encode("program", 0), c.encode("velocity", 1), c.encode("tie", 0)
    p60, p62 = c.encode("pitch", 60), c.encode("pitch", 62)
    tokens = [prog0, p60, prog0, p62, tie, prog0, vel1, p60, 5, prog0, vel1, p62]
    np.testing.assert_array_equal(remove_redundant_state_changes(tokens, c),
                                  [prog0, p60, p62, tie, vel1, p60, 5, p62])


# ------------------------------------------------------------------ MT3 codec goldens (pipeline)

MT3_CODEC = get_config("mt3").codec
P60, P62 = MT3_CODEC.encode("pitch", 60), MT3_CODEC.encode("pitch", 62)


def test_run_length_encode_mt3_codec_golden():
    tokens = [P60, 1, 1, 1, P62, 1, P60, P62, 1, 1]
    # Absolute step counts since the chunk start; trailing shifts dropped.
    np.testing.assert_array_equal(run_length_encode_shifts(tokens, MT3_CODEC),
                                  [P60, 3, P62, 4, P60, P62])
    np.testing.assert_array_equal(run_length_encode_shifts([1] * 2500 + [P60], MT3_CODEC),
                                  [1000, 1000, 500, P60])


def test_merge_combines_tie_sections_of_all_streams():
    c = MT3_CODEC
    p, g = (lambda v: c.encode("pitch", v)), (lambda v: c.encode("program", v))
    tie, vel, drum = c.encode("tie", 0), c.encode("velocity", 1), c.encode("drum", 36)
    first = np.array([g(0), p(60), tie, 5, g(0), vel, p(62)], np.int32)
    second = np.array([g(0), p(55), g(33), p(40), tie, 3, vel, drum, 0, 0], np.int32)
    merged = merge_run_length_encoded_targets([first, second], c, combine_tie_sections=True)
    np.testing.assert_array_equal(merged, [g(0), p(55), g(0), p(60), g(33), p(40), tie,
                                           3, vel, drum, 5, g(0), vel, p(62)])
    # No stream with a tie section (or a codec without `tie`): no section is written.
    assert tie not in merge_run_length_encoded_targets([first[3:], second[5:]], c,
                                                       combine_tie_sections=True)
    ismir = get_config("ismir2021").codec
    np.testing.assert_array_equal(
        merge_run_length_encoded_targets([[5, 1200], [3, 1201]], ismir, combine_tie_sections=True),
        [3, 1201, 5, 1200])


# ------------------------------------------------------------------ properties: reference loops


def reference_run_length_encode(tokens: list[int], max_shift: int) -> list[int]:
    """Token by token: count shifts; before an event, write the count if it moved."""
    out, steps, written = [], 0, 0
    for token in tokens:
        if token <= max_shift:
            steps += 1
            continue
        if steps > written:
            remaining = steps
            while remaining > max_shift:
                out.append(max_shift)
                remaining -= max_shift
            out.append(remaining)
            written = steps
        out.append(token)
    return out


def reference_merge(tracks: list[list[int]], max_shift: int) -> list[int]:
    """MT3's merge, token by token: each round takes the last track still at step zero, else
    the track whose next shift is smallest (the first on ties), and copies up to its next shift
    (without that shift when it equals the previous step). 0 or the end stops a track."""
    offsets = [0] * len(tracks)
    is_shift = lambda t: 0 <= t <= max_shift  # noqa: E731
    current, out = 0, []
    while True:
        best_step, best = max_shift + 1, -1
        for i, track in enumerate(tracks):
            if offsets[i] >= len(track) or track[offsets[i]] == 0:
                continue
            token = track[offsets[i]]
            if not is_shift(token):
                best_step, best = 0, i
            elif token < best_step:
                best_step, best = token, i
        if best < 0:
            return out
        track = tracks[best]
        start = offsets[best] + (1 if best_step == current and best_step > 0 else 0)
        end = start + 1
        while end < len(track) and not is_shift(track[end]):
            end += 1
        out += track[start:end]
        current, offsets[best] = best_step, end


EVENTS = [161, 162, 300, 355, 394, 525]   # pitch, velocity, drum, program ids of the test codec
# The `test_codec` fixture is an immutable codec: sharing it between examples is safe.
STATELESS_FIXTURE = [HealthCheck.function_scoped_fixture]


@settings(max_examples=150, deadline=None, suppress_health_check=STATELESS_FIXTURE)
@given(tokens=st.lists(st.one_of(st.just(1), st.just(1), st.sampled_from(EVENTS),
                                 st.integers(0, 100)), max_size=300),
       long_prefix=st.integers(0, 3))
def test_run_length_encode_equals_reference_loop(tokens, long_prefix, test_codec):
    tokens = [1] * (70 * long_prefix) + tokens   # counts past max_shift_steps (100)
    np.testing.assert_array_equal(run_length_encode_shifts(np.asarray(tokens, np.int32),
                                                           test_codec),
                                  reference_run_length_encode(tokens, 100))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([1, 1, 1, P60, MT3_CODEC.encode("velocity", 1),
                                 MT3_CODEC.encode("program", 5), MT3_CODEC.encode("tie", 0),
                                 MT3_CODEC.encode("drum", 36)]), max_size=300),
       st.integers(0, 2))
def test_run_length_encode_mt3_equals_reference_loop(tokens, long_prefix):
    tokens = [1] * (600 * long_prefix) + tokens
    np.testing.assert_array_equal(run_length_encode_shifts(np.asarray(tokens, np.int32),
                                                           MT3_CODEC),
                                  reference_run_length_encode(tokens, 1000))


@settings(max_examples=200, deadline=None, suppress_health_check=STATELESS_FIXTURE)
@given(tracks=st.lists(st.lists(st.one_of(st.integers(0, 100), st.sampled_from(EVENTS)),
                                max_size=25), min_size=1, max_size=5))
def test_merge_equals_reference_loop_on_any_streams(tracks, test_codec):
    # Any streams, also malformed ones (repeated or falling shifts, zeros inside): MT3's quirks.
    np.testing.assert_array_equal(merge_run_length_encoded_targets(tracks, test_codec),
                                  reference_merge(tracks, 100))
    padded = np.zeros([len(tracks), max(map(len, tracks)) + 1], np.int32)
    for i, t in enumerate(tracks):
        padded[i, :len(t)] = t
    np.testing.assert_array_equal(merge_run_length_encoded_targets(padded, test_codec),
                                  reference_merge(padded.tolist(), 100))


@settings(max_examples=60, deadline=None, suppress_health_check=STATELESS_FIXTURE)
@given(tracks=st.lists(st.lists(st.tuples(st.integers(0, 300), st.sampled_from(EVENTS[:3])),
                                max_size=12), min_size=1, max_size=4))
def test_merge_of_encoded_streams_is_in_time_order(tracks, test_codec):
    # Streams from run_length_encode_shifts (steps past max_shift_steps included).
    streams, timed = [], []
    for notes in tracks:
        single_step, step = [], 0
        for note_step, event in sorted(notes):
            single_step += [1] * (note_step - step) + [event]
            step = note_step
            timed.append((note_step, event))
        streams.append(run_length_encode_shifts(single_step, test_codec))
    merged = merge_run_length_encoded_targets(streams, test_codec)
    np.testing.assert_array_equal(merged, reference_merge([s.tolist() for s in streams], 100))
    if all(step <= 100 for step, _ in timed):
        # One shift token per step: shifts strictly increase, events keep their times.
        shifts, out, step = merged[merged <= 100], [], 0
        assert np.all(np.diff(shifts) > 0)
        for token in merged.tolist():
            if token <= 100:
                step = token
            else:
                out.append((step, token))
        assert sorted(out) == sorted(timed)

"""Run-length shifts, redundant state removal and stream merging: magenta/mt3's
run_length_encoding_test cases as golden values, plus absolute-shift and error cases."""

import numpy as np
import pytest

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

"""Shared fixtures for the codec tests: the codec layout magenta/mt3's own unit tests use."""

import pytest

from mt3x.codec import Codec, EventRange

_RANGES = {
    "pitch": EventRange("pitch", 0, 127),
    "velocity": EventRange("velocity", 0, 127),
    "drum": EventRange("drum", 0, 127),
    "program": EventRange("program", 0, 127),
    "tie": EventRange("tie", 0, 0),
}


def _make(*types: str) -> Codec:
    types = types or ("pitch", "velocity", "drum", "program", "tie")
    return Codec(max_shift_steps=100, steps_per_second=100,
                 event_ranges=[_RANGES[t] for t in types])


@pytest.fixture
def make_test_codec():
    """Factory: MT3's test codec (100 steps/s, shifts <= 100) with the named ranges in order."""
    return _make


@pytest.fixture
def test_codec() -> Codec:
    """MT3's test codec: shift 0..100, pitch, velocity 0..127, drum, program, tie."""
    return _make()

"""The event codec: typed events <-> contiguous integer indices (MT3's `event_codec`).

Event ranges are laid end to end; the `shift` range always comes first and starts at index 0, so
an index `i` with `0 <= i <= max_shift_steps` is a time shift of `i` steps. An event's index is the
offset of its range plus `value - min_value`. Codec indices are what the preprocessing works on;
the model sees `codec index + 3` (see `mt3x.codec.vocabulary.TokenVocabulary`).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from mt3x.errors import Mt3xError


class CodecError(Mt3xError):
    """An event, event index or token sequence the codec cannot represent."""


@dataclasses.dataclass(frozen=True)
class EventRange:
    """A block of the vocabulary: event `type` with integer values `min_value..max_value`."""

    type: str
    min_value: int
    max_value: int


@dataclasses.dataclass(frozen=True)
class Event:
    """One event: `type` (e.g. 'pitch') and its integer `value`."""

    type: str
    value: int


class Codec:
    """Maps `Event`s to indices and back; `shift` (0..max_shift_steps) is always the first range.

    Args:
      max_shift_steps: largest shift a single token can hold (MT3: 1000 = 10 s at 100 steps/s).
      steps_per_second: time resolution of shifts (MT3: 100, i.e. 10 ms steps).
      event_ranges: the other event types, in vocabulary order.
    """

    def __init__(self, max_shift_steps: int, steps_per_second: float,
                 event_ranges: Sequence[EventRange]):
        if max_shift_steps < 1:
            raise CodecError(f"max_shift_steps must be >= 1, got {max_shift_steps}")
        if steps_per_second <= 0:
            raise CodecError(f"steps_per_second must be > 0, got {steps_per_second}")
        self.steps_per_second = steps_per_second
        self._shift_range = EventRange("shift", 0, int(max_shift_steps))
        self._event_ranges: tuple[EventRange, ...] = (self._shift_range, *event_ranges)
        names = [er.type for er in self._event_ranges]
        if len(names) != len(set(names)):
            raise CodecError(f"event types must be unique (shift is implicit), got {names}")
        self._offsets: dict[str, int] = {}
        offset = 0
        for er in self._event_ranges:
            if er.max_value < er.min_value:
                raise CodecError(f"event range {er.type!r}: max_value < min_value")
            self._offsets[er.type] = offset
            offset += er.max_value - er.min_value + 1
        self._num_classes = offset
        self._ranges_by_type = {er.type: er for er in self._event_ranges}

    # -- sizes and ranges -------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        """Number of codec indices (all ranges, shift included)."""
        return self._num_classes

    @property
    def max_shift_steps(self) -> int:
        return self._shift_range.max_value

    @property
    def event_ranges(self) -> tuple[EventRange, ...]:
        """All ranges in vocabulary order, the implicit `shift` range first."""
        return self._event_ranges

    def has_event_type(self, event_type: str) -> bool:
        return event_type in self._offsets

    def is_shift_event_index(self, index: int) -> bool:
        return 0 <= index <= self._shift_range.max_value

    def event_type_range(self, event_type: str) -> tuple[int, int]:
        """`(first_index, last_index)` (inclusive) of an event type."""
        er = self._range(event_type)
        offset = self._offsets[event_type]
        return offset, offset + er.max_value - er.min_value

    # -- encode / decode --------------------------------------------------------------------------
    def encode_event(self, event: Event) -> int:
        """Index of `event`; raises CodecError for an unknown type or a value out of range."""
        return self.encode(event.type, event.value)

    def encode(self, event_type: str, value: int) -> int:
        """Index of the event `(event_type, value)` (fast path of `encode_event`)."""
        er = self._range(event_type)
        if not er.min_value <= value <= er.max_value:
            raise CodecError(
                f"event value {value} is not within valid range [{er.min_value}, "
                f"{er.max_value}] for type {event_type!r}")
        return self._offsets[event_type] + int(value) - er.min_value

    def decode_event_index(self, index: int) -> Event:
        """The `Event` at `index`; raises CodecError when `index` is outside [0, num_classes)."""
        index = int(index)
        if 0 <= index < self._num_classes:
            for er in self._event_ranges:
                offset = self._offsets[er.type]
                if index <= offset + er.max_value - er.min_value:
                    return Event(er.type, er.min_value + index - offset)
        raise CodecError(f"unknown event index {index}: expected 0 <= index < "
                         f"{self._num_classes}")

    def _range(self, event_type: str) -> EventRange:
        try:
            return self._ranges_by_type[event_type]
        except KeyError:
            raise CodecError(f"unknown event type {event_type!r}; this codec has "
                             f"{[er.type for er in self._event_ranges]}") from None

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Codec) and self.steps_per_second == other.steps_per_second
                and self._event_ranges == other._event_ranges)

    def __hash__(self) -> int:
        return hash((self.steps_per_second, self._event_ranges))

    def __repr__(self) -> str:
        ranges = ", ".join(f"{er.type}[{er.min_value}..{er.max_value}]"
                           for er in self._event_ranges)
        return f"Codec(steps_per_second={self.steps_per_second}, {ranges})"

"""Vectorised numpy operations on MT3 event-id arrays, as the training pipeline applies them.

All functions here are pure and work on codec event ids (`int32[n]`, before the +3 shift of
model ids), described by a `TokenLayout` (the id ranges of one codec). They reproduce the
behaviour of magenta/mt3's TensorFlow/autograph loops (run_length_encoding.py, mixing.py) with
numpy array operations, so a 256-frame example costs microseconds, not the milliseconds of a
per-token graph loop. (Program mapping and redundant-state removal are used from `mt3x.codec`.)

Token conventions (MT3):
- Before run-length encoding a target holds one `shift` token of value 1 per 10 ms step.
- After run-length encoding, a shift token holds the ABSOLUTE number of steps since the start of
  the segment; counts above `max_shift_steps` are written as several shift tokens whose values
  add up to the count. Trailing shifts are dropped.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

__all__ = [
    "TokenLayout",
    "layout_from_codec",
    "extract_target_sequence",
    "run_length_encode_shifts",
    "merge_run_length_encoded_targets",
]

@dataclasses.dataclass(frozen=True)
class TokenLayout:
    """Inclusive codec-id ranges of the event types the pipeline needs (one MT3 codec).

    Attributes:
      shift: (first, last) id of `shift` events; id `first + v` is a shift of v steps.
      pitch, velocity, program, drum: (first, last) ids of those event types; velocity id
        `first + 0` is the note-off bin.
      tie: id of the `tie` event, or None when the codec has no tie event.
      steps_per_second: time resolution of shifts (100 for MT3).
      num_classes: number of codec ids.
    """

    shift: tuple[int, int]
    pitch: tuple[int, int]
    velocity: tuple[int, int]
    program: tuple[int, int]
    drum: tuple[int, int]
    tie: int | None
    steps_per_second: int
    num_classes: int

    @property
    def max_shift_steps(self) -> int:
        """Largest step count one shift token can hold (1000 for MT3)."""
        return self.shift[1] - self.shift[0]

    def is_shift(self, tokens: np.ndarray) -> np.ndarray:
        """bool[n]: which tokens are shift events."""
        return (tokens >= self.shift[0]) & (tokens <= self.shift[1])


def layout_from_codec(codec) -> TokenLayout:
    """Reads the id ranges from a codec exposing `event_type_range(name) -> (lo, hi)`.

    Works with mt3x.codec's Codec and with magenta/mt3's `event_codec.Codec` (same method).
    """

    def rng(name: str) -> tuple[int, int]:
        lo, hi = codec.event_type_range(name)
        return int(lo), int(hi)

    try:
        tie = rng("tie")[0]
    except (ValueError, KeyError):
        tie = None
    return TokenLayout(
        shift=rng("shift"),
        pitch=rng("pitch"),
        velocity=rng("velocity"),
        program=rng("program"),
        drum=rng("drum"),
        tie=tie,
        steps_per_second=int(codec.steps_per_second),
        num_classes=int(codec.num_classes),
    )


def extract_target_sequence(
    targets: np.ndarray,
    event_start_indices: np.ndarray,
    event_end_indices: np.ndarray,
    state_events: np.ndarray | None = None,
    state_event_indices: np.ndarray | None = None,
    tie_id: int | None = None,
) -> np.ndarray:
    """Cuts the events of a chunk of frames out of a whole-file event array.

    Args:
      targets: int32[events] single-step event ids of the whole file (or cached chunk).
      event_start_indices, event_end_indices: int32[frames] of the selected frames (first,
        last frame used).
      state_events, state_event_indices: when `tie_id` is given, the state events of the file
        and the state-event index of the selected frames; the tie section starting at
        `state_events[state_event_indices[0]]` and ending with the first `tie_id` is prepended.
      tie_id: id of the `tie` event, or None for no tie section.

    Returns:
      int32[n] event ids for the chunk (tie section first when requested).
    """
    targets = np.asarray(targets, np.int32)
    if len(event_start_indices) == 0:
        return np.zeros([0], np.int32)
    chunk = targets[int(event_start_indices[0]) : int(event_end_indices[-1])]
    if tie_id is None:
        return chunk
    state_events = np.asarray(state_events, np.int32)
    start = int(state_event_indices[0])
    ends = np.flatnonzero(state_events[start:] == tie_id)
    if len(ends):
        section = state_events[start : start + int(ends[0]) + 1]
    elif start >= len(state_events):  # a file without notes: an empty tie section
        section = np.asarray([tie_id], np.int32)
    else:
        raise ValueError(f"state events after index {start} hold no tie token ({tie_id})")
    return np.concatenate([section, chunk]).astype(np.int32)


def run_length_encode_shifts(tokens: np.ndarray, layout: TokenLayout) -> np.ndarray:
    """Replaces runs of single-step shift tokens by the absolute step count (MT3 semantics).

    Every shift token counts as one step (as in MT3). Before each non-shift event that follows
    at least one shift, the total number of steps since the start of `tokens` is written, as
    several tokens when it exceeds `max_shift_steps` (e.g. 1500 -> [1000, 500]). Shifts after
    the last non-shift event are dropped.

    Args:
      tokens: int32[n] event ids with single-step shifts.
    Returns:
      int32[m] event ids with run-length encoded (absolute) shifts.
    """
    tokens = np.asarray(tokens, np.int32)
    is_shift = layout.is_shift(tokens)
    events_at = np.flatnonzero(~is_shift)
    if len(events_at) == 0:
        return np.zeros([0], np.int32)
    steps_before = np.cumsum(is_shift)[events_at]  # steps elapsed when each event occurs
    previous = np.concatenate([[0], steps_before[:-1]])
    needs_shift = steps_before > previous
    max_steps = layout.max_shift_steps
    n_shift_tokens = np.where(needs_shift, -(-steps_before // max_steps), 0)
    out_len = len(events_at) + int(n_shift_tokens.sum())
    out = np.empty(out_len, np.int32)
    # Position of each event in the output: after its own shift tokens and all earlier tokens.
    event_pos = np.cumsum(n_shift_tokens + 1) - 1
    out[event_pos] = tokens[events_at]
    if (n_shift_tokens <= 1).all():
        with_shift = np.flatnonzero(needs_shift)
        out[event_pos[with_shift] - 1] = layout.shift[0] + steps_before[with_shift]
    else:
        for i in np.flatnonzero(needs_shift):
            remaining = int(steps_before[i])
            pos = int(event_pos[i]) - int(n_shift_tokens[i])
            while remaining > 0:
                step = min(max_steps, remaining)
                out[pos] = layout.shift[0] + step
                pos += 1
                remaining -= step
    return out


def _split_steps(tokens: np.ndarray, layout: TokenLayout) -> tuple[list[int], list[np.ndarray]]:
    """Splits run-length encoded ids into (absolute step, non-shift events) groups.

    Events before the first shift sit at step 0. Consecutive shift tokens add up (a count above
    `max_shift_steps` spans several tokens). Zero ids after the events are padding and ignored.
    """
    is_shift = layout.is_shift(tokens)
    steps: list[int] = []
    groups: list[np.ndarray] = []
    i, n = 0, len(tokens)
    step = 0
    while i < n:
        if is_shift[i]:
            total = 0
            while i < n and is_shift[i]:
                total += int(tokens[i]) - layout.shift[0]
                i += 1
            step = total
            continue
        j = i
        while j < n and not is_shift[j]:
            j += 1
        steps.append(step)
        groups.append(tokens[i:j])
        i = j
    return steps, groups


def _tie_section(tokens: np.ndarray, layout: TokenLayout) -> tuple[np.ndarray, np.ndarray]:
    """Splits a target into (tie section incl. the tie token, rest); empty section if none."""
    if layout.tie is None:
        return tokens[:0], tokens
    first_shift = np.flatnonzero(layout.is_shift(tokens))
    head_end = int(first_shift[0]) if len(first_shift) else len(tokens)
    ties = np.flatnonzero(tokens[:head_end] == layout.tie)
    if len(ties) == 0:
        return tokens[:0], tokens
    return tokens[: int(ties[0]) + 1], tokens[int(ties[0]) + 1 :]


def _tie_pairs(section: np.ndarray, layout: TokenLayout) -> set[tuple[int, int]]:
    """(program id, pitch id) pairs declared in a tie section (program id -1 when absent)."""
    pairs = set()
    program = -1
    for token in section:
        token = int(token)
        if layout.program[0] <= token <= layout.program[1]:
            program = token
        elif layout.pitch[0] <= token <= layout.pitch[1]:
            pairs.add((program, token))
    return pairs


def merge_run_length_encoded_targets(
    targets: Sequence[np.ndarray], layout: TokenLayout
) -> np.ndarray:
    """Merges several run-length encoded targets (one per mixed example) into one by time.

    Events are grouped by their absolute step; groups are merged in time order (stable: at equal
    steps, earlier targets first) and one shift token (or several above `max_shift_steps`) is
    written whenever the step advances. Trailing zero ids are treated as padding.

    Tie sections: MT3 concatenates the tie sections of the mixed examples, which yields several
    `tie` tokens that its own decoder rejects; here the (program, pitch) pairs of all tie sections
    are united into ONE tie section, sorted by (program, pitch), followed by one `tie`.

    Args:
      targets: k arrays int32[n_i] of run-length encoded event ids (before redundant state
        removal, so every note event carries its program and velocity).
    Returns:
      int32[m] merged event ids.
    """
    tie_pairs: set[tuple[int, int]] = set()
    has_tie = False
    timed: list[tuple[int, int, np.ndarray]] = []
    for order, target in enumerate(targets):
        target = np.asarray(target, np.int32)
        nonzero = np.flatnonzero(target != 0)
        target = target[: int(nonzero[-1]) + 1] if len(nonzero) else target[:0]
        section, rest = _tie_section(target, layout)
        if len(section):
            has_tie = True
            tie_pairs |= _tie_pairs(section, layout)
        steps, groups = _split_steps(rest, layout)
        timed.extend((s, order, g) for s, g in zip(steps, groups))
    timed.sort(key=lambda item: (item[0], item[1]))

    out: list[np.ndarray] = []
    if has_tie:
        head: list[int] = []
        for program, pitch in sorted(tie_pairs):
            if program >= 0:
                head.append(program)
            head.append(pitch)
        head.append(layout.tie)
        out.append(np.asarray(head, np.int32))
    current = 0
    for step, _, group in timed:
        if step != current:
            remaining = step
            shifts = []
            while remaining > 0:
                n = min(layout.max_shift_steps, remaining)
                shifts.append(layout.shift[0] + n)
                remaining -= n
            out.append(np.asarray(shifts, np.int32))
            current = step
        out.append(group)
    if not out:
        return np.zeros([0], np.int32)
    return np.concatenate(out).astype(np.int32)

"""Run-length shift encoding, redundant state removal and merging of token streams.

MT3's `run_length_encode_shifts_fn`, `remove_redundant_state_changes_fn` and
`merge_run_length_encoded_targets`, on numpy int arrays of codec indices. These are the only
implementations in mt3x: the seqio pipeline (`mt3x.tasks.preprocessors`) calls them per example, so
they are written as array operations (run-length encoding, redundancy removal) or as a loop over
event groups rather than tokens (merging).

**Shift tokens hold the absolute number of steps since the start of the segment**, not a delta:
events at 0.03 s and 0.05 s after the segment start become `3, ..., 5, ...`. A count above
`max_shift_steps` is written as several shift tokens (`1000, 1000, 500` for 25 s); the decoder adds
consecutive shifts and restarts the count after every non-shift event.
"""

from __future__ import annotations

import heapq
from typing import Sequence

import numpy as np

from mt3x.codec.codec import Codec, CodecError


def _as_tokens(tokens) -> np.ndarray:
    arr = np.asarray(tokens)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise CodecError(f"tokens must be integers, got dtype {arr.dtype}")
    return arr.astype(np.int32, copy=False)


def run_length_encode_shifts(tokens: Sequence[int] | np.ndarray, codec: Codec) -> np.ndarray:
    """Single-step shift stream -> absolute shift counts; trailing shifts are dropped.

    Every shift-range token counts as one step (the stream from `encode_and_index_events` only
    holds `shift 1`). Before each non-shift event preceded by shifts, the total number of steps
    since the start is written, split into tokens of at most `max_shift_steps`
    (`[1000, 1000, 500]` for 2500 steps at MT3's 1000).

    Args:
      tokens: int[n] codec indices with single-step shifts.
    Returns:
      int32[m] codec indices.
    """
    tokens = _as_tokens(tokens)
    if not tokens.size:
        return tokens
    if tokens.min() < 0:
        raise CodecError("negative token in run_length_encode_shifts input")
    max_shift = codec.max_shift_steps
    is_shift = tokens <= max_shift  # the shift range is [0, max_shift]
    steps = np.cumsum(is_shift)  # steps elapsed up to and including each token
    # Keep every event, and the last shift of every run of shifts that an event follows; that
    # shift takes the step count so far.
    keep = ~is_shift
    keep[:-1] |= is_shift[:-1] & keep[1:]
    out = np.where(is_shift, steps, tokens)[keep]
    if steps[-1] <= max_shift:
        return out.astype(np.int32)
    # Some counts need several tokens: max_shift repeated, then the remainder.
    kept_shift = is_shift[keep]
    n_tokens = np.where(kept_shift, -(-out // max_shift), 1)
    split = np.repeat(out, n_tokens)
    split[np.repeat(kept_shift, n_tokens)] = max_shift
    last = np.cumsum(n_tokens)[kept_shift] - 1
    split[last] = out[kept_shift] - max_shift * (n_tokens[kept_shift] - 1)
    return split.astype(np.int32)


def remove_redundant_state_changes(tokens: Sequence[int] | np.ndarray, codec: Codec,
                                   state_change_event_types: Sequence[str] = ("velocity",
                                                                              "program"),
                                   ) -> np.ndarray:
    """Drops a state-change token equal to the previous token of its type in the sequence.

    The state starts "unset" at every call (one call per segment), so the first velocity and the
    first program token of a segment are always kept. Types the codec lacks are ignored.

    Args:
      tokens: int[n] codec indices (MT3 applies this after run-length encoding and mixing).
    Returns:
      int32[m] codec indices.
    """
    tokens = _as_tokens(tokens)
    keep = np.ones(tokens.shape, dtype=bool)
    for event_type in state_change_event_types:
        if not codec.has_event_type(event_type):
            continue
        lo, hi = codec.event_type_range(event_type)
        positions = np.flatnonzero((tokens >= lo) & (tokens <= hi))
        if positions.size > 1:
            values = tokens[positions]
            keep[positions[1:][values[1:] == values[:-1]]] = False
    return tokens[keep]


def merge_run_length_encoded_targets(targets: np.ndarray | Sequence[Sequence[int]],
                                     codec: Codec, *, combine_tie_sections: bool = False,
                                     ) -> np.ndarray:
    """Merges several run-length-encoded streams into one, ordered by time (MT3's mixing).

    Args:
      targets: int[num_tracks, length] streams right-padded with 0 (shift 0 is never emitted by
        the encoder and is read as padding), or a list of 1-D streams of any lengths.
      combine_tie_sections: False (default) is MT3 exactly: leading tie sections are ordinary
        step-0 events, so mixed streams with ties hold several tie sections one after another
        (the decoder reads the second one's pitches as onsets and its `tie` as invalid). True
        strips each stream's tie section and writes one combined section (all tied
        `program, pitch` pairs sorted by (program, pitch), then `tie`) first; when no stream
        has a tie section (or the codec has no `tie`), nothing is written for it.
    Returns:
      int32[m] merged codec indices. The leading step-0 events of the streams come first, the
      last stream's first; then the groups after each shift in order of the shift's value, the
      earlier stream first at equal values; a shift equal to the previous one is not repeated.
      Streams from `run_length_encode_shifts` whose counts fit one token (<= max_shift_steps)
      thus merge in time order; other input is merged as MT3's loop merges it (each shift token
      read on its own, not added to the next).
    """
    if isinstance(targets, np.ndarray) and targets.ndim == 2:
        tracks = [row for row in targets.astype(np.int64)]
    else:
        tracks = [np.asarray(t, dtype=np.int64).reshape(-1) for t in targets]
    if combine_tie_sections and codec.has_event_type("tie"):
        head, tracks = _split_tie_sections(tracks, codec)
        return np.concatenate([head, _merge(tracks, codec)]).astype(np.int32)
    return _merge(tracks, codec)


def _split_tie_sections(tracks: list[np.ndarray], codec: Codec
                        ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Strips each track's leading tie section; returns the combined section and the rests.

    The combined section is empty when no track has a `tie` token."""
    tie = codec.encode("tie", 0)
    p_lo, p_hi = codec.event_type_range("pitch")
    has_programs = codec.has_event_type("program")
    g_lo, g_hi = codec.event_type_range("program") if has_programs else (-1, -2)
    pairs: set[tuple[int, int]] = set()
    rests = []
    any_tie = False
    for track in tracks:
        ties = np.flatnonzero(track == tie)
        if not ties.size:
            rests.append(track)
            continue
        any_tie = True
        program = -1
        for token in track[:ties[0]].tolist():
            if g_lo <= token <= g_hi:
                program = token
            elif p_lo <= token <= p_hi:
                pairs.add((program, token))
        rests.append(track[ties[0] + 1:])
    head: list[int] = []
    for program, pitch in sorted(pairs):
        head += ([program] if program >= 0 else []) + [pitch]
    if any_tie:
        head.append(tie)
    return np.asarray(head, dtype=np.int64), rests


def _merge(tracks: list[np.ndarray], codec: Codec) -> np.ndarray:
    """MT3's merge loop, run over event groups instead of tokens.

    A track is cut into groups: the events before its first shift (step zero), then each shift
    token with the events after it. MT3's loop takes, while any track is at a step-zero group,
    the last such track; then the group whose shift has the smallest value (first track on
    ties), dropping that shift when it equals the previous step. A track ends at a 0 token.
    """
    max_shift = codec.max_shift_steps
    flat = np.concatenate([np.zeros(0, np.int64), *tracks])
    track_offsets = np.cumsum([0] + [t.size for t in tracks]).tolist()
    is_shift = (flat >= 0) & (flat <= max_shift)
    bounds: list[list[int]] = []               # per track: group starts in `flat`, then its end
    heads: list[list[int]] = []                # per track: first token of each group
    for i in range(len(tracks)):
        lo, hi = track_offsets[i], track_offsets[i + 1]
        starts = (lo + np.flatnonzero(is_shift[lo:hi])).tolist()
        if hi > lo and not is_shift[lo]:
            starts.insert(0, lo)
        bounds.append(starts + [hi])
        heads.append(flat[starts].tolist())
    copy_from: list[int] = []                  # the output: flat[copy_from[j]:copy_to[j]], ...
    copy_to: list[int] = []
    next_group = [0] * len(tracks)
    # Step zero: the tracks that start with events, the last track first.
    for i in reversed(range(len(tracks))):
        if heads[i] and not 0 <= heads[i][0] <= max_shift:
            copy_from.append(bounds[i][0])
            copy_to.append(bounds[i][1])
            next_group[i] = 1
    heap = [(heads[i][g], i) for i, g in enumerate(next_group)   # (next shift value, track)
            if g < len(heads[i]) and heads[i][g] != 0]
    heapq.heapify(heap)
    current_step = 0
    while heap:
        step, i = heapq.heappop(heap)
        g, b = next_group[i], bounds[i]
        if step != current_step:
            copy_from.append(b[g])
            copy_to.append(b[g + 1])
            g += 1
        elif b[g + 1] > b[g] + 1:  # same step as the shift already written: events only
            copy_from.append(b[g] + 1)
            copy_to.append(b[g + 1])
            g += 1
        else:
            # A repeated shift without events: MT3's loop writes the track's next group whole,
            # whatever its shift (or stops, where MT3 would read past the end of the track).
            if g + 1 < len(heads[i]):
                copy_from.append(b[g + 1])
                copy_to.append(b[g + 2])
            g += 2
        current_step = step
        next_group[i] = g
        if g < len(heads[i]) and heads[i][g] != 0:
            heapq.heappush(heap, (heads[i][g], i))
    lo, hi = np.asarray(copy_from, np.int64), np.asarray(copy_to, np.int64)
    lengths = hi - lo
    # Gather all copied ranges at once: position k of range j is lo[j] + k.
    index = np.arange(int(lengths.sum())) + np.repeat(lo - (np.cumsum(lengths) - lengths),
                                                      lengths)
    return flat[index].astype(np.int32)

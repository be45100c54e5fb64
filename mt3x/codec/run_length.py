"""Run-length shift encoding, redundant state removal and merging of token streams.

MT3's `run_length_encode_shifts_fn`, `remove_redundant_state_changes_fn` and
`merge_run_length_encoded_targets`, on numpy int arrays of codec indices.

**Shift tokens hold the absolute number of steps since the start of the segment**, not a delta:
events at 0.03 s and 0.05 s after the segment start become `3, ..., 5, ...`. A count above
`max_shift_steps` is written as several shift tokens (`1000, 1000, 500` for 25 s); the decoder adds
consecutive shifts and restarts the count after every non-shift event.
"""

from __future__ import annotations

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
    since the start is written, split into tokens of at most `max_shift_steps`.

    Args:
      tokens: int[n] codec indices with single-step shifts.
    Returns:
      int32[m] codec indices.
    """
    tokens = _as_tokens(tokens)
    max_shift = codec.max_shift_steps
    is_shift = tokens <= max_shift  # shift range is [0, max_shift]; negative ids are invalid
    if np.any(tokens < 0):
        raise CodecError("negative token in run_length_encode_shifts input")
    event_positions = np.flatnonzero(~is_shift)
    totals = np.cumsum(is_shift, dtype=np.int64)[event_positions]  # shifts before each event
    previous = np.concatenate([[0], totals[:-1]])
    # Shift tokens written before each event: ceil(total / max_shift) if time moved, else 0.
    n_shifts = np.where(totals > previous, -(-totals // max_shift), 0)
    out_event_positions = np.cumsum(n_shifts + 1) - 1
    out = np.full(int(out_event_positions[-1]) + 1 if totals.size else 0, max_shift,
                  dtype=np.int32)
    out[out_event_positions] = tokens[event_positions]
    moved = n_shifts > 0
    # The last shift token before an event holds the remainder (max_shift when it divides).
    out[out_event_positions[moved] - 1] = totals[moved] - max_shift * (n_shifts[moved] - 1)
    return out


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
        `program, pitch` pairs sorted by (program, pitch), then `tie`) first.
    Returns:
      int32[m] merged codec indices. Among streams at the same step, MT3's loop takes the last
      stream still at step zero first, otherwise the earliest shift; a shift equal to the
      previous one is not repeated.
    """
    if isinstance(targets, np.ndarray) and targets.ndim == 2:
        tracks = [row for row in targets.astype(np.int64)]
    else:
        tracks = [np.asarray(t, dtype=np.int64).reshape(-1) for t in targets]
    if combine_tie_sections:
        head, tracks = _split_tie_sections(tracks, codec)
        return np.concatenate([head, _merge(tracks, codec)]).astype(np.int32)
    return _merge(tracks, codec)


def _split_tie_sections(tracks: list[np.ndarray], codec: Codec
                        ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Strips each track's leading tie section; returns the combined section and the rests."""
    tie = codec.encode("tie", 0)
    p_lo, p_hi = codec.event_type_range("pitch")
    has_programs = codec.has_event_type("program")
    g_lo, g_hi = codec.event_type_range("program") if has_programs else (-1, -2)
    pairs: set[tuple[int, int]] = set()
    rests = []
    for track in tracks:
        ties = np.flatnonzero(track == tie)
        if not ties.size:
            rests.append(track)
            continue
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
    head.append(tie)
    return np.asarray(head, dtype=np.int64), rests


def _merge(tracks: list[np.ndarray], codec: Codec) -> np.ndarray:
    max_shift = codec.max_shift_steps
    offsets = [0] * len(tracks)
    current_step = 0
    out: list[int] = []
    while True:
        next_step = max_shift + 1
        next_track = -1
        for i, track in enumerate(tracks):
            if offsets[i] == len(track) or track[offsets[i]] == 0:
                continue  # track exhausted (or padding)
            token = int(track[offsets[i]])
            if not 0 <= token <= max_shift:
                # A track not yet at its first shift is at step zero.
                next_step = 0
                next_track = i
            elif token < next_step:
                next_step = token
                next_track = i
        if next_track == -1:
            break
        track = tracks[next_track]
        start = offsets[next_track]
        if next_step == current_step and next_step > 0:
            start += 1  # same time as the last shift already written
        end = start + 1
        while end < len(track) and not 0 <= track[end] <= max_shift:
            end += 1
        out.extend(int(t) for t in track[start:end])
        current_step = next_step
        offsets[next_track] = end
    return np.asarray(out, dtype=np.int32)

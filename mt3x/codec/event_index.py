"""Timed events -> one event stream with single-step shifts, indexed by audio frame.

MT3's `run_length_encoding.encode_and_index_events` and `extract_target_sequence_with_indices`.
The stream is `E_0, shift, E_1, shift, ...` where `E_s` are the event indices at time step `s`
(10 ms for MT3) and every `shift` is the one-step shift token (codec index 1). A frame whose start
time `t` (seconds) falls in step `s = floor(t * steps_per_second)` starts at the first event of
`E_s`; slicing the stream between two frames' indices gives that span's targets, which
`mt3x.codec.run_length.run_length_encode_shifts` then turns into absolute shift counts.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any, Callable, Sequence

import numpy as np

from mt3x.audio.mt3_config import MT3_SPECTROGRAM_CONFIG
from mt3x.codec.codec import Codec, CodecError, Event


def num_audio_frames(num_samples: int,
                     hop_width: int = MT3_SPECTROGRAM_CONFIG.hop_width) -> int:
    """Frames MT3 makes of `num_samples` samples: it always pads with `hop - n % hop` zeros
    (a whole extra frame when `n` is a multiple of the hop)."""
    if num_samples < 0:
        raise CodecError(f"num_samples must be >= 0, got {num_samples}")
    return (num_samples + hop_width - num_samples % hop_width) // hop_width


def audio_frame_times(num_samples: int, sample_rate: int = MT3_SPECTROGRAM_CONFIG.sample_rate,
                      hop_width: int = MT3_SPECTROGRAM_CONFIG.hop_width) -> np.ndarray:
    """float64[num_frames] start time (s) of each 128-sample frame, as MT3's `_audio_to_frames`."""
    frames_per_second = sample_rate / hop_width
    return np.arange(num_audio_frames(num_samples, hop_width)) / frames_per_second


@dataclasses.dataclass(frozen=True)
class IndexedEvents:
    """A whole file's event stream and its per-frame indices (all int32, codec indices).

    Attributes:
      events: int32[n_events] events and single-step shifts.
      event_start_indices: int32[n_frames] first event of each frame.
      event_end_indices: int32[n_frames] end (exclusive) of each frame's events; equals the next
        frame's start index, and len(events) for the last frame.
      state_events: int32[n_state] the encoding state (tie section: `program, pitch, ..., tie`)
        dumped before every event; empty without ties.
      state_event_indices: int32[n_frames] start of the state dump that holds for each frame.
    """

    events: np.ndarray
    event_start_indices: np.ndarray
    event_end_indices: np.ndarray
    state_events: np.ndarray
    state_event_indices: np.ndarray

    @property
    def num_frames(self) -> int:
        return int(self.event_start_indices.shape[0])

    def slice_frames(self, frame_start: int, frame_end: int) -> "IndexedEvents":
        """Frames [frame_start, frame_end) with the whole event arrays (MT3's `split_tokens`:
        indices stay absolute, so `extract_target_sequence` works on the slice as on the file)."""
        if not 0 <= frame_start <= frame_end <= self.num_frames:
            raise CodecError(f"frame slice [{frame_start}, {frame_end}) outside "
                             f"[0, {self.num_frames}]")
        sl = slice(frame_start, frame_end)
        return dataclasses.replace(self, event_start_indices=self.event_start_indices[sl],
                                   event_end_indices=self.event_end_indices[sl],
                                   state_event_indices=self.state_event_indices[sl])

    def to_features(self) -> dict[str, np.ndarray]:
        """MT3's feature names: targets, input_event_start_indices, input_event_end_indices,
        state_events, input_state_event_indices."""
        return {FEATURE_NAMES[f.name]: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_features(cls, features: dict) -> "IndexedEvents":
        """Inverse of `to_features` (extra keys are ignored)."""
        return cls(**{f.name: np.asarray(features[FEATURE_NAMES[f.name]], dtype=np.int32)
                      for f in dataclasses.fields(cls)})


FEATURE_NAMES = {
    "events": "targets",
    "event_start_indices": "input_event_start_indices",
    "event_end_indices": "input_event_end_indices",
    "state_events": "state_events",
    "state_event_indices": "input_state_event_indices",
}


def encode_and_index_events(
    state: Any,
    event_times: Sequence[float],
    event_values: Sequence[Any],
    encode_event_fn: Callable[[Any, Any, Codec], Sequence[Event]],
    codec: Codec,
    frame_times: Sequence[float] | np.ndarray,
    encoding_state_to_events_fn: Callable[[Any], Sequence[Event]] | None = None,
) -> IndexedEvents:
    """Sorts events by time (stable), quantises to steps (Python `round`) and indexes frames.

    Args:
      state: encoding state passed to `encode_event_fn` (e.g. `NoteEncodingState` or None).
      event_times: seconds, >= 0, one per value.
      event_values: e.g. `NoteEventData`.
      encode_event_fn: `(state, value, codec) -> [Event]`, updates `state`.
      codec: the event codec.
      frame_times: float[n_frames] increasing frame start times in seconds.
      encoding_state_to_events_fn: `state -> [Event]` dumped before every event (tie sections).

    Returns:
      IndexedEvents. Matches MT3 bit for bit, including its quirk that frames after the last
      event step + 1 keep the state dump from before the last step's events.
    """
    if len(event_times) != len(event_values):
        raise CodecError(f"{len(event_times)} event times but {len(event_values)} values")
    times = np.asarray(event_times, dtype=np.float64).reshape(-1)
    if times.size and not (np.all(np.isfinite(times)) and times.min() >= 0):
        raise CodecError("event times must be finite and >= 0")
    if getattr(frame_times, "dtype", None) == np.float32:
        warnings.warn(
            "encode_and_index_events: frame_times are float32; MT3 indexes frames with float64 "
            "times (np.arange(n) / 125), and float32 moves every frame that starts exactly on a "
            "10 ms step into the previous step, changing the targets of chunks starting there. "
            "Pass mt3x.codec.audio_frame_times(num_samples).", stacklevel=2)
    frame_times = np.asarray(frame_times, dtype=np.float64).reshape(-1)
    sps = codec.steps_per_second
    order = np.argsort(times, kind="stable")
    shift = codec.encode("shift", 1)

    events: list[int] = []
    state_events: list[int] = []
    step_starts = [0]        # step_starts[s]: index of the first event at step s
    step_state_starts = [0]  # same for state dumps (only up to the last event step)
    cur_step = 0
    for i in order:
        step = round(float(event_times[i]) * sps)
        while step > cur_step:
            events.append(shift)
            cur_step += 1
            step_starts.append(len(events))
            step_state_starts.append(len(state_events))
        if encoding_state_to_events_fn is not None:
            state_events.extend(codec.encode(e.type, e.value)
                                for e in encoding_state_to_events_fn(state))
        events.extend(codec.encode(e.type, e.value)
                      for e in encode_event_fn(state, event_values[int(i)], codec))

    if frame_times.size:
        # Shifts until the step boundary passes the last frame (`<=`: a frame starting exactly
        # on a step boundary needs one more shift to cover it).
        while cur_step / sps <= frame_times[-1]:
            events.append(shift)
            cur_step += 1
            step_starts.append(len(events))
        boundaries = np.arange(1, cur_step + 1) / sps
        # Frame t belongs to step k-1 where k is the first step with t < k / sps.
        frame_steps = np.searchsorted(boundaries, frame_times, side="right")
        starts = np.asarray(step_starts, dtype=np.int64)[frame_steps]
        last_state_step = len(step_state_starts) - 1
        state_idx = np.asarray(step_state_starts, dtype=np.int64)[
            np.minimum(frame_steps, last_state_step)]
        ends = np.append(starts[1:], len(events))
    else:
        starts = ends = state_idx = np.zeros(0, np.int64)

    return IndexedEvents(
        events=np.asarray(events, dtype=np.int32),
        event_start_indices=starts.astype(np.int32),
        event_end_indices=ends.astype(np.int32),
        state_events=np.asarray(state_events, dtype=np.int32),
        state_event_indices=state_idx.astype(np.int32))


def extract_target_sequence(indexed: IndexedEvents, frame_start: int, frame_end: int,
                            state_events_end_token: int | None = None) -> np.ndarray:
    """Targets (single-step shifts, not yet run-length encoded) for frames [frame_start, frame_end).

    With `state_events_end_token` (the codec index of `tie`), the state dump in force at
    `frame_start` (`program, pitch` pairs up to and including `tie`) is prepended. A file without
    events gets the empty tie section `[tie]`.

    Returns:
      int32[n] codec indices.
    """
    n = indexed.num_frames
    if not 0 <= frame_start < frame_end <= n:
        raise CodecError(f"frame range [{frame_start}, {frame_end}) is not inside "
                         f"[0, {n}) or is empty")
    lo = int(indexed.event_start_indices[frame_start])
    hi = int(indexed.event_end_indices[frame_end - 1])
    targets = indexed.events[lo:hi]
    if state_events_end_token is None:
        return targets
    state = indexed.state_events
    s0 = int(indexed.state_event_indices[frame_start])
    end = _find_token(state, s0, state_events_end_token)
    if end is not None:
        tie_section = state[s0:end + 1]
    elif s0 >= state.size:
        tie_section = np.asarray([state_events_end_token], dtype=np.int32)
    else:
        raise CodecError("state events are not terminated by the given end token "
                         f"{state_events_end_token}")
    return np.concatenate([tie_section, targets]).astype(np.int32)


def _find_token(tokens: np.ndarray, start: int, token: int) -> int | None:
    """Index of the first `token` at or after `start` (searching in growing windows)."""
    window = 256
    while start < tokens.size:
        hits = np.flatnonzero(tokens[start:start + window] == token)
        if hits.size:
            return start + int(hits[0])
        start += window
        window *= 2
    return None


def step_floor(time: float, steps_per_second: float) -> float:
    """`time` rounded down to the step grid, tolerant to float error (1e-6 steps).

    MT3 rounds segment start times down with `t - t % (1 / sps)` (on float32 frame times); for
    frame start times both give the step `floor(t * sps)` that the encoder's frame index used,
    this version without depending on float32 rounding.
    """
    return math.floor(time * steps_per_second + 1e-6) / steps_per_second

"""The codec as the seqio pipeline uses it: one object per vocabulary preset.

`PipelineCodec` bundles a `mt3x.codec` configuration (`mt3` or `ismir2021`) with what the
pipeline asks of it: the id ranges by name (`TokenLayout`, a view of the codec), NoteSequence ->
per-frame indexed events (`tokenize`), and tokens -> NoteSequence (`decode_segments`, for tests
and evaluation). The token operations themselves are `mt3x.codec`'s.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import note_seq
import numpy as np

from mt3x.codec import decoding, note_events
from mt3x.codec import segments as codec_segments
from mt3x.codec import vocabulary as codec_vocabulary
from mt3x.codec.codec import Codec


@dataclasses.dataclass(frozen=True)
class TokenLayout:
    """Codec ids by event type, read from the codec (a convenience for code that inspects
    targets; the token operations take the codec itself).

    Attributes:
      codec: the codec. `pitch` and `program` are its `event_type_range(name)` (first, last)
        ids, `tie` the id of `tie` (None when the codec has none).
    """

    codec: Codec

    @property
    def pitch(self) -> tuple[int, int]:
        return self.codec.event_type_range("pitch")

    @property
    def program(self) -> tuple[int, int]:
        return self.codec.event_type_range("program")

    @property
    def tie(self) -> int | None:
        return self.codec.encode("tie", 0) if self.codec.has_event_type("tie") else None

    def is_shift(self, tokens: np.ndarray) -> np.ndarray:
        """bool[n]: which codec ids are shifts (0..max_shift_steps)."""
        tokens = np.asarray(tokens)
        return (tokens >= 0) & (tokens <= self.codec.max_shift_steps)


@dataclasses.dataclass(frozen=True)
class PipelineCodec:
    """A vocabulary preset as the pipeline needs it.

    Attributes:
      config: the codec's TranscriptionConfig (vocab, program granularity, ties, lengths).
    """

    config: Any

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def codec(self):
        return self.config.codec

    @property
    def use_ties(self) -> bool:
        return bool(self.config.use_ties)

    @property
    def program_granularity(self) -> str:
        return self.config.program_granularity

    @functools.cached_property
    def layout(self) -> TokenLayout:
        return TokenLayout(self.codec)

    @property
    def tie_id(self) -> int | None:
        return self.layout.tie if self.use_ties else None

    def tokenize(self, sequence: bytes, frame_times: np.ndarray, is_training: bool,
                 ) -> dict[str, Any]:
        """Serialized NoteSequence -> single-step events indexed by audio frame (MT3 tokenizer).

        validate -> sustain -> (trim overlapping notes when training) -> onsets/offsets/programs
        -> encode_and_index_events (with tie state events when the preset uses ties).

        Args:
          sequence: serialized note_seq.NoteSequence.
          frame_times: f64[F] start time (s) of every 128-sample frame (float64, as MT3).
          is_training: trim overlapping notes (MT3 does so for training data only).
        Returns:
          dict: targets i32[E], input_event_start_indices i32[F], input_event_end_indices i32[F],
          state_events i32[S], input_state_event_indices i32[F], sequence (bytes, the
          NoteSequence actually encoded).
        """
        ns = note_seq.NoteSequence.FromString(sequence)
        ns = note_events.prepare_note_sequence(ns, is_training=is_training)
        # Sustain and trimming are done: encode the prepared sequence as it is.
        frame_times = np.asarray(frame_times, np.float64)
        indexed = codec_segments.tokenize_note_sequence(ns, frame_times, self.config,
                                                        is_training=False, sustain=False)
        events, starts, ends = (indexed.events, indexed.event_start_indices,
                                indexed.event_end_indices)
        state_events, state_idx = indexed.state_events, indexed.state_event_indices
        if not self.use_ties:
            # No tie section: the state arrays are unused; keep the shapes uniform.
            state_events = np.zeros([0], np.int32)
            state_idx = np.zeros(len(frame_times), np.int32)
        return {
            "targets": np.asarray(events, np.int32),
            "input_event_start_indices": np.asarray(starts, np.int32),
            "input_event_end_indices": np.asarray(ends, np.int32),
            "state_events": np.asarray(state_events, np.int32),
            "input_state_event_indices": np.asarray(state_idx, np.int32),
            "sequence": ns.SerializeToString(),
        }

    def decode_segments(self, segments: Sequence[np.ndarray], start_times: Sequence[float],
                        *, from_model_ids: bool = False
                        ) -> tuple[note_seq.NoteSequence, int, int]:
        """Token segments -> one NoteSequence (mt3x.codec.decoding.tokens_to_note_sequence).

        Tokens are codec ids (run-length encoded, no EOS), or model ids (+3, cut at EOS) with
        `from_model_ids`. Segments are decoded in start-time order with one state.

        Returns (NoteSequence, invalid event count, dropped event count).
        """
        result = decoding.tokens_to_note_sequence(
            list(zip(start_times, segments)), self.config, from_model_ids=from_model_ids)
        return result.note_sequence, result.invalid_events, result.dropped_events


@functools.lru_cache(maxsize=None)
def get_pipeline_codec(vocab: str) -> PipelineCodec:
    """The pipeline codec of a preset name: 'mt3' (1 velocity bin, ties, full programs) or
    'ismir2021' (127 bins, no ties, flat)."""
    return PipelineCodec(codec_vocabulary.get_config(vocab))

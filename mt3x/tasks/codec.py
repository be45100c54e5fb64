"""The codec as the seqio pipeline uses it: one object per vocabulary preset.

`PipelineCodec` bundles a `mt3x.codec` configuration (`mt3` or `ismir2021`) with what the
pipeline asks of it: the id ranges by name (`TokenLayout`, a view of the codec), NoteSequence ->
per-frame indexed events (`tokenize`), and tokens -> NoteSequence (`decode_segments`, for tests
and evaluation). The token operations themselves are `mt3x.codec`'s and `mt3x.tasks.examples`'s;
this module imports neither TensorFlow nor JAX.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import note_seq
import numpy as np

from mt3x.codec import decoding
from mt3x.codec import vocabulary as codec_vocabulary
from mt3x.codec.codec import Codec
from mt3x.tasks import examples


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
        """Serialized NoteSequence -> single-step events indexed by audio frame
        (`mt3x.tasks.examples.index_events` with this preset)."""
        return examples.index_events(sequence, frame_times, self.config, is_training=is_training)

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

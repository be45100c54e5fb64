"""MT3's vocabularies: codec layout, velocity bins, program granularities, model token ids.

Two released configurations (`PRESETS`):

| name        | velocity bins | ties | programs | codec classes | model vocab (embedding rows) |
|-------------|---------------|------|----------|---------------|------------------------------|
| `mt3`       | 1             | yes  | full     | 1388          | 1536                         |
| `ismir2021` | 127           | no   | flat     | 1514          | 1664                         |

Codec layout (indices): shift 0..1000 | pitch 0..127 | velocity 0..bins | tie | program 0..127 |
drum 0..127. Model ids = codec index + 3 (0 PAD, 1 EOS, 2 UNK); 100 extra ids follow; the
embedding width is the vocabulary size rounded up to a multiple of 128.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, Iterable

import numpy as np

from mt3x.audio.mt3_config import MT3_SPECTROGRAM_CONFIG
from mt3x.codec.codec import Codec, CodecError, EventRange

MIN_MIDI_PITCH = 0
MAX_MIDI_PITCH = 127
MIN_MIDI_PROGRAM = 0
MAX_MIDI_PROGRAM = 127
MAX_MIDI_VELOCITY = 127

DEFAULT_STEPS_PER_SECOND = 100
DEFAULT_MAX_SHIFT_SECONDS = 10
DEFAULT_NUM_VELOCITY_BINS = 127

PAD_ID = 0
EOS_ID = 1
UNK_ID = 2
NUM_SPECIAL_TOKENS = 3
DEFAULT_EXTRA_IDS = 100
# What `TokenVocabulary.decode` returns for EOS and for ids that are no codec event.
DECODED_EOS_ID = -1
DECODED_INVALID_ID = -2

PROGRAM_GRANULARITY_NAMES = ("flat", "midi_class", "full")


@dataclasses.dataclass(frozen=True)
class VocabularyConfig:
    """MT3's `VocabularyConfig`: time resolution, longest single shift, velocity bins."""

    steps_per_second: int = DEFAULT_STEPS_PER_SECOND
    max_shift_seconds: int = DEFAULT_MAX_SHIFT_SECONDS
    num_velocity_bins: int = DEFAULT_NUM_VELOCITY_BINS

    @property
    def abbrev_str(self) -> str:
        """Task-name suffix for non-default fields, e.g. 'vb1' (MT3's naming)."""
        s = ""
        if self.steps_per_second != DEFAULT_STEPS_PER_SECOND:
            s += f"ss{self.steps_per_second}"
        if self.max_shift_seconds != DEFAULT_MAX_SHIFT_SECONDS:
            s += f"ms{self.max_shift_seconds}"
        if self.num_velocity_bins != DEFAULT_NUM_VELOCITY_BINS:
            s += f"vb{self.num_velocity_bins}"
        return s


# -- velocity -------------------------------------------------------------------------------------
def velocity_to_bin(velocity: int, num_velocity_bins: int) -> int:
    """MIDI velocity 0..127 -> bin 0..num_velocity_bins (0 only for velocity 0 = note-off)."""
    if velocity == 0:
        return 0
    return math.ceil(num_velocity_bins * velocity / MAX_MIDI_VELOCITY)


def bin_to_velocity(velocity_bin: int, num_velocity_bins: int) -> int:
    """Bin -> MIDI velocity (`int(127 * bin / bins)`; with 1 bin every onset is 127)."""
    if velocity_bin == 0:
        return 0
    return int(MAX_MIDI_VELOCITY * velocity_bin / num_velocity_bins)


def num_velocity_bins_from_codec(codec: Codec) -> int:
    lo, hi = codec.event_type_range("velocity")
    return hi - lo


# -- codec ----------------------------------------------------------------------------------------
def build_codec(vocab_config: VocabularyConfig) -> Codec:
    """MT3's codec (`vocabularies.build_codec`); the tie range is present in every configuration."""
    return Codec(
        max_shift_steps=vocab_config.steps_per_second * vocab_config.max_shift_seconds,
        steps_per_second=vocab_config.steps_per_second,
        event_ranges=[
            EventRange("pitch", MIN_MIDI_PITCH, MAX_MIDI_PITCH),
            EventRange("velocity", 0, vocab_config.num_velocity_bins),  # bin 0 = note-off
            EventRange("tie", 0, 0),
            EventRange("program", MIN_MIDI_PROGRAM, MAX_MIDI_PROGRAM),
            EventRange("drum", MIN_MIDI_PITCH, MAX_MIDI_PITCH),
        ])


# -- program granularity --------------------------------------------------------------------------
def drop_programs(tokens: np.ndarray, codec: Codec) -> np.ndarray:
    """Removes program tokens ('flat' granularity). tokens: int[n] codec indices."""
    tokens = np.asarray(tokens)
    lo, hi = codec.event_type_range("program")
    return tokens[(tokens < lo) | (tokens > hi)]


def programs_to_midi_classes(tokens: np.ndarray, codec: Codec) -> np.ndarray:
    """Maps each program token to the first program of its MIDI class (8 * (p // 8))."""
    tokens = np.asarray(tokens)
    lo, hi = codec.event_type_range("program")
    is_program = (tokens >= lo) & (tokens <= hi)
    return np.where(is_program, lo + 8 * ((tokens - lo) // 8), tokens).astype(tokens.dtype)


def _check_granularity(granularity: str) -> str:
    if granularity not in PROGRAM_GRANULARITY_NAMES:
        raise CodecError(f"program granularity must be one of {PROGRAM_GRANULARITY_NAMES}, "
                         f"got {granularity!r}")
    return granularity


def map_program_tokens(tokens: np.ndarray, codec: Codec, granularity: str) -> np.ndarray:
    """MT3's `map_midi_programs` on a token array: 'flat' drops, 'midi_class' maps, 'full' keeps."""
    granularity = _check_granularity(granularity)
    if granularity == "flat":
        return drop_programs(tokens, codec)
    if granularity == "midi_class":
        return programs_to_midi_classes(tokens, codec)
    return np.asarray(tokens)


def program_map_fn(granularity: str) -> Callable[[int], int]:
    """The NoteSequence-side program map of a granularity (used by the metrics)."""
    granularity = _check_granularity(granularity)
    if granularity == "flat":
        return lambda program: 0
    if granularity == "midi_class":
        return lambda program: 8 * (program // 8)
    return lambda program: program


# -- model token ids ------------------------------------------------------------------------------
class TokenVocabulary:
    """MT3's `GenericTokenVocabulary` in numpy: codec index <-> model id (index + 3).

    0 = PAD, 1 = EOS, 2 = UNK, then `num_regular_ids` codec indices, then `extra_ids` unused ids.
    """

    def __init__(self, num_regular_ids: int, extra_ids: int = DEFAULT_EXTRA_IDS):
        self.num_regular_ids = int(num_regular_ids)
        self.extra_ids = int(extra_ids)

    pad_id = PAD_ID
    eos_id = EOS_ID
    unk_id = UNK_ID

    @property
    def base_vocab_size(self) -> int:
        """Special tokens + regular ids (no extra ids)."""
        return NUM_SPECIAL_TOKENS + self.num_regular_ids

    @property
    def vocab_size(self) -> int:
        """All ids the model can emit, extra ids included (1491 for `mt3`)."""
        return self.base_vocab_size + self.extra_ids

    @property
    def num_embeddings(self) -> int:
        """Embedding / logit width: vocab_size rounded up to a multiple of 128 (1536 for `mt3`)."""
        return 128 * math.ceil(self.vocab_size / 128)

    def encode(self, tokens: Iterable[int]) -> np.ndarray:
        """Codec indices int[n] -> model ids int32[n] (no EOS); CodecError when out of range."""
        tokens = np.asarray(list(tokens) if not isinstance(tokens, np.ndarray) else tokens,
                            dtype=np.int64).reshape(-1)
        bad = (tokens < 0) | (tokens >= self.num_regular_ids)
        if bad.any():
            raise CodecError(f"token {int(tokens[bad][0])} does not fall within valid range of "
                             f"[0, {self.num_regular_ids})")
        return (tokens + NUM_SPECIAL_TOKENS).astype(np.int32)

    def decode(self, ids: Iterable[int]) -> np.ndarray:
        """Model ids -> codec indices int32, up to and including the first EOS (as DECODED_EOS_ID).

        PAD, UNK, extra ids and ids >= vocab_size become DECODED_INVALID_ID (-2); seqio's
        `Vocabulary.decode` followed by MT3's `_decode`.
        """
        ids = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids,
                         dtype=np.int64).reshape(-1)
        eos = np.flatnonzero(ids == EOS_ID)
        if eos.size:
            ids = ids[: eos[0] + 1]
        out = np.where((ids >= NUM_SPECIAL_TOKENS) & (ids < self.base_vocab_size),
                       ids - NUM_SPECIAL_TOKENS, DECODED_INVALID_ID)
        out = np.where(ids == EOS_ID, DECODED_EOS_ID, out)
        return out.astype(np.int32)

    def decode_to_codec_tokens(self, ids: Iterable[int]) -> np.ndarray:
        """`decode` then MT3's `trim_eos`: the codec indices before the first EOS (int32)."""
        out = self.decode(ids)
        if out.size and out[-1] == DECODED_EOS_ID:
            out = out[:-1]
        return out

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, TokenVocabulary) and self.extra_ids == other.extra_ids
                and self.num_regular_ids == other.num_regular_ids)

    def __hash__(self) -> int:
        return hash((self.num_regular_ids, self.extra_ids))

    def __repr__(self) -> str:
        return (f"TokenVocabulary(num_regular_ids={self.num_regular_ids}, "
                f"extra_ids={self.extra_ids})")


def vocabulary_from_codec(codec: Codec, extra_ids: int = DEFAULT_EXTRA_IDS) -> TokenVocabulary:
    return TokenVocabulary(codec.num_classes, extra_ids=extra_ids)


# -- released configurations ----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TranscriptionConfig:
    """Everything that fixes a model's target tokens (MT3's gin macros for one released model).

    Attributes:
      name: preset name ('mt3', 'ismir2021').
      vocab: VocabularyConfig (steps, shift range, velocity bins).
      program_granularity: 'flat' | 'midi_class' | 'full' (`map_program_tokens`).
      use_ties: tie sections at the start of every segment.
      onsets_only: onset-only targets (no velocity/offset/program); incompatible with ties.
      inputs_length: audio frames per segment (128 samples each at 16 kHz).
      targets_length: target tokens per segment including EOS.
    """

    name: str
    vocab: VocabularyConfig
    program_granularity: str
    use_ties: bool
    onsets_only: bool = False
    inputs_length: int = MT3_SPECTROGRAM_CONFIG.frames_per_segment
    targets_length: int = 1024

    def __post_init__(self):
        _check_granularity(self.program_granularity)
        if self.onsets_only and self.use_ties:
            raise CodecError(f"config {self.name!r}: ties are not supported with onsets_only")

    @functools.cached_property
    def codec(self) -> Codec:
        return build_codec(self.vocab)

    @functools.cached_property
    def vocabulary(self) -> TokenVocabulary:
        return vocabulary_from_codec(self.codec)


PRESETS: dict[str, TranscriptionConfig] = {
    # mt3/gin/mt3.gin: multi-instrument, ties, full programs, 1 velocity bin, 256 frames.
    "mt3": TranscriptionConfig(name="mt3", vocab=VocabularyConfig(num_velocity_bins=1),
                               program_granularity="full", use_ties=True,
                               inputs_length=MT3_SPECTROGRAM_CONFIG.frames_per_segment),
    # mt3/gin/ismir2021.gin: piano, no ties, flat programs, 127 velocity bins, 512 frames.
    "ismir2021": TranscriptionConfig(name="ismir2021",
                                     vocab=VocabularyConfig(num_velocity_bins=127),
                                     program_granularity="flat", use_ties=False,
                                     inputs_length=512),
}


def get_config(name: str | TranscriptionConfig) -> TranscriptionConfig:
    """A preset by name ('mt3', 'ismir2021'), or the config itself."""
    if isinstance(name, TranscriptionConfig):
        return name
    try:
        return PRESETS[name]
    except KeyError:
        raise CodecError(f"unknown vocabulary config {name!r}; expected one of "
                         f"{sorted(PRESETS)}") from None

"""The MT3 example chain as pure numpy functions over one example at a time (no TF, JAX, seqio).

magenta/mt3's training chain, stage by stage; a driver (seqio/tf.data in
`mt3x.tasks.preprocessors`, or Grain) calls these on dicts of numpy arrays:

  tokenize_track -> split_frames (<= 2000 frames, before the cache) -> select_random_chunk
  (256 frames) -> extract_target_sequence (+ tie section) -> map_program_granularity ->
  run_length_encode_shifts -> [mix_examples of 1..N] -> remove_redundant_state_changes ->
  [log-mel, on device] -> drop if targets_too_long -> append_eos (model ids + EOS)

Evaluation: tokenize_track(is_training=False) -> split_into_segments -> append_eos.

Feature keys (F = frames, E = events, S = state events):
  inputs f32[F, 128] (MT3 sample frames at 16 kHz, 8 ms each), input_times f32[F] (s),
  targets i32[E] (codec ids until `append_eos`, model ids after),
  input_event_start_indices / input_event_end_indices / input_state_event_indices i32[F],
  state_events i32[S], sequence bytes (serialized NoteSequence).
Functions return new dicts and never modify their input. Randomness comes from an explicit
`np.random.Generator` (or a seed), so a driver controls reproducibility.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import note_seq
import numpy as np

from mt3x.audio.mt3_config import MT3_SPECTROGRAM_CONFIG, mt3_frame_times, mt3_sample_frames
from mt3x.codec import event_index, note_events, run_length
from mt3x.codec import segments as codec_segments
from mt3x.codec import vocabulary as codec_vocabulary
from mt3x.codec.codec import Codec
from mt3x.codec.vocabulary import TranscriptionConfig

Example = dict[str, Any]
RandomSource = np.random.Generator | int | Sequence[int] | None

MAX_NUM_CACHED_FRAMES = 2000    # MT3: split frame sequences to this length before the cache
DEFAULT_TARGET_LENGTH = 1024    # target tokens per example, EOS included (MT3)
FRAME_KEYS = ("inputs", "input_times", "input_event_start_indices", "input_event_end_indices",
              "input_state_event_indices")
INDEX_KEYS = FRAME_KEYS[2:]
PIECE_KEYS = ("targets", "state_events")   # whole-file keys every piece and chunk carries


def _i32(values) -> np.ndarray:
    return np.asarray(values, np.int32).reshape(-1)


# ------------------------------------------------------------------------------ tokenize


def index_events(sequence: bytes | note_seq.NoteSequence, frame_times: np.ndarray,
                 config: TranscriptionConfig, *, is_training: bool) -> Example:
    """NoteSequence -> single-step events indexed by audio frame (MT3's tokenizer).

    validate -> sustain -> (trim overlapping notes when training) -> onsets/offsets/programs ->
    encode_and_index_events (with tie state events when `config.use_ties`).

    Args:
      sequence: a NoteSequence or its serialization.
      frame_times: f64[F] start time (s) of every sample frame (float64, as MT3: in float32 a
        frame starting exactly on a 10 ms step would fall into the previous step).
      config: the codec preset (`mt3x.codec.vocabulary.get_config('mt3')`).
      is_training: trim overlapping notes (MT3 does so for training data only).

    Returns:
      targets i32[E], input_event_start_indices i32[F], input_event_end_indices i32[F],
      state_events i32[S] (empty without ties), input_state_event_indices i32[F] (zeros without
      ties), sequence (bytes, the NoteSequence actually encoded).

    Raises:
      mt3x.codec.NoteSequenceError (or another Mt3xError) for a sequence that cannot be encoded.
    """
    ns = (note_seq.NoteSequence.FromString(bytes(sequence))
          if isinstance(sequence, (bytes, bytearray, np.bytes_)) else sequence)
    ns = note_events.prepare_note_sequence(ns, is_training=is_training)
    # Not cast to float64 here: that would not restore the float64 times (float32(0.04) stays
    # below 0.04) and would hide encode_and_index_events' float32 warning.
    frame_times = np.asarray(frame_times)
    # Sustain and trimming are done: encode the prepared sequence as it is.
    indexed = codec_segments.tokenize_note_sequence(ns, frame_times, config, is_training=False,
                                                    sustain=False)
    state_events, state_idx = indexed.state_events, indexed.state_event_indices
    if not config.use_ties:
        # No tie section: the state arrays are unused; keep the shapes uniform.
        state_events = np.zeros([0], np.int32)
        state_idx = np.zeros(len(frame_times), np.int32)
    return {
        "targets": _i32(indexed.events),
        "input_event_start_indices": _i32(indexed.event_start_indices),
        "input_event_end_indices": _i32(indexed.event_end_indices),
        "state_events": _i32(state_events),
        "input_state_event_indices": _i32(state_idx),
        "sequence": ns.SerializeToString(),
    }


def tokenize_track(audio: np.ndarray, sequence: bytes | note_seq.NoteSequence,
                   config: TranscriptionConfig, *, is_training: bool) -> Example:
    """A track's audio -> MT3 sample frames and times; its notes -> indexed events.

    Args:
      audio: f32[samples] mono at 16 kHz (`MT3_SPECTROGRAM_CONFIG.sample_rate`).
      sequence: the track's NoteSequence (or its serialization).
      config, is_training: see `index_events`.

    Returns:
      inputs f32[F, 128] (`mt3_sample_frames`, F = samples // 128 + 1), input_times f32[F]
      (`mt3_frame_times`, indexed in float64), and the keys of `index_events`.
    """
    frames = mt3_sample_frames(np.asarray(audio, np.float32).reshape(-1))
    times = mt3_frame_times(len(frames))
    out = index_events(sequence, times, config, is_training=is_training)
    return {"inputs": frames, "input_times": times.astype(np.float32), **out}


# ------------------------------------------------------------------------------ chunks


def split_frames(example: Mapping[str, Any], max_frames: int = MAX_NUM_CACHED_FRAMES, *,
                 frame_keys: Sequence[str] = FRAME_KEYS,
                 passthrough_keys: Sequence[str] = PIECE_KEYS) -> list[Example]:
    """Consecutive pieces of `max_frames` frames (the last shorter; none for an empty example).

    Frame-aligned keys are sliced; `passthrough_keys` are copied into every piece; other keys
    are dropped (as t5's `split_tokens`).
    """
    n = len(example[frame_keys[0]])
    pieces = []
    for start in range(0, n, max_frames):
        piece = {k: example[k][start:start + max_frames] for k in frame_keys}
        piece.update({k: example[k] for k in passthrough_keys})
        pieces.append(piece)
    return pieces


def random_chunk_bounds(num_frames: int, length: int, rng: RandomSource) -> tuple[int, int]:
    """[start, end) of a random run of <= `length` frames in an example of `num_frames` frames.

    As t5's `select_random_chunk(uniform_random_start=True)`: the start is uniform in
    [-length + 1, num_frames) and clipped to the example, so edge chunks are shorter and every
    frame is equally likely to be included. `num_frames` must be > 0.
    """
    if num_frames <= 0:
        raise ValueError(f"random_chunk_bounds: num_frames must be > 0, got {num_frames}")
    start = int(np.random.default_rng(rng).integers(-length + 1, num_frames))
    return max(start, 0), min(start + length, num_frames)


def select_random_chunk(example: Mapping[str, Any], length: int, rng: RandomSource, *,
                        frame_keys: Sequence[str] = FRAME_KEYS,
                        passthrough_keys: Sequence[str] = PIECE_KEYS) -> Example | None:
    """One random run of <= `length` frames (`random_chunk_bounds`); None for an empty example.

    Args:
      length: frames per example (`MT3_SPECTROGRAM_CONFIG.frames_per_segment` = 256 for MT3).
      rng: a np.random.Generator (advanced) or a seed for one.
    """
    n = len(example[frame_keys[0]])
    if n == 0:
        return None
    start, end = random_chunk_bounds(n, length, rng)
    out = {k: example[k][start:end] for k in frame_keys}
    out.update({k: example[k] for k in passthrough_keys})
    return out


# ------------------------------------------------------------------------------ targets


def chunk_target_sequence(targets: np.ndarray, event_start_indices: np.ndarray,
                          event_end_indices: np.ndarray, state_events: np.ndarray,
                          state_event_indices: np.ndarray, tie_id: int | None) -> np.ndarray:
    """A chunk's targets from its frames' indices into the file's events
    (`mt3x.codec.extract_target_sequence` over all of the chunk's frames).

    Args:
      targets: i32[E] the file's (or cached piece's) single-step events.
      event_start_indices, event_end_indices, state_event_indices: i32[F] of the chunk's frames.
      state_events: i32[S] the file's state events (tie sections).
      tie_id: codec id of `tie` to prepend the tie section in force at the first frame, or None.
    Returns:
      i32[n] codec ids (empty for a chunk without frames).
    """
    if len(event_start_indices) == 0:
        return np.zeros([0], np.int32)
    indexed = event_index.IndexedEvents(
        events=_i32(targets), event_start_indices=_i32(event_start_indices),
        event_end_indices=_i32(event_end_indices), state_events=_i32(state_events),
        state_event_indices=_i32(state_event_indices))
    return event_index.extract_target_sequence(indexed, 0, indexed.num_frames,
                                               state_events_end_token=tie_id)


def extract_target_sequence(example: Mapping[str, Any], tie_id: int | None) -> Example:
    """A chunk's events cut out of the file's events (`chunk_target_sequence`), the tie section
    prepended when `tie_id` is given. Returns {inputs, input_times, targets i32[n]}."""
    targets = chunk_target_sequence(
        example["targets"], example["input_event_start_indices"],
        example["input_event_end_indices"], example["state_events"],
        example["input_state_event_indices"], tie_id)
    return {"inputs": example["inputs"], "input_times": example["input_times"],
            "targets": targets}


def _with_targets(example: Mapping[str, Any], targets: np.ndarray) -> Example:
    return {**example, "targets": _i32(targets)}


def check_program_granularity(granularity: str) -> str:
    """`granularity` if it is one of 'flat', 'midi_class', 'full'; ValueError otherwise."""
    if granularity not in codec_vocabulary.PROGRAM_GRANULARITY_NAMES:
        raise ValueError(f"program granularity {granularity!r}; expected one of "
                         f"{codec_vocabulary.PROGRAM_GRANULARITY_NAMES}")
    return granularity


def map_program_granularity(example: Mapping[str, Any], codec: Codec,
                            granularity: str = "full") -> Example:
    """Program tokens of `targets` at granularity 'flat' (dropped), 'midi_class' (first program
    of the class) or 'full' (unchanged), as MT3's `map_midi_programs`."""
    check_program_granularity(granularity)
    if granularity == "full":
        return dict(example)
    return _with_targets(example, codec_vocabulary.map_program_tokens(
        _i32(example["targets"]), codec=codec, granularity=granularity))


def run_length_encode_shifts(example: Mapping[str, Any], codec: Codec) -> Example:
    """Single-step shifts of `targets` -> absolute step counts since the chunk start; trailing
    shifts dropped (`mt3x.codec.run_length_encode_shifts`)."""
    return _with_targets(example, run_length.run_length_encode_shifts(
        _i32(example["targets"]), codec=codec))


def remove_redundant_state_changes(example: Mapping[str, Any], codec: Codec) -> Example:
    """Drops velocity and program tokens of `targets` equal to the previous one of their type."""
    return _with_targets(example, run_length.remove_redundant_state_changes(
        _i32(example["targets"]), codec=codec))


# ------------------------------------------------------------------------------ mixing


def mix_group_size(rng: RandomSource, max_examples_per_mix: int) -> int:
    """How many examples the next mix holds: uniform in [1, max_examples_per_mix]."""
    return int(np.random.default_rng(rng).integers(1, max_examples_per_mix + 1))


def mix_examples(examples: Sequence[Mapping[str, Any]], codec: Codec, *,
                 combine_tie_sections: bool = True) -> Example:
    """Mixes 1..N examples: audio summed and peak-normalised, targets merged by time.

    Args:
      examples: dicts with `inputs` f32[F_i, 128] and run-length encoded `targets` i32[E_i]
        (not yet stripped of redundant state changes; right-padding with 0 is ignored).
      combine_tie_sections: unite the tie sections into one (default); False concatenates them
        as MT3 does (`mt3x.codec.merge_run_length_encoded_targets`).

    Returns:
      {inputs f32[max F_i, 128] (shorter inputs zero-padded, the sum divided by its peak
      absolute value; all zeros stay zeros; groups of one are normalised too, as MT3),
      targets i32[m]}.
    """
    if not examples:
        raise ValueError("mix_examples: no examples to mix")
    frames = max(len(ex["inputs"]) for ex in examples)
    width = np.shape(examples[0]["inputs"])[1]
    samples = np.zeros([frames, width], np.float32)
    for ex in examples:
        inputs = np.asarray(ex["inputs"], np.float32)
        samples[:len(inputs)] += inputs
    peak = np.float32(np.abs(samples).max()) if samples.size else np.float32(0)
    mixed = samples / peak if peak > 0 else np.zeros_like(samples)
    targets = run_length.merge_run_length_encoded_targets(
        [_i32(ex["targets"]) for ex in examples], codec,
        combine_tie_sections=combine_tie_sections)
    return {"inputs": mixed.astype(np.float32), "targets": _i32(targets)}


# ------------------------------------------------------------------------------ finish


def targets_too_long(example: Mapping[str, Any], target_length: int = DEFAULT_TARGET_LENGTH, *,
                     add_eos: bool = True) -> bool:
    """Whether `targets` exceed `target_length` tokens (less one for EOS when `add_eos`); MT3
    asserts or silently filters, the drivers drop and count such examples."""
    limit = target_length - 1 if add_eos else target_length
    return len(example["targets"]) > limit


def append_eos(example: Mapping[str, Any], codec: Codec) -> Example:
    """Codec ids of `targets` -> model ids (+3: 0 PAD, 1 EOS, 2 UNK) followed by EOS, as seqio's
    `tokenize_and_append_eos` with `mt3x.tasks.vocab.CodecVocabulary`."""
    ids = codec_vocabulary.vocabulary_from_codec(codec).encode(_i32(example["targets"]))
    return _with_targets(example, np.append(ids, np.int32(codec_vocabulary.EOS_ID)))


def split_into_segments(example: Mapping[str, Any],
                        length: int = MT3_SPECTROGRAM_CONFIG.frames_per_segment, *,
                        passthrough_keys: Sequence[str] = ("unique_id", "track_id", "id"),
                        ) -> list[Example]:
    """A whole file's consecutive `length`-frame segments (the last shorter) for inference.

    Each segment: `inputs` f32[<=length, D], `input_times` f32[<=length], `start_time` f32 (s,
    its first frame's time), `segment_index` i32, `num_segments` i32, `sequence` (the reference
    NoteSequence in segment 0, b'' elsewhere, as MT3), `targets` i32[0], and the
    `passthrough_keys` the example has.
    """
    n = len(example["inputs"])
    count = (n + length - 1) // length
    segments = []
    for i in range(count):
        window = slice(i * length, (i + 1) * length)
        segment = {k: example[k] for k in passthrough_keys if k in example}
        segment.update({
            "inputs": example["inputs"][window],
            "input_times": example["input_times"][window],
            "start_time": np.float32(example["input_times"][i * length]),
            "segment_index": np.int32(i),
            "num_segments": np.int32(count),
            "sequence": example["sequence"] if i == 0 else b"",
            "targets": np.zeros([0], np.int32),
        })
        segments.append(segment)
    return segments

"""seqio preprocessors of the MT3 transcription chain: tf.data wiring over `mt3x.tasks.examples`.

The chain for a training task (magenta/mt3 tasks.py order):

  tokenize -> split into cached chunks (2000 frames) -> [seqio.CacheDatasetPlaceholder] ->
  random 256-frame chunk -> extract targets (+ tie section) -> map program granularity ->
  run-length encode shifts -> [mix up to N examples] -> remove redundant state changes ->
  [log-mel inputs] -> skip & count too-long targets -> +3 model ids, EOS

Every stage is a `tf.data.Dataset -> tf.data.Dataset` function that seqio calls with the
keyword arguments it asks for (`sequence_length`, `output_features`). The per-example work is
`mt3x.tasks.examples`'s (numpy) through `tf.numpy_function`; the random choices use seqio's seeds,
so `task.get_dataset(seed=...)` is reproducible. Feature keys are those of `mt3x.tasks.examples`.

Problems in the data never crash the pipeline: a track that fails to tokenize and a target
longer than the target length are dropped and counted (`pipeline_counters()`).
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np
import seqio
import tensorflow as tf

from mt3x.audio.mt3_config import MT3_SPECTROGRAM_CONFIG
from mt3x.audio.mt3_frontend import mt3_log_mel
from mt3x.codec.codec import Codec
from mt3x.codec.vocabulary import TranscriptionConfig
from mt3x.tasks import examples
from mt3x.tasks.counters import count_event, pipeline_counters, reset_pipeline_counters
from mt3x.tasks.examples import (DEFAULT_TARGET_LENGTH, FRAME_KEYS, INDEX_KEYS,
                                 MAX_NUM_CACHED_FRAMES, PIECE_KEYS, chunk_target_sequence)

__all__ = [
    "DEFAULT_TARGET_LENGTH", "FRAME_KEYS", "INDEX_KEYS", "MAX_NUM_CACHED_FRAMES",
    "add_unique_id", "chunk_target_sequence", "compute_log_mel", "count_event",
    "extract_target_sequence_with_indices", "map_midi_programs", "mix_transcription_examples",
    "pipeline_counters", "remove_redundant_state_changes", "reset_pipeline_counters",
    "run_length_encode_shifts", "select_random_chunk", "skip_too_long", "split_frames",
    "split_into_segments", "tokenize_transcription_example",
]

log = logging.getLogger(__name__)

AUTOTUNE = tf.data.AUTOTUNE
_HOP_WIDTH = MT3_SPECTROGRAM_CONFIG.hop_width   # samples per input frame (128)


def _next_seed() -> int | None:
    """Takes the next seed from seqio's map seed manager (None when the dataset is unseeded).

    Mirrors `seqio.map_over_dataset(num_seeds=1)`, for stages that are not a per-example map.
    """
    seed = seqio.utils._NEXT_MAP_SEED  # pylint: disable=protected-access
    if seed is None:
        return None
    seqio.utils._NEXT_MAP_SEED = seed + 2  # pylint: disable=protected-access
    return int(seed)


def _input_length(sequence_length: Mapping[str, int] | None) -> int:
    """Frames per example: sequence_length['inputs'], else MT3's 256."""
    return (sequence_length or {}).get("inputs") or MT3_SPECTROGRAM_CONFIG.frames_per_segment


_TOKENIZED_KEYS = ("inputs", "input_times", "targets", "input_event_start_indices",
                   "input_event_end_indices", "state_events", "input_state_event_indices",
                   "sequence")


def tokenize_transcription_example(
    ds: tf.data.Dataset,
    *,
    config: TranscriptionConfig,
    is_training_data: bool,
    counter_key: str,
) -> tf.data.Dataset:
    """Audio -> 128-sample frames + frame times; NoteSequence -> events with per-frame indices
    (`examples.tokenize_track`).

    Input keys: `audio` f32[samples] at 16 kHz, `sequence` (serialized NoteSequence), others
    passed through. Output adds the frame keys, `targets`, `state_events` and replaces `sequence`
    with the NoteSequence actually encoded (sustain applied; trimmed when `is_training_data`);
    `audio` is dropped. A track that fails to tokenize is skipped and counted as
    `tracks_failed` under `counter_key`.

    Args:
      config: the codec preset (`PipelineCodec.config`).
      is_training_data: trim overlapping notes (training) or keep the reference as is (eval).
      counter_key: name under which failed tracks are counted.
    """

    def tokenize_np(audio, sequence, track_id):
        try:
            out = examples.tokenize_track(audio, bytes(sequence), config,
                                          is_training=is_training_data)
        except Exception as err:  # noqa: BLE001 - a bad track is skipped and counted
            count_event(counter_key, "tracks_failed")
            log.warning("skipping track %s: %s", track_id.decode(errors="replace"), err)
            empty = np.zeros([0], np.int32)
            return (np.zeros([0, _HOP_WIDTH], np.float32), np.zeros([0], np.float32), empty,
                    empty, empty, empty, empty, b"", False)
        return tuple(out[k] for k in _TOKENIZED_KEYS) + (True,)

    def tokenize(ex):
        results = tf.numpy_function(
            tokenize_np, [ex["audio"], ex["sequence"], ex.get("track_id", tf.constant(""))],
            [tf.float32, tf.float32, tf.int32, tf.int32, tf.int32, tf.int32, tf.int32,
             tf.string, tf.bool],
            stateful=False)
        out = {k: v for k, v in ex.items() if k != "audio"}
        for key, value in zip(_TOKENIZED_KEYS + ("ok",), results):
            out[key] = value
        out["inputs"].set_shape([None, _HOP_WIDTH])
        for key in _TOKENIZED_KEYS[1:7]:
            out[key].set_shape([None])
        out["sequence"].set_shape([])
        out["ok"].set_shape([])
        return out

    ds = ds.map(tokenize, num_parallel_calls=AUTOTUNE)
    ds = ds.filter(lambda ex: ex["ok"])
    return ds.map(lambda ex: {k: v for k, v in ex.items() if k != "ok"})


def split_frames(
    ds: tf.data.Dataset,
    *,
    max_frames: int = MAX_NUM_CACHED_FRAMES,
    frame_keys: Sequence[str] = FRAME_KEYS,
    passthrough_keys: Sequence[str] = PIECE_KEYS,
) -> tf.data.Dataset:
    """Splits every example into consecutive pieces of `max_frames` frames (the last shorter),
    as `examples.split_frames` (here in tf ops: pieces are slices, no host round trip).

    Frame-aligned keys are sliced; `passthrough_keys` are copied into every piece; other keys
    are dropped (as t5's `split_tokens`).
    """

    def pieces(ex):
        n = tf.shape(ex[frame_keys[0]])[0]
        count = (n + max_frames - 1) // max_frames

        def piece(i):
            i = tf.cast(i, tf.int32)
            out = {k: ex[k][i * max_frames:(i + 1) * max_frames] for k in frame_keys}
            out.update({k: ex[k] for k in passthrough_keys})
            return out

        return tf.data.Dataset.range(tf.cast(count, tf.int64)).map(piece)

    return ds.flat_map(pieces)


def select_random_chunk(
    ds: tf.data.Dataset,
    sequence_length: Mapping[str, int] | None = None,
    *,
    frame_keys: Sequence[str] = FRAME_KEYS,
    passthrough_keys: Sequence[str] = PIECE_KEYS,
) -> tf.data.Dataset:
    """Picks one random run of L = sequence_length['inputs'] frames from every example.

    The bounds are `examples.random_chunk_bounds` (start uniform in [-L + 1, n), clipped), drawn
    from a generator seeded by seqio's per-example seed. Empty examples are dropped.
    """
    length = _input_length(sequence_length)

    def bounds_np(n, seed):
        rng = np.random.default_rng([int(s) & 0xFFFFFFFF for s in np.ravel(seed)])
        return np.asarray(examples.random_chunk_bounds(int(n), length, rng), np.int32)

    @seqio.map_over_dataset(num_seeds=1)
    def chunk(ex, seed):
        n = tf.shape(ex[frame_keys[0]])[0]
        bounds = tf.numpy_function(bounds_np, [n, seed], tf.int32, stateful=False)
        bounds.set_shape([2])
        out = {k: ex[k][bounds[0]:bounds[1]] for k in frame_keys}
        out.update({k: ex[k] for k in passthrough_keys})
        return out

    ds = ds.filter(lambda ex: tf.size(ex[frame_keys[0]]) > 0)
    return chunk(ds)


def extract_target_sequence_with_indices(
    ds: tf.data.Dataset, *, tie_id: int | None
) -> tf.data.Dataset:
    """Cuts each chunk's events out of the file's events; prepends the tie section if `tie_id`.

    Drops the index keys and `state_events`; keeps `inputs`, `input_times`, `targets`.
    """

    def extract(ex):
        targets = tf.numpy_function(
            functools.partial(examples.chunk_target_sequence, tie_id=tie_id),
            [ex["targets"], ex["input_event_start_indices"], ex["input_event_end_indices"],
             ex["state_events"], ex["input_state_event_indices"]],
            tf.int32, stateful=False)
        targets.set_shape([None])
        return {"inputs": ex["inputs"], "input_times": ex["input_times"], "targets": targets}

    return ds.map(extract, num_parallel_calls=AUTOTUNE)


def _map_targets(ds: tf.data.Dataset, fn: Callable[[dict[str, Any]], dict[str, Any]]
                 ) -> tf.data.Dataset:
    """Applies an `examples` stage that rewrites only `targets` (i32[n] -> i32[m])."""

    def apply(ex):
        ex = dict(ex)
        out = tf.numpy_function(lambda t: fn({"targets": t})["targets"], [ex["targets"]],
                                tf.int32, stateful=False)
        out.set_shape([None])
        ex["targets"] = out
        return ex

    return ds.map(apply, num_parallel_calls=AUTOTUNE)


def map_midi_programs(ds: tf.data.Dataset, *, codec: Codec,
                      granularity: str = "full") -> tf.data.Dataset:
    """Program granularity `flat` / `midi_class` / `full` (`examples.map_program_granularity`)."""
    examples.check_program_granularity(granularity)
    if granularity == "full":
        return ds
    return _map_targets(ds, functools.partial(examples.map_program_granularity, codec=codec,
                                              granularity=granularity))


def run_length_encode_shifts(ds: tf.data.Dataset, *, codec: Codec) -> tf.data.Dataset:
    """Single-step shifts -> absolute step counts (`examples.run_length_encode_shifts`)."""
    return _map_targets(ds, functools.partial(examples.run_length_encode_shifts, codec=codec))


def remove_redundant_state_changes(ds: tf.data.Dataset, *, codec: Codec) -> tf.data.Dataset:
    """Drops repeated velocity / program tokens (`examples.remove_redundant_state_changes`)."""
    return _map_targets(ds, functools.partial(examples.remove_redundant_state_changes,
                                              codec=codec))


def mix_transcription_examples(
    ds: tf.data.Dataset,
    *,
    codec: Codec,
    max_examples_per_mix: int | None,
    shuffle_buffer_size: int = 1000,
    mt3_exact_merge: bool = False,
) -> tf.data.Dataset:
    """Mixes groups of 1..N examples (`examples.mix_examples`): audio summed and
    peak-normalised, targets merged by time.

    The group sizes are uniform in [1, N] (MT3 samples between batches of 1..N). Unlike MT3 the
    order is reproducible: the shuffle and the group sizes use seqio's seed. Targets must be
    run-length encoded and not yet stripped of redundant state changes; the tie sections are
    united into one or, with `mt3_exact_merge`, concatenated as MT3 does.

    Returns examples with `inputs` f32[F, 128] (F = longest in the group) and `targets`.
    """
    if not max_examples_per_mix:
        return ds
    n_max = int(max_examples_per_mix)
    seed = _next_seed()
    ds = ds.map(lambda ex: {"inputs": ex["inputs"], "targets": ex["targets"]})
    ds = ds.shuffle(max(1, shuffle_buffer_size // n_max), seed=seed)
    size_seed = tf.constant([0 if seed is None else seed, 7], tf.int64)
    if seed is None:
        size_seed = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int64)

    def group_size(g):
        s = tf.random.stateless_uniform([], seed=tf.stack([size_seed[0] + g, size_seed[1]]),
                                        minval=1, maxval=n_max + 1, dtype=tf.int64)
        return s

    def assign(state, ex):
        g, pos = state
        done = pos + 1 >= group_size(g)
        new_g = g + tf.cast(done, tf.int64)
        new_pos = tf.where(done, tf.constant(0, tf.int64), pos + 1)
        return (new_g, new_pos), (g, ex)

    ds = ds.scan((tf.constant(0, tf.int64), tf.constant(0, tf.int64)), assign)
    ds = ds.group_by_window(
        key_func=lambda g, ex: g,
        reduce_func=lambda key, window: window.map(lambda g, ex: ex).padded_batch(n_max),
        window_size_func=group_size)

    def mix_np(inputs, targets):
        # Rows are zero-padded to the group's longest: zeros add nothing to the sum, and
        # trailing 0 targets are read as padding by the merge.
        group = [{"inputs": x, "targets": t} for x, t in zip(inputs, targets)]
        out = examples.mix_examples(group, codec, combine_tie_sections=not mt3_exact_merge)
        return out["inputs"], out["targets"]

    def mix(ex):
        inputs, targets = tf.numpy_function(mix_np, [ex["inputs"], ex["targets"]],
                                            [tf.float32, tf.int32], stateful=False)
        inputs.set_shape([None, _HOP_WIDTH])
        targets.set_shape([None])
        return {"inputs": inputs, "targets": targets}

    return ds.map(mix, num_parallel_calls=AUTOTUNE)


_LOG_MEL = jax.jit(mt3_log_mel)


def _log_mel_np(frames: np.ndarray, length: int) -> np.ndarray:
    """f32[F, 128] frames -> f32[F, 512] MT3 log-mel (`mt3x.audio.mt3_log_mel`, jitted, on the
    example's frames zero-padded to `length`)."""
    n = len(frames)
    padded = np.zeros([1, length, _HOP_WIDTH], np.float32)
    padded[0, :n] = frames[:length]
    return np.asarray(_LOG_MEL(padded))[0, :n].astype(np.float32)


def compute_log_mel(ds: tf.data.Dataset, sequence_length: Mapping[str, int] | None = None
                    ) -> tf.data.Dataset:
    """Replaces `inputs` f32[F, 128] by MT3's log-mel f32[F, 512]; keeps `raw_inputs` f32[F*128].

    Computed per example on that example's samples (zero beyond its end), as MT3 does per segment.
    """
    length = _input_length(sequence_length)

    def spectrogram(ex):
        ex = dict(ex)
        mel = tf.numpy_function(lambda f: _log_mel_np(f, length), [ex["inputs"]], tf.float32,
                                stateful=False)
        mel.set_shape([None, MT3_SPECTROGRAM_CONFIG.num_mel_bins])
        ex["raw_inputs"] = tf.reshape(ex["inputs"], [-1])
        ex["inputs"] = mel
        return ex

    return ds.map(spectrogram, num_parallel_calls=AUTOTUNE)


def skip_too_long(
    ds: tf.data.Dataset,
    output_features: Mapping[str, seqio.Feature],
    sequence_length: Mapping[str, int] | None = None,
    *,
    counter_key: str,
) -> tf.data.Dataset:
    """Drops examples whose targets exceed the target length (less 1 for EOS;
    `examples.targets_too_long`) and counts them.

    MT3 asserts (crashing the job) or silently filters; here each dropped example adds 1 to
    `pipeline_counters(counter_key)['examples_too_long']`.
    """
    target_length = (sequence_length or {}).get("targets") or DEFAULT_TARGET_LENGTH
    add_eos = bool(output_features["targets"].add_eos)

    def keep_np(targets):
        count_event(counter_key, "examples_seen")
        if examples.targets_too_long({"targets": targets}, target_length, add_eos=add_eos):
            count_event(counter_key, "examples_too_long")
            return False
        return True

    def keep(ex):
        ok = tf.numpy_function(keep_np, [ex["targets"]], tf.bool, stateful=True)
        ok.set_shape([])
        return ok

    return ds.filter(keep)


# ------------------------------------------------------------------------------ eval stages


def add_unique_id(ds: tf.data.Dataset) -> tf.data.Dataset:
    """Adds `unique_id` i64: the example's position in the (unshuffled) split."""
    return ds.enumerate().map(lambda i, ex: {**ex, "unique_id": i})


def split_into_segments(
    ds: tf.data.Dataset,
    sequence_length: Mapping[str, int] | None = None,
    *,
    passthrough_keys: Sequence[str] = ("unique_id", "track_id"),
) -> tf.data.Dataset:
    """Cuts a whole file into consecutive L-frame segments (the last shorter) for inference, as
    `examples.split_into_segments` (here in tf ops: segments are slices).

    Adds per segment: `segment_index` i32, `num_segments` i32, `start_time` f32 (s, the first
    frame's time), `input_times` f32[<=L]; `sequence` (the reference NoteSequence) is kept in
    segment 0 only, empty elsewhere (as MT3). Targets are replaced by an empty array.
    """
    length = _input_length(sequence_length)

    def segments(ex):
        n = tf.shape(ex["inputs"])[0]
        count = (n + length - 1) // length

        def segment(i):
            i = tf.cast(i, tf.int32)
            out = {k: ex[k] for k in passthrough_keys if k in ex}
            out["inputs"] = ex["inputs"][i * length:(i + 1) * length]
            out["input_times"] = ex["input_times"][i * length:(i + 1) * length]
            out["start_time"] = ex["input_times"][i * length]
            out["segment_index"] = i
            out["num_segments"] = count
            out["sequence"] = tf.where(i == 0, ex["sequence"], tf.constant(b""))
            out["targets"] = tf.zeros([0], tf.int32)
            return out

        return tf.data.Dataset.range(tf.cast(count, tf.int64)).map(segment)

    return ds.flat_map(segments)

"""seqio preprocessors of the MT3 transcription chain (tf.data stages over numpy kernels).

The chain for a training task (magenta/mt3 tasks.py order):

  tokenize -> split into cached chunks (2000 frames) -> [seqio.CacheDatasetPlaceholder] ->
  random 256-frame chunk -> extract targets (+ tie section) -> map program granularity ->
  run-length encode shifts -> [mix up to N examples] -> remove redundant state changes ->
  [log-mel inputs] -> skip & count too-long targets -> +3 model ids, EOS

Every stage is a `tf.data.Dataset -> tf.data.Dataset` function that seqio calls with the
keyword arguments it asks for (`sequence_length`, `output_features`). The per-example token work
is `mt3x.codec`'s (numpy) through `tf.numpy_function`; the random choices use seqio's seeds,
so `task.get_dataset(seed=...)` is reproducible.

Feature keys between stages (F = frames, E = events):
  inputs f32[F, 128] (16 kHz sample frames, 8 ms each), input_times f32[F] (s),
  targets i32[E] (codec ids), input_event_start_indices / input_event_end_indices /
  input_state_event_indices i32[F], state_events i32[S], sequence (serialized NoteSequence).

Problems in the data never crash the pipeline: a track that fails to tokenize and a target
longer than the target length are dropped and counted (`pipeline_counters()`).
"""

from __future__ import annotations

import collections
import functools
import logging
import threading
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import seqio
import tensorflow as tf

from mt3x.codec import event_index, run_length
from mt3x.codec import vocabulary as codec_vocabulary
from mt3x.codec.codec import Codec

log = logging.getLogger(__name__)

AUTOTUNE = tf.data.AUTOTUNE
SAMPLE_RATE = 16000
HOP_WIDTH = 128                 # samples per input frame
FRAMES_PER_SECOND = SAMPLE_RATE / HOP_WIDTH
MAX_NUM_CACHED_FRAMES = 2000    # MT3: split frame sequences to this length before the cache
DEFAULT_INPUT_LENGTH = 256      # frames per example (2.048 s)
DEFAULT_TARGET_LENGTH = 1024    # tokens incl. EOS
NUM_MEL_BINS = 512

FRAME_KEYS = ("inputs", "input_times", "input_event_start_indices", "input_event_end_indices",
              "input_state_event_indices")
INDEX_KEYS = FRAME_KEYS[2:]

# ------------------------------------------------------------------------------ counters

_COUNTS: collections.Counter = collections.Counter()
_COUNTS_LOCK = threading.Lock()


def count_event(key: str, name: str, n: int = 1) -> None:
    """Adds n to the pipeline counter `name` of task/key `key` (thread-safe)."""
    with _COUNTS_LOCK:
        _COUNTS[(key, name)] += n


def pipeline_counters(key: str | None = None) -> dict[str, int] | dict[tuple[str, str], int]:
    """Counts of dropped data since the last reset.

    Names: `examples_too_long` (targets over the target length, skipped), `examples_seen`
    (examples that reached the length check), `tracks_failed` (tracks that could not be
    tokenized, skipped). With `key` (a task name) returns {name: count} for that task, else
    {(task, name): count}.
    """
    with _COUNTS_LOCK:
        if key is None:
            return dict(_COUNTS)
        return {name: n for (k, name), n in _COUNTS.items() if k == key}


def reset_pipeline_counters() -> None:
    """Sets every pipeline counter back to zero."""
    with _COUNTS_LOCK:
        _COUNTS.clear()


def _next_seed() -> int | None:
    """Takes the next seed from seqio's map seed manager (None when the dataset is unseeded).

    Mirrors `seqio.map_over_dataset(num_seeds=1)`, for stages that are not a per-example map.
    """
    seed = seqio.utils._NEXT_MAP_SEED  # pylint: disable=protected-access
    if seed is None:
        return None
    seqio.utils._NEXT_MAP_SEED = seed + 2  # pylint: disable=protected-access
    return int(seed)


# ------------------------------------------------------------------------------ numpy kernels


def audio_to_frames(samples: np.ndarray, hop_width: int = HOP_WIDTH) -> tuple[np.ndarray, np.ndarray]:
    """Cuts audio into non-overlapping frames, as MT3 does.

    MT3 always pads `hop_width - len % hop_width` zeros (a full frame when the length is already
    a multiple), so there are `len // hop_width + 1` frames.

    Args:
      samples: f32[n] audio at 16 kHz.
    Returns:
      frames f32[F, hop_width], times f64[F] (frame start times in seconds). The times stay
      float64 for event indexing, as in MT3: in float32 a frame starting exactly on a 10 ms
      step would fall into the previous step.
    """
    samples = np.asarray(samples, np.float32).reshape(-1)
    pad = hop_width - len(samples) % hop_width
    samples = np.pad(samples, (0, pad))
    frames = samples.reshape(-1, hop_width)
    times = np.arange(len(frames)) / (SAMPLE_RATE / hop_width)
    return frames, times


TokenizeFn = Callable[[bytes, np.ndarray, bool], Mapping[str, Any]]


def tokenize_transcription_example(
    ds: tf.data.Dataset,
    *,
    tokenize_fn: TokenizeFn,
    is_training_data: bool,
    counter_key: str,
) -> tf.data.Dataset:
    """Audio -> 128-sample frames + frame times; NoteSequence -> events with per-frame indices.

    Input keys: `audio` f32[samples] at 16 kHz, `sequence` (serialized NoteSequence), others
    passed through. Output adds the frame keys, `targets`, `state_events` and replaces `sequence`
    with the NoteSequence actually encoded (sustain applied; trimmed when `is_training_data`);
    `audio` is dropped.

    Args:
      tokenize_fn: (serialized NoteSequence, frame_times f64[F], is_training_data) -> mapping
        with targets, input_event_start_indices, input_event_end_indices, state_events,
        input_state_event_indices (int arrays) and sequence (bytes). Raises on bad input.
      is_training_data: trim overlapping notes (training) or keep the reference as is (eval).
      counter_key: name under which failed tracks are counted.
    """

    def tokenize_np(audio, sequence, track_id):
        frames, times = audio_to_frames(audio)
        try:
            out = tokenize_fn(bytes(sequence), times, is_training_data)
        except Exception as err:  # noqa: BLE001 - a bad track is skipped and counted
            count_event(counter_key, "tracks_failed")
            log.warning("skipping track %s: %s", track_id.decode(errors="replace"), err)
            empty = np.zeros([0], np.int32)
            return (np.zeros([0, HOP_WIDTH], np.float32), np.zeros([0], np.float32), empty,
                    empty, empty, empty, empty, b"", False)
        as_i32 = lambda k: np.asarray(out[k], np.int32).reshape(-1)  # noqa: E731
        return (frames, times.astype(np.float32), as_i32("targets"), as_i32("input_event_start_indices"),
                as_i32("input_event_end_indices"), as_i32("state_events"),
                as_i32("input_state_event_indices"), bytes(out["sequence"]), True)

    def tokenize(ex):
        results = tf.numpy_function(
            tokenize_np, [ex["audio"], ex["sequence"], ex.get("track_id", tf.constant(""))],
            [tf.float32, tf.float32, tf.int32, tf.int32, tf.int32, tf.int32, tf.int32,
             tf.string, tf.bool],
            stateful=False)
        keys = ("inputs", "input_times", "targets", "input_event_start_indices",
                "input_event_end_indices", "state_events", "input_state_event_indices",
                "sequence", "ok")
        out = {k: v for k, v in ex.items() if k != "audio"}
        for key, value in zip(keys, results):
            out[key] = value
        out["inputs"].set_shape([None, HOP_WIDTH])
        for key in keys[1:7]:
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
    passthrough_keys: Sequence[str] = ("targets", "state_events"),
) -> tf.data.Dataset:
    """Splits every example into consecutive pieces of `max_frames` frames (the last shorter).

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
    passthrough_keys: Sequence[str] = ("targets", "state_events"),
) -> tf.data.Dataset:
    """Picks one random run of L = sequence_length['inputs'] frames from every example.

    As t5's `select_random_chunk(uniform_random_start=True)`: the start is uniform in
    [-L + 1, n) and clipped to the example, so edge chunks are shorter and every frame is equally
    likely to be included. Empty examples are dropped. Seeded by seqio's seed.
    """
    length = (sequence_length or {}).get("inputs") or DEFAULT_INPUT_LENGTH

    @seqio.map_over_dataset(num_seeds=1)
    def chunk(ex, seed):
        n = tf.shape(ex[frame_keys[0]])[0]
        start = tf.random.stateless_uniform([], minval=-length + 1, maxval=n, dtype=tf.int32,
                                            seed=seed)
        end = tf.minimum(start + length, n)
        start = tf.maximum(start, 0)
        out = {k: ex[k][start:end] for k in frame_keys}
        out.update({k: ex[k] for k in passthrough_keys})
        return out

    ds = ds.filter(lambda ex: tf.size(ex[frame_keys[0]]) > 0)
    return chunk(ds)


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
        events=np.asarray(targets, np.int32),
        event_start_indices=np.asarray(event_start_indices, np.int32),
        event_end_indices=np.asarray(event_end_indices, np.int32),
        state_events=np.asarray(state_events, np.int32),
        state_event_indices=np.asarray(state_event_indices, np.int32))
    return event_index.extract_target_sequence(indexed, 0, indexed.num_frames,
                                               state_events_end_token=tie_id)


def extract_target_sequence_with_indices(
    ds: tf.data.Dataset, *, tie_id: int | None
) -> tf.data.Dataset:
    """Cuts each chunk's events out of the file's events; prepends the tie section if `tie_id`.

    Drops the index keys and `state_events`; keeps `inputs`, `input_times`, `targets`.
    """

    def extract(ex):
        targets = tf.numpy_function(
            functools.partial(chunk_target_sequence, tie_id=tie_id),
            [ex["targets"], ex["input_event_start_indices"], ex["input_event_end_indices"],
             ex["state_events"], ex["input_state_event_indices"]],
            tf.int32, stateful=False)
        targets.set_shape([None])
        return {"inputs": ex["inputs"], "input_times": ex["input_times"], "targets": targets}

    return ds.map(extract, num_parallel_calls=AUTOTUNE)


def _map_tokens(ds: tf.data.Dataset, fn: Callable[[np.ndarray], np.ndarray],
                key: str = "targets") -> tf.data.Dataset:
    """Applies a pure numpy int32[n] -> int32[m] function to feature `key`."""

    def apply(ex):
        ex = dict(ex)
        out = tf.numpy_function(lambda t: fn(t).astype(np.int32), [ex[key]], tf.int32,
                                stateful=False)
        out.set_shape([None])
        ex[key] = out
        return ex

    return ds.map(apply, num_parallel_calls=AUTOTUNE)


def map_midi_programs(ds: tf.data.Dataset, *, codec: Codec,
                      granularity: str = "full") -> tf.data.Dataset:
    """Program granularity `flat` / `midi_class` / `full` on the targets (MT3 map_midi_programs)."""
    if granularity not in codec_vocabulary.PROGRAM_GRANULARITY_NAMES:
        raise ValueError(f"program granularity {granularity!r}; expected one of "
                         f"{codec_vocabulary.PROGRAM_GRANULARITY_NAMES}")
    if granularity == "full":
        return ds
    return _map_tokens(ds, functools.partial(codec_vocabulary.map_program_tokens, codec=codec,
                                             granularity=granularity))


def run_length_encode_shifts(ds: tf.data.Dataset, *, codec: Codec) -> tf.data.Dataset:
    """Single-step shifts -> absolute step counts since the chunk start; trailing shifts dropped
    (`mt3x.codec.run_length_encode_shifts`)."""
    return _map_tokens(ds, functools.partial(run_length.run_length_encode_shifts, codec=codec))


def remove_redundant_state_changes(ds: tf.data.Dataset, *, codec: Codec) -> tf.data.Dataset:
    """Drops velocity and program tokens equal to the previous one of their type."""
    return _map_tokens(ds, functools.partial(run_length.remove_redundant_state_changes,
                                             codec=codec))


def mix_transcription_examples(
    ds: tf.data.Dataset,
    *,
    codec: Codec,
    max_examples_per_mix: int | None,
    shuffle_buffer_size: int = 1000,
    mt3_exact_merge: bool = False,
) -> tf.data.Dataset:
    """Mixes groups of 1..N examples: audio summed and peak-normalised, targets merged by time.

    The group sizes are uniform in [1, N] (MT3 samples between batches of 1..N). Unlike MT3 the
    order is reproducible: the shuffle and the group sizes use seqio's seed. Every output is
    peak-normalised, also groups of one (as MT3). Targets must be run-length encoded and not yet
    stripped of redundant state changes; they are merged by
    `mt3x.codec.merge_run_length_encoded_targets`, with the tie sections united into one
    (`combine_tie_sections=True`) or, with `mt3_exact_merge`, concatenated as MT3 does.

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

    def mix_targets_np(targets):
        return run_length.merge_run_length_encoded_targets(
            targets, codec, combine_tie_sections=not mt3_exact_merge)

    def mix(ex):
        samples = tf.reduce_sum(ex["inputs"], axis=0)
        peak = tf.reduce_max(tf.abs(samples))
        targets = tf.numpy_function(mix_targets_np, [ex["targets"]], tf.int32, stateful=False)
        targets.set_shape([None])
        return {"inputs": tf.math.divide_no_nan(samples, peak), "targets": targets}

    return ds.map(mix, num_parallel_calls=AUTOTUNE)


_LOG_MEL = None


def _log_mel_np(frames: np.ndarray, length: int) -> np.ndarray:
    """f32[F, 128] frames -> f32[F, 512] MT3 log-mel via mt3x.audio.mt3_log_mel (JAX, jitted)."""
    global _LOG_MEL
    if _LOG_MEL is None:
        import jax

        from mt3x.audio import mt3_log_mel
        _LOG_MEL = jax.jit(mt3_log_mel)
    n = len(frames)
    padded = np.zeros([1, length, HOP_WIDTH], np.float32)
    padded[0, :n] = frames[:length]
    return np.asarray(_LOG_MEL(padded))[0, :n].astype(np.float32)


def compute_log_mel(ds: tf.data.Dataset, sequence_length: Mapping[str, int] | None = None
                    ) -> tf.data.Dataset:
    """Replaces `inputs` f32[F, 128] by MT3's log-mel f32[F, 512]; keeps `raw_inputs` f32[F*128].

    Computed per example on that example's samples (zero beyond its end), as MT3 does per segment.
    """
    length = (sequence_length or {}).get("inputs") or DEFAULT_INPUT_LENGTH

    def spectrogram(ex):
        ex = dict(ex)
        mel = tf.numpy_function(lambda f: _log_mel_np(f, length), [ex["inputs"]], tf.float32,
                                stateful=False)
        mel.set_shape([None, NUM_MEL_BINS])
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
    """Drops examples whose targets exceed the target length (less 1 for EOS) and counts them.

    MT3 asserts (crashing the job) or silently filters; here each dropped example adds 1 to
    `pipeline_counters(counter_key)['examples_too_long']`.
    """
    max_len = (sequence_length or {}).get("targets") or DEFAULT_TARGET_LENGTH
    if output_features["targets"].add_eos:
        max_len -= 1

    def keep_np(n):
        count_event(counter_key, "examples_seen")
        if n > max_len:
            count_event(counter_key, "examples_too_long")
            return False
        return True

    def keep(ex):
        ok = tf.numpy_function(keep_np, [tf.size(ex["targets"])], tf.bool, stateful=True)
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
    """Cuts a whole file into consecutive L-frame segments (the last shorter) for inference.

    Adds per segment: `segment_index` i32, `num_segments` i32, `start_time` f32 (s, the first
    frame's time), `input_times` f32[<=L]; `sequence` (the reference NoteSequence) is kept in
    segment 0 only, empty elsewhere (as MT3). Targets are replaced by an empty array.
    """
    length = (sequence_length or {}).get("inputs") or DEFAULT_INPUT_LENGTH

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

"""The TF-free MT3 training input: Grain over the offline piece cache (`mt3x.tasks.cache`).

The same numpy stages as the seqio driver (`mt3x.tasks.preprocessors`), from the cached pieces:

  pieces (ArrayRecord) -> shuffle (seed; reshuffled every epoch) -> repeat ->
  random L-frame chunk + targets with the tie section + program granularity + run-length shifts
  (one `np.random.Generator` per element from (seed, index)) -> [mix 1..N chunks] ->
  remove redundant state changes -> drop too-long targets -> model ids + EOS -> pad ->
  this host's share -> batch -> worker processes

Batches have the keys, dtypes and shapes of `mt3x.tasks.registry.make_train_batches` (see
docs/INTERFACES.md): encoder_input_tokens f32[B, L, 128], encoder_input_lengths i32[B],
decoder_input_tokens / decoder_target_tokens i32[B, N], decoder_loss_weights f32[B, N].

Mixing is random access: example k mixes chunks k*M .. k*M + g - 1 of the shuffled stream
(M = max examples per mix, g uniform in [1, M] from (seed, k)), so every example is a function
of its index; the group-size and member distribution is seqio's (uniform size, random members),
an epoch yields ~len/M mixed examples. Every random choice comes from `seed`; a host reads
examples `process_index::process_count`; `GrainBatchSource` saves the iterator position in the
checkpoint, so a resumed run continues at the same example.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

import grain
import numpy as np
from absl import flags

from mt3x.codec import vocabulary as codec_vocabulary
from mt3x.codec.vocabulary import PAD_ID
from mt3x.errors import Mt3xError
from mt3x.tasks import examples
from mt3x.tasks.cache import (check_manifest, decode_piece, dequantize_inputs, load_manifest,
                              shard_paths)
from mt3x.tasks.counters import count_event
from mt3x.tasks.synthetic_cache import write_synthetic_cache

Batch = dict[str, np.ndarray]
HOP_WIDTH = 128  # samples per input frame (MT3_SPECTROGRAM_CONFIG.hop_width)


class GrainPipelineError(Mt3xError):
    """Settings of the Grain pipeline that do not fit, or a data position it cannot restore."""


@dataclasses.dataclass(frozen=True)
class GrainPipelineConfig:
    """One Grain input pipeline over a piece cache.

    cache_dir: a complete cache (`mt3x-data cache`). split: the cached split to read.
    vocab, dataset_name, program_source: what the run expects; the manifest must match.
    batch_size: examples per batch on this host.
    input_length: frames per example (None: the preset's, 256 for 'mt3').
    target_length: target tokens with EOS; longer examples are dropped and counted.
    max_examples_per_mix: mix 1..N chunks (None or 1: no mixing).
    program_granularity: 'flat' | 'midi_class' | 'full' (None: the preset's).
    mt3_exact_merge: concatenate tie sections when mixing, as MT3 (default: unite them).
    worker_count: Grain worker processes (0: in this process).
    worker_buffer_size: batches each worker prepares ahead.
    read_threads: threads per process reading and transforming examples.
    shard_index, num_shards: this host's share (jax.process_index(), jax.process_count()).
    num_epochs: passes over the pieces (None: forever).
    dataset_fingerprints: split -> fingerprint of the dataset folder, checked when given.
    """

    cache_dir: str | os.PathLike
    split: str = "train"
    vocab: str = "mt3"
    dataset_name: str = "slakh"
    program_source: str | None = None
    batch_size: int = 8
    input_length: int | None = None
    target_length: int = examples.DEFAULT_TARGET_LENGTH
    max_examples_per_mix: int | None = None
    program_granularity: str | None = None
    mt3_exact_merge: bool = False
    worker_count: int = 0
    worker_buffer_size: int = 2
    read_threads: int = 2
    shard_index: int = 0
    num_shards: int = 1
    num_epochs: int | None = None
    dataset_fingerprints: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.target_length < 2:
            raise GrainPipelineError(f"grain: need batch_size >= 1 and target_length >= 2, got "
                                     f"{self.batch_size} and {self.target_length}")
        if not 0 <= self.shard_index < self.num_shards:
            raise GrainPipelineError(f"grain: shard_index {self.shard_index} not in "
                                     f"[0, {self.num_shards})")
        if self.worker_count < 0 or self.read_threads < 1:
            raise GrainPipelineError(f"grain: need worker_count >= 0 and read_threads >= 1, got "
                                     f"{self.worker_count} and {self.read_threads}")
        if self.program_granularity is not None:
            examples.check_program_granularity(self.program_granularity)


def _allow_unparsed_absl_flags() -> None:
    """Grain reads absl flags in its workers; a library caller has not parsed any."""
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


# ------------------------------------------------------------------------------ stages


class EpochShuffledRecords:
    """Index i of the repeated stream -> record bytes of piece perm_e[i mod n], e = i div n,
    perm_e = a permutation drawn from (seed, e): every epoch visits every piece once in a new
    order. (Grain's `MapDataset.shuffle` takes ~9 ms per element on datasets of a few pieces;
    this takes one permutation per epoch, cached.)"""

    def __init__(self, source: Any, seed: int) -> None:
        self.source = source
        self.seed = int(seed)
        self._epoch: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.source)

    def __call__(self, index: int) -> bytes:
        n = len(self.source)
        epoch, position = divmod(int(index), n)
        if self._epoch is None or self._epoch[0] != epoch:
            self._epoch = (epoch, np.random.default_rng([self.seed, 3, epoch]).permutation(n))
        return self.source[int(self._epoch[1][position])]

    def __getstate__(self) -> dict[str, Any]:
        return {"source": self.source, "seed": self.seed, "_epoch": None}


@functools.lru_cache(maxsize=None)
def _tie_id(vocab: str) -> int | None:
    """The codec index of `tie` in preset `vocab` (None without ties)."""
    config = codec_vocabulary.get_config(vocab)
    return config.codec.encode("tie", 0) if config.use_ties else None


@dataclasses.dataclass(frozen=True)
class ChunkStage:
    """Piece -> random chunk -> its targets (tie section) -> program granularity -> run-length
    shifts: {inputs f32[<=L, 128], targets i32[n] codec ids}. Called with a numpy Generator."""

    vocab: str
    input_length: int
    granularity: str

    def __call__(self, record: bytes, rng: np.random.Generator) -> dict[str, np.ndarray] | None:
        config = codec_vocabulary.get_config(self.vocab)
        tie_id = _tie_id(self.vocab)
        piece = decode_piece(record, dequantize=False)
        chunk = examples.select_random_chunk(piece, self.input_length, rng)
        if chunk is None:
            return None
        chunk["inputs_scale"] = piece["inputs_scale"]
        example = examples.extract_target_sequence(dequantize_inputs(chunk), tie_id)
        example = examples.map_program_granularity(example, config.codec, self.granularity)
        example = examples.run_length_encode_shifts(example, config.codec)
        return {"inputs": example["inputs"], "targets": example["targets"]}


@dataclasses.dataclass(frozen=True)
class ExampleStage:
    """Index k of the example stream -> one padded training example, or None when its targets
    are too long (counted as `examples_too_long` under `counter_key`).

    Mixes chunks k*M .. k*M + g - 1 of `chunks` (g uniform in [1, M] from (seed, k)) when
    M = max_examples_per_mix > 1; then removes redundant state changes, appends EOS and pads.
    """

    chunks: Any   # grain.MapDataset of ChunkStage outputs
    vocab: str
    input_length: int
    target_length: int
    max_examples_per_mix: int
    mt3_exact_merge: bool
    seed: int
    counter_key: str

    def __call__(self, k: int) -> dict[str, np.ndarray] | None:
        codec = codec_vocabulary.get_config(self.vocab).codec
        m = self.max_examples_per_mix
        if m > 1:
            size = examples.mix_group_size(np.random.default_rng([self.seed, 7, int(k)]), m)
            group = [self.chunks[int(k) * m + j] for j in range(size)]
            group = [g for g in group if g is not None]
            if not group:
                return None
            example = examples.mix_examples(group, codec,
                                            combine_tie_sections=not self.mt3_exact_merge)
        else:
            example = self.chunks[int(k)]
            if example is None:
                return None
        example = examples.remove_redundant_state_changes(example, codec)
        count_event(self.counter_key, "examples_seen")
        if examples.targets_too_long(example, self.target_length):
            count_event(self.counter_key, "examples_too_long")
            return None
        example = examples.append_eos(example, codec)
        return model_features(example, self.input_length, self.target_length)


def model_features(example: Mapping[str, Any], input_length: int,
                   target_length: int) -> dict[str, np.ndarray]:
    """{inputs f32[F<=L, D], targets i32[T<=N] model ids + EOS} -> the model's features, as
    `ContinuousInputsEncDecFeatureConverter` (unpacked): inputs zero-padded to L, lengths F,
    targets padded with PAD (0), decoder inputs = targets shifted right (BOS 0), loss weights
    1.0 where targets are not PAD."""
    inputs = np.asarray(example["inputs"], np.float32)[:input_length]
    targets = np.asarray(example["targets"], np.int32)[:target_length]
    if len(inputs) == input_length:
        encoder = inputs
    else:
        encoder = np.zeros([input_length, inputs.shape[1]], np.float32)
        encoder[:len(inputs)] = inputs
    decoder_targets = np.full([target_length], PAD_ID, np.int32)
    decoder_targets[:len(targets)] = targets
    decoder_inputs = np.concatenate([[0], decoder_targets[:-1]]).astype(np.int32)
    return {"encoder_input_tokens": encoder,
            "encoder_input_lengths": np.int32(len(inputs)),
            "decoder_target_tokens": decoder_targets,
            "decoder_input_tokens": decoder_inputs,
            "decoder_loss_weights": (decoder_targets != PAD_ID).astype(np.float32)}


# ------------------------------------------------------------------------------ datasets


def example_dataset(config: GrainPipelineConfig, seed: int) -> grain.MapDataset:
    """The stream of this host's padded examples (None where an example is dropped), random
    access by index; from the cache named by `config` (its manifest checked)."""
    manifest = load_manifest(config.cache_dir)
    check_manifest(manifest, vocab=config.vocab, dataset_name=config.dataset_name,
                   program_source=config.program_source, splits=(config.split,),
                   dataset_fingerprints=config.dataset_fingerprints,
                   where=str(config.cache_dir))
    preset = codec_vocabulary.get_config(config.vocab)
    input_length = int(config.input_length or preset.inputs_length)
    granularity = config.program_granularity or preset.program_granularity
    source = grain.sources.ArrayRecordDataSource(shard_paths(config.cache_dir, manifest,
                                                            config.split))
    total = len(source) * config.num_epochs if config.num_epochs else sys.maxsize
    pieces = grain.MapDataset.range(total).map(EpochShuffledRecords(source, seed))
    chunks = pieces.random_map(ChunkStage(config.vocab, input_length, granularity), seed=seed)
    mix = int(config.max_examples_per_mix or 1)
    stage = ExampleStage(chunks=chunks, vocab=config.vocab, input_length=input_length,
                         target_length=int(config.target_length), max_examples_per_mix=mix,
                         mt3_exact_merge=config.mt3_exact_merge, seed=int(seed),
                         counter_key=f"grain:{config.split}")
    stream = grain.MapDataset.range(len(chunks) // mix).map(stage)
    if config.num_shards > 1:
        stream = stream[config.shard_index::config.num_shards]
    return stream


def batch_dataset(config: GrainPipelineConfig, seed: int) -> grain.IterDataset:
    """Batches of `config.batch_size` examples (the last partial batch dropped), prepared by
    `config.worker_count` worker processes."""
    _allow_unparsed_absl_flags()
    stream = example_dataset(config, seed).filter(lambda ex: ex is not None)
    batches = stream.to_iter_dataset(grain.ReadOptions(
        num_threads=config.read_threads, prefetch_buffer_size=4 * config.batch_size)).batch(
        config.batch_size, drop_remainder=True)
    if config.worker_count > 0:
        batches = batches.mp_prefetch(grain.MultiprocessingOptions(
            num_workers=config.worker_count, per_worker_buffer_size=config.worker_buffer_size))
    return batches


class GrainBatchSource:
    """A `mt3x.trainer.BatchSource` over `batch_dataset`: its position is Grain's iterator state
    (saved in every checkpoint as JSON), so a resumed run continues at the same example without
    replaying the batches before it."""

    def __init__(self, config: GrainPipelineConfig, *, seed: int = 0) -> None:
        self.config = config
        self.seed = int(seed)
        self._state: dict[str, Any] | None = None
        self._iterator: Any = None

    def get_state(self) -> dict[str, Any]:
        iterator_state = self._iterator.get_state() if self._iterator is not None else \
            self._state
        return {"kind": "grain", "seed": self.seed, "split": self.config.split,
                "shard": [self.config.shard_index, self.config.num_shards],
                "iterator": json.dumps(iterator_state)}

    def set_state(self, state: Mapping[str, Any]) -> None:
        if state.get("kind") != "grain":
            raise GrainPipelineError(
                f"data position {dict(state)} was not written by the Grain pipeline; resume "
                "this run with the input pipeline it was started with")
        if list(state.get("shard", [])) != [self.config.shard_index, self.config.num_shards]:
            raise GrainPipelineError(
                f"data position of host shard {state.get('shard')} cannot resume host shard "
                f"{[self.config.shard_index, self.config.num_shards]}")
        self.seed = int(state["seed"])
        self._state = json.loads(state["iterator"])
        self._iterator = None

    def __iter__(self) -> Iterator[Batch]:
        iterator = iter(batch_dataset(self.config, self.seed))
        if self._state is not None:
            iterator.set_state(self._state)
        self._iterator = iterator
        return iterator


# ------------------------------------------------------------------------------ benchmark


def _rate(config: GrainPipelineConfig, batches: int) -> float:
    """Examples/s of `batch_dataset(config)` over `batches` batches after two warm-up batches
    per worker (every worker process started and producing)."""
    iterator = iter(batch_dataset(config, seed=0))
    try:
        for _ in range(2 * max(1, config.worker_count)):
            next(iterator)
        start = time.perf_counter()
        for _ in range(batches):
            next(iterator)
        return batches * config.batch_size / (time.perf_counter() - start)
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def benchmark_pipeline(*, quick: bool, cache_dir: str | os.PathLike | None = None,
                       workers: int | None = None, batch_size: int = 32,
                       batches: int | None = None, vocab: str = "mt3",
                       dataset_name: str = "slakh") -> dict[str, Any]:
    """Examples/s of the Grain pipeline in this process and with N worker processes.

    Args:
      quick: tiny run (a few batches; for CI on CPU).
      cache_dir: a piece cache (None: a synthetic one is written to a temporary folder).
      workers: N (default: the CPU cores available, at least 2).
      batch_size, batches: per measurement.
    Returns:
      {'examples_per_s_in_process', 'examples_per_s_1_worker', 'examples_per_s_n_workers',
       'workers', 'examples_per_s_per_worker', 'batch_size', 'batches', 'cache'}.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = int(workers or max(2, cores or 1))
    batches = int(batches or (3 if quick else 20))
    batch_size = 8 if quick else batch_size
    with tempfile.TemporaryDirectory(prefix="mt3x_grain_bench_") as tmp:
        if cache_dir is None:
            cache_dir = write_synthetic_cache(Path(tmp) / "cache", tracks=4 if quick else 16,
                                              seconds=10.0 if quick else 30.0, vocab=vocab)
            dataset_name = "synthetic"
        base = GrainPipelineConfig(cache_dir=cache_dir, vocab=vocab, dataset_name=dataset_name,
                                   batch_size=batch_size, read_threads=1)
        in_process = _rate(base, batches)
        one = _rate(dataclasses.replace(base, worker_count=1), batches)
        many = _rate(dataclasses.replace(base, worker_count=workers), batches)
    return {"examples_per_s_in_process": in_process, "examples_per_s_1_worker": one,
            "examples_per_s_n_workers": many, "workers": workers,
            "examples_per_s_per_worker": many / workers, "batch_size": batch_size,
            "batches": batches, "cache": str(cache_dir) if dataset_name != "synthetic"
            else "synthetic"}

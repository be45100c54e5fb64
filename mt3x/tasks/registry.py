"""seqio tasks and mixtures for MT3 transcription over Slakh2100-layout folders.

    >>> names = register_slakh_tasks('/data/slakh2100', name='slakh', vocab='mt3')
    >>> names['train']
    'slakh_notes_ties_vb1_train'
    >>> batches = make_train_batches(names['train'], batch_size=8, seed=0)
    >>> next(batches)['encoder_input_tokens'].shape
    (8, 256, 128)

Task names follow magenta/mt3's `construct_task_name`: `{name}_notes[_ties]` + vocabulary
abbreviation (`vb1` for one velocity bin; none for 127 bins) + suffix. Training tasks end in
`_train` (splits train / validation / test, and 'eval' = validation as in MT3); inference
evaluation tasks end in `_eval_train`, `_validation`, `_test` (whole files cut into consecutive
segments, with ids and start times for stitching); the mixture `{prefix}_eval` holds
`_eval_train` and `_validation` (MT3's `include_in_mixture`).

Inputs are raw 16 kHz sample frames f32[256, 128] by default (the model computes the log-mel on
device); `inputs='log_mel'` gives MT3's f32[256, 512] spectrogram inputs (task names get
`logmel` where MT3 puts a non-default spectrogram config).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
import seqio
import tensorflow as tf

from mt3x.audio.mt3_config import INPUT_MODES
from mt3x.errors import Mt3xError
from mt3x.tasks import preprocessors as pp
from mt3x.tasks.feature_converters import LENGTHS_FEATURE, ContinuousInputsEncDecFeatureConverter
from mt3x.tasks.codec import PipelineCodec, get_pipeline_codec
from mt3x.tasks.sources import InMemoryDataSource, SlakhDataSource
from mt3x.tasks.vocab import CodecVocabulary

__all__ = [
    "MIXING_TEMPERATURE",
    "TaskConfigError",
    "construct_task_name",
    "default_feature_lengths",
    "make_train_batches",
    "mixing_rate_num_tracks",
    "register_mixture",
    "register_slakh_tasks",
    "register_transcription_tasks",
    "eval_segments",
]

MIXING_TEMPERATURE = 10 / 3          # MT3: rate proportional to n ** 0.3
EVAL_SPLITS = (("train", "eval_train", True), ("validation", "validation", True),
               ("test", "test", False))  # (folder split, task suffix, in the eval mixture)


class TaskConfigError(Mt3xError):
    """Bad arguments to a task registration or batch iterator."""


def construct_task_name(prefix: str, vocab_abbrev: str = "", spectrogram_abbrev: str = "",
                        suffix: str | None = None) -> str:
    """MT3's task naming: prefix, spectrogram abbrev, vocabulary abbrev, suffix joined by '_'."""
    return "_".join(f for f in (prefix, spectrogram_abbrev, vocab_abbrev, suffix) if f)


def default_feature_lengths(vocab: str = "mt3") -> dict[str, int]:
    """{'inputs': frames per example (256 for mt3, 512 for ismir2021), 'targets': 1024}."""
    config = get_pipeline_codec(vocab).config
    return {"inputs": int(config.inputs_length), "targets": int(config.targets_length)}


def _output_features(pcodec: PipelineCodec) -> dict[str, seqio.Feature]:
    return {
        "inputs": seqio.ContinuousFeature(dtype=tf.float32, rank=2),
        "targets": seqio.Feature(vocabulary=CodecVocabulary(pcodec.codec.num_classes),
                                 add_eos=True, dtype=tf.int32),
    }


def _train_preprocessors(task_name: str, pcodec: PipelineCodec, *, inputs: str,
                         max_examples_per_mix: int | None, program_granularity: str,
                         in_memory_cache: bool, mt3_exact_merge: bool) -> list:
    chain = [
        functools.partial(pp.tokenize_transcription_example, config=pcodec.config,
                          is_training_data=True, counter_key=task_name),
        functools.partial(pp.split_frames, max_frames=pp.MAX_NUM_CACHED_FRAMES),
    ]
    if in_memory_cache:
        chain.append(lambda ds: ds.cache())
    chain += [
        seqio.CacheDatasetPlaceholder(),
        pp.select_random_chunk,
        functools.partial(pp.extract_target_sequence_with_indices, tie_id=pcodec.tie_id),
        functools.partial(pp.map_midi_programs, codec=pcodec.codec,
                          granularity=program_granularity),
        functools.partial(pp.run_length_encode_shifts, codec=pcodec.codec),
        functools.partial(pp.mix_transcription_examples,
                          codec=pcodec.codec, max_examples_per_mix=max_examples_per_mix,
                          mt3_exact_merge=mt3_exact_merge),
        functools.partial(pp.remove_redundant_state_changes, codec=pcodec.codec),
    ]
    if inputs == "log_mel":
        chain.append(pp.compute_log_mel)
    chain += [
        functools.partial(pp.skip_too_long, counter_key=task_name),
        functools.partial(seqio.preprocessors.tokenize_and_append_eos, copy_pretokenized=False),
    ]
    return chain


def _eval_preprocessors(task_name: str, pcodec: PipelineCodec, *, inputs: str) -> list:
    chain = [
        functools.partial(pp.tokenize_transcription_example, config=pcodec.config,
                          is_training_data=False, counter_key=task_name),
        seqio.CacheDatasetPlaceholder(),
        pp.add_unique_id,
        functools.partial(pp.split_into_segments,
                          passthrough_keys=("unique_id", "track_id", "id")),
    ]
    if inputs == "log_mel":
        chain.append(pp.compute_log_mel)
    chain.append(functools.partial(seqio.preprocessors.tokenize_and_append_eos,
                                   copy_pretokenized=False))
    return chain


def _add_task(name: str, **kwargs) -> None:
    if name in seqio.TaskRegistry.names():
        seqio.TaskRegistry.remove(name)
    seqio.TaskRegistry.add(name, **kwargs)


def register_transcription_tasks(
    source_factory,
    name: str,
    vocab: str = "mt3",
    *,
    inputs: str = "frames",
    max_examples_per_mix: int | None = None,
    program_granularity: str | None = None,
    in_memory_cache: bool = False,
    mt3_exact_merge: bool = False,
    shuffle_buffer_size: int = seqio.SHUFFLE_BUFFER_SIZE,
    eval_splits: Sequence[tuple[str, str, bool]] = EVAL_SPLITS,
) -> dict[str, str]:
    """Registers the train task, the eval tasks and the eval mixture of one dataset.

    Args:
      source_factory: `splits -> seqio.DataSource` ({seqio split: folder split} -> source).
      name: dataset name, the task-name prefix ('slakh').
      vocab: codec preset, 'mt3' or 'ismir2021'.
      inputs: 'frames' (f32[L, 128] raw samples) or 'log_mel' (f32[L, 512], MT3's inputs).
      max_examples_per_mix: mix groups of 1..N training examples (None: no mixing).
      program_granularity: 'flat' | 'midi_class' | 'full'; default from the preset.
      in_memory_cache: keep the tokenized 2000-frame chunks in memory after the first epoch
        (small datasets; the stand-in for MT3's offline seqio cache). The first epoch pays
        for reading and tokenizing; later epochs only draw random chunks.
        Needs memory for the whole split's 16 kHz audio (Slakh2100 train: ~20 GB); for large
        datasets run seqio's offline cache at the CacheDatasetPlaceholder instead.
      mt3_exact_merge: mix targets exactly as MT3 (tie sections concatenated) instead of
        uniting the tie sections.
      eval_splits: (folder split, task suffix, include in the eval mixture) triples.

    Returns:
      {'train': name, 'eval_train': ..., 'validation': ..., 'test': ..., 'eval': mixture}.
    """
    if inputs not in INPUT_MODES:
        raise TaskConfigError(f"inputs={inputs!r}; expected one of {INPUT_MODES}")
    pcodec = get_pipeline_codec(vocab)
    granularity = program_granularity or pcodec.program_granularity
    prefix = f"{name}_notes" + ("_ties" if pcodec.use_ties else "")
    vocab_abbrev = pcodec.config.vocab.abbrev_str
    spec_abbrev = "logmel" if inputs == "log_mel" else ""
    task_name = functools.partial(construct_task_name, prefix, vocab_abbrev, spec_abbrev)
    features = _output_features(pcodec)
    names: dict[str, str] = {}

    train = task_name("train")
    _add_task(
        train,
        source=source_factory({"train": "train", "validation": "validation", "test": "test",
                               "eval": "validation"}),
        output_features=features,
        preprocessors=_train_preprocessors(
            train, pcodec, inputs=inputs, max_examples_per_mix=max_examples_per_mix,
            program_granularity=granularity, in_memory_cache=in_memory_cache,
            mt3_exact_merge=mt3_exact_merge),
        shuffle_buffer_size=shuffle_buffer_size,
        metric_fns=[])
    names["train"] = train

    in_mixture = []
    for folder, suffix, include in eval_splits:
        eval_name = task_name(suffix)
        _add_task(
            eval_name,
            source=source_factory({"eval": folder, folder: folder}),
            output_features=features,
            preprocessors=_eval_preprocessors(eval_name, pcodec, inputs=inputs),
            shuffle_buffer_size=None,
            metric_fns=[])
        names[suffix] = eval_name
        if include:
            in_mixture.append(eval_name)
    names["eval"] = register_mixture(task_name("eval"), in_mixture, temperature=None,
                                     split="eval")
    return names


def register_slakh_tasks(
    root: str | Path,
    name: str = "slakh",
    vocab: str = "mt3",
    *,
    program_source: str = "slakh_class",
    **kwargs,
) -> dict[str, str]:
    """seqio tasks over a Slakh2100-layout folder (root/train, root/validation, root/test).

    Args:
      root: the dataset folder (a real Slakh2100 / BabySlakh or one built by `mt3x-data`).
      name: task-name prefix; `{name}_notes_ties_vb1_train` etc. for vocab='mt3'.
      vocab: 'mt3' or 'ismir2021'.
      program_source: 'slakh_class' (MT3: one program per Slakh instrument class) or 'midi'
        (each stem's own program).
      **kwargs: see `register_transcription_tasks` (inputs, max_examples_per_mix, ...).

    Returns:
      role -> registered name ('train', 'eval_train', 'validation', 'test', 'eval').
    """
    root = Path(root)
    if not root.is_dir():
        raise TaskConfigError(f"{root}: dataset folder does not exist")

    def factory(splits):
        return SlakhDataSource(root, splits, program_source=program_source)

    return register_transcription_tasks(factory, name, vocab, **kwargs)


def register_in_memory_tasks(examples_by_split: Mapping[str, list[dict]], name: str,
                             vocab: str = "mt3", **kwargs) -> dict[str, str]:
    """Tasks over in-memory tracks {audio f32[n] @ 16 kHz, sequence bytes, track_id}, keyed by
    folder split ('train', 'validation', 'test'); same chain and names as `register_slakh_tasks`."""

    def factory(splits):
        return InMemoryDataSource({s: list(examples_by_split.get(f, [])) for s, f in
                                   splits.items()})

    return register_transcription_tasks(factory, name, vocab, **kwargs)


def mixing_rate_num_tracks(task: seqio.Task, temperature: float = MIXING_TEMPERATURE,
                           split: str = "train") -> float:
    """Mixture rate n ** (1 / temperature), n = tracks in the task's split (n ** 0.3 for MT3).

    seqio's `mixing_rate_num_examples` would read `num_input_examples`, which our sources leave
    unset (it would make seqio hold whole splits in memory); `num_tracks` is used instead.
    """
    source = task.source
    n = source.num_tracks(split) if hasattr(source, "num_tracks") else \
        source.num_input_examples(split)
    if n is None:
        raise TaskConfigError(f"task {task.name}: source does not know its size for split "
                              f"{split!r}")
    return float(n) ** (1.0 / temperature)


def register_mixture(name: str, task_names: Sequence[str],
                     temperature: float | None = MIXING_TEMPERATURE,
                     split: str = "train") -> str:
    """Registers a seqio Mixture; rate n ** (1 / temperature) per task (equal rates if None)."""
    if not task_names:
        raise TaskConfigError(f"mixture {name}: no tasks")
    if name in seqio.MixtureRegistry.names():
        seqio.MixtureRegistry.remove(name)
    rate = 1.0 if temperature is None else functools.partial(
        mixing_rate_num_tracks, temperature=temperature, split=split)
    seqio.MixtureRegistry.add(name, list(task_names), default_rate=rate)
    return name


def make_train_batches(
    task_or_mixture: str | seqio.Task | seqio.Mixture,
    batch_size: int,
    seed: int,
    *,
    split: str = "train",
    feature_lengths: Mapping[str, int] | None = None,
    shuffle: bool = True,
    num_epochs: int | None = None,
    shard_index: int = 0,
    num_shards: int = 1,
) -> Iterator[dict[str, np.ndarray]]:
    """Numpy batches for the trainer, in an order fixed by `seed`.

    Yields dicts with the keys of docs/INTERFACES.md:
      encoder_input_tokens  f32[B, 256, 128] (or [B, 256, 512] for log-mel tasks)
      decoder_input_tokens  i32[B, 1024], decoder_target_tokens i32[B, 1024],
      decoder_loss_weights  f32[B, 1024]
      encoder_input_lengths i32[B] valid frames per example (256 except at a piece's edges)
    B = batch_size (per host; the last partial batch is dropped). Repeats forever unless
    `num_epochs`. Each host passes its `shard_index` of `num_shards`.
    """
    if batch_size < 1:
        raise TaskConfigError(f"batch_size must be >= 1, got {batch_size}")
    provider = (seqio.get_mixture_or_task(task_or_mixture)
                if isinstance(task_or_mixture, str) else task_or_mixture)
    lengths = dict(feature_lengths or _feature_lengths_of(provider))
    shard = seqio.ShardInfo(shard_index, num_shards) if num_shards > 1 else None
    ds = seqio.get_dataset(
        provider, task_feature_lengths=lengths, dataset_split=split, shuffle=shuffle,
        num_epochs=num_epochs, shard_info=shard, seed=seed, batch_size=batch_size,
        feature_converter=ContinuousInputsEncDecFeatureConverter(pack=False), verbose=False)
    options = tf.data.Options()
    options.deterministic = True
    ds = ds.map(_squeeze_lengths).with_options(options).prefetch(2)
    return ds.as_numpy_iterator()


def _squeeze_lengths(batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """encoder_input_lengths i32[B, 1] (seqio needs a length per feature) -> i32[B]."""
    return {**batch, LENGTHS_FEATURE: batch[LENGTHS_FEATURE][:, 0]}


def _feature_lengths_of(provider) -> dict[str, int]:
    tasks = provider.get_subtasks() if isinstance(provider, seqio.Mixture) else [provider]
    num_classes = {t.output_features["targets"].vocabulary.num_classes for t in tasks}
    if num_classes == {get_pipeline_codec("ismir2021").codec.num_classes}:
        return default_feature_lengths("ismir2021")
    return default_feature_lengths("mt3")


def eval_segments(task: str | seqio.Task, split: str = "eval", *,
                  feature_lengths: Mapping[str, int] | None = None
                  ) -> Iterator[dict[str, np.ndarray]]:
    """The segments of an eval task in file order, as numpy dicts (one per segment):

      inputs f32[<=L, D], input_times f32[<=L] (s), start_time f32 (s), segment_index i32,
      num_segments i32, unique_id i64, track_id / id (bytes), sequence (bytes, the reference
      NoteSequence; segment 0 only), targets i32[1] ([EOS]).
    """
    provider = seqio.get_mixture_or_task(task) if isinstance(task, str) else task
    lengths = dict(feature_lengths or _feature_lengths_of(provider))
    ds = provider.get_dataset(lengths, split=split, shuffle=False, num_epochs=1,
                              trim_output_features=True)
    return ds.as_numpy_iterator()

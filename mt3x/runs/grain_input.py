"""The Grain input of an MT3 run (`DataConfig.input_pipeline = 'grain'`): no TensorFlow, no seqio.

Training and validation-loss batches come from the offline piece cache (`mt3x-data cache`,
`DataConfig.cache_dir`) through `mt3x.tasks.grain_pipeline`; the cache's manifest must match the
run's task and codec (and the dataset folder's fingerprint, when the folder is at hand). The
transcription-evaluation files are read from the dataset folder with the numpy chain
(`examples.tokenize_track(is_training=False)` -> `examples.split_into_segments`), as the seqio
eval tasks cut them.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable, Iterable

import jax

from mt3x.audio.mt3_config import MT3_SPECTROGRAM_CONFIG
from mt3x.codec import vocabulary as codec_vocabulary
from mt3x.data.slakh import list_track_dirs, read_track, track_note_sequence
from mt3x.runs.config import Mt3TrainConfig, RunConfigError
from mt3x.tasks import examples
from mt3x.tasks.cache import cache_task_name, check_manifest, load_manifest
from mt3x.tasks.cache_build import dataset_fingerprint
from mt3x.tasks.grain_pipeline import GrainBatchSource, GrainPipelineConfig, batch_dataset
from mt3x.transcription.evaluation import EvalFile, dataset_eval_files
from mt3x.transcription.segments import segment_frames

Batches = Iterable[dict[str, Any]]


class GrainRunInput:
    """A run's input from the piece cache at `config.data.cache_dir` (checked when made)."""

    kind = "grain"

    def __init__(self, config: Mt3TrainConfig) -> None:
        self.config = config
        data = config.data
        if data.cache_dir is None:
            raise RunConfigError("data.cache_dir: input_pipeline='grain' reads the piece cache; "
                                 "build one with `mt3x-data cache DATASET --out CACHE` and set "
                                 "CACHE_DIR")
        self.cache_dir = Path(data.cache_dir)
        splits = ["train"]
        if config.evaluation.loss_batches > 0:
            splits.append(config.evaluation.split)
        root = Path(data.dataset_root)
        prints = {s: dataset_fingerprint(root, s) for s in splits if list_track_dirs(root, s)}
        check_manifest(load_manifest(self.cache_dir), vocab=data.vocab,
                       dataset_name=data.dataset_name, program_source=data.program_source,
                       splits=splits, dataset_fingerprints=prints, where=str(self.cache_dir))
        if config.evaluation.transcription and not list_track_dirs(root, config.evaluation.split):
            raise RunConfigError(f"{root / config.evaluation.split}: transcription evaluation "
                                 "reads the dataset folder's files; it has no Track* folders")
        self._fingerprints = prints

    @property
    def description(self) -> str:
        return (f"grain over cache {self.cache_dir} "
                f"({cache_task_name(self.config.data.dataset_name, self.config.data.vocab)})")

    def pipeline_config(self, split: str, *, workers: int) -> GrainPipelineConfig:
        """This host's pipeline over the cached `split`."""
        data, processes = self.config.data, jax.process_count()
        return GrainPipelineConfig(
            cache_dir=self.cache_dir, split=split, vocab=data.vocab,
            dataset_name=data.dataset_name, program_source=data.program_source,
            batch_size=data.batch_size // processes,
            input_length=segment_frames(data.vocab), target_length=int(data.target_length),
            max_examples_per_mix=data.max_examples_per_mix, worker_count=workers,
            shard_index=jax.process_index(), num_shards=processes,
            dataset_fingerprints=self._fingerprints)

    def train_data(self) -> GrainBatchSource:
        """The training batches; their Grain iterator state is saved in every checkpoint."""
        return GrainBatchSource(self.pipeline_config("train", workers=self.config.data.workers),
                                seed=self.config.seed)

    def eval_batches(self) -> Callable[[], Batches] | None:
        """A fresh, identical pass of validation-loss batches per call (in this process; None
        when `evaluation.loss_batches` is 0)."""
        if self.config.evaluation.loss_batches <= 0:
            return None
        config = self.pipeline_config(self.config.evaluation.split, workers=0)
        return functools.partial(batch_dataset, config, self.config.seed + 1)

    def eval_files(self) -> Callable[[], list[EvalFile]]:
        """Loads the files of `evaluation.split` from the dataset folder (when called)."""
        data, evaluation = self.config.data, self.config.evaluation
        return functools.partial(dataset_eval_files, data.dataset_root, evaluation.split,
                                 vocab=data.vocab, program_source=data.program_source,
                                 max_files=evaluation.max_files)

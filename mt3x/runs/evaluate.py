"""Evaluate an MT3 checkpoint on a dataset split: `evaluate_mt3`, the library behind
`launch/eval.py` and `mt3x-demo`'s evaluate stage.

    >>> scores = evaluate_mt3(checkpoint='runs/demo', dataset_root='data/demo', split='test')
    >>> print(mt3x.transcription.metrics.format_table(scores))
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax

from mt3x.runs.common import eval_task_name, make_model, register_dataset
from mt3x.trainer import Partitioner
from mt3x.transcription.checkpoint import load_model_and_params
from mt3x.transcription.evaluation import TranscriptionEvaluator, load_eval_files
from mt3x.transcription.midi_output import write_midi as write_midi_file
from mt3x.transcription.pianoroll import plot_transcription
from mt3x.transcription.segments import segment_frames
from mt3x.util.files import atomic_path


def evaluate_mt3(
    *,
    checkpoint: str | os.PathLike,
    dataset_root: str | os.PathLike,
    split: str = "test",
    model: Any = None,
    vocab: str | None = None,
    dataset_name: str = "slakh",
    program_source: str = "slakh_class",
    step: int | None = None,
    batch_size: int = 8,
    max_decode_length: int | None = None,
    max_files: int | None = None,
    num_partitions: int = 1,
    output_dir: str | os.PathLike | None = None,
    write_midi: bool = False,
    gin_config: str = "",
) -> dict[str, float]:
    """Transcribes every file of a split with a checkpoint and returns MT3's metrics.

    Args:
      checkpoint: a train_mt3 workdir (or its checkpoints/ or checkpoints/<step> folder).
      dataset_root: Slakh2100-layout folder.
      split: 'test', 'validation' or 'train'.
      model: an Mt3Model or config name (default: from the workdir's mt3x_model.json).
      vocab: default from the checkpoint's model spec ('mt3').
      step: checkpoint step (default: the latest).
      batch_size: segments per decoding batch.
      max_decode_length: tokens per segment (default: the model's, 1024 for MT3).
      max_files: evaluate the first N files only.
      output_dir: when given, writes metrics.json (averages and per file) and, with
        `write_midi`, one .mid and one piano-roll .png (TP/FP/FN) per file.

    Returns:
      {MT3 metric name: value averaged over files} (`format_table` prints it), plus
      'Invalid events', 'Dropped events', 'Estimated notes' (per file) and 'Files'.
    """
    partitioner = Partitioner(num_partitions=num_partitions)
    mt3_model = make_model(model) if model is not None else None
    mt3_model, params, vocab, step = load_model_and_params(
        checkpoint, model=mt3_model, vocab=vocab, step=step, partitioner=partitioner,
        max_decode_length=max_decode_length)
    names = register_dataset(dataset_root, dataset_name=dataset_name, vocab=vocab,
                             program_source=program_source, in_memory_cache=False,
                             splits=(split,))
    task = eval_task_name(names, split)
    evaluator = TranscriptionEvaluator(
        model=mt3_model, vocab=vocab, partitioner=partitioner, batch_size=batch_size,
        files=load_eval_files(task, max_files=max_files,
                              frames_per_segment=segment_frames(vocab)))
    scores = evaluator.scores(params)
    scores["Files"] = float(len(evaluator.last_results))
    if output_dir is not None and jax.process_index() == 0:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        report = {"checkpoint": str(checkpoint), "step": step, "split": split,
                  "averages": scores, "gin_config": gin_config,
                  "files": {r.file.file_id: r.metrics for r in evaluator.last_results}}
        with atomic_path(out / "metrics.json") as tmp:
            tmp.write_text(json.dumps(report, indent=1) + "\n")
        if write_midi:

            for r in evaluator.last_results:
                stem = r.file.file_id.replace("/", "_")
                write_midi_file(r.estimate, out / f"{stem}.mid")
                plot_transcription(r.file.reference, r.estimate, out / f"{stem}.png",
                                   title=f"{r.file.file_id} (step {step})")
    return scores

"""Evaluate an MT3 checkpoint on a dataset split: `evaluate_mt3`, the library behind
`launch/eval.py` and `mt3x-demo`'s evaluate stage.

    >>> scores = evaluate_mt3(checkpoint='runs/demo', dataset_root='data/demo', split='test',
    ...                       ood_dataset_root='data/ood-eval')
    >>> print(mt3x.transcription.metrics.format_domains_table(split_domains(scores)))

With `ood_dataset_root` (e.g. a `mt3x-data build --preset ood-eval` folder) the same checkpoint
is also scored out of domain: the returned dict holds the in-domain scores under MT3's names and
the out-of-domain ones under `out-of-domain/<name>` (`split_domains` separates them), and
metrics.json gets one section per domain. TensorBoard scalars (`<output_dir>/tensorboard/
<domain>`) carry the short metric names and the decoding-health counters per file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax

from mt3x.runs.common import make_model
from mt3x.trainer import Partitioner
from mt3x.trainer.reporting import TensorBoardWriter
from mt3x.transcription.checkpoint import load_model_and_params
from mt3x.transcription.evaluation import (HEALTH_NAMES, TranscriptionEvaluator,
                                           dataset_eval_files, short_metrics)
from mt3x.transcription.midi_output import write_midi as write_midi_file
from mt3x.transcription.pianoroll import plot_transcription
from mt3x.util.files import atomic_path

IN_DOMAIN = "in-domain"
OUT_OF_DOMAIN = "out-of-domain"


def split_domains(scores: dict[str, float]) -> dict[str, dict[str, float]]:
    """`evaluate_mt3`'s flat scores -> {'in-domain': {...}, 'out-of-domain': {...}} (the second
    only when the run had an out-of-domain dataset)."""
    prefix = OUT_OF_DOMAIN + "/"
    out = {IN_DOMAIN: {k: v for k, v in scores.items() if not k.startswith(prefix)}}
    ood = {k[len(prefix):]: v for k, v in scores.items() if k.startswith(prefix)}
    if ood:
        out[OUT_OF_DOMAIN] = ood
    return out


def evaluate_mt3(
    *,
    checkpoint: str | os.PathLike,
    dataset_root: str | os.PathLike,
    split: str = "test",
    model: Any = None,
    vocab: str | None = None,
    program_source: str = "slakh_class",
    step: int | None = None,
    batch_size: int = 8,
    max_decode_length: int | None = None,
    max_files: int | None = None,
    num_partitions: int = 1,
    output_dir: str | os.PathLike | None = None,
    write_midi: bool = False,
    gin_config: str = "",
    ood_dataset_root: str | os.PathLike | None = None,
    ood_split: str = "test",
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
      output_dir: when given, writes metrics.json (averages, decoding health and metrics per
        file, per domain), TensorBoard scalars and, with `write_midi`, one .mid and one
        piano-roll .png (TP/FP/FN) per file (out-of-domain files under `out-of-domain/`).
      ood_dataset_root: a second, out-of-domain Slakh-layout folder scored the same way
        (e.g. `mt3x-data build --preset ood-eval`); None: in-domain only.
      ood_split: its split ('test': where `ood-eval` puts every track).

    Returns:
      {MT3 metric name: value averaged over files} (`format_table` prints it), plus the
      decoding-health counters per file ('Invalid events', 'Dropped events', 'Duplicate
      notes', 'Truncated segments', 'Estimated notes') and 'Files'; with `ood_dataset_root`
      the same under 'out-of-domain/<name>' (`split_domains`).
    """
    partitioner = Partitioner(num_partitions=num_partitions)
    mt3_model = make_model(model) if model is not None else None
    mt3_model, params, vocab, step = load_model_and_params(
        checkpoint, model=mt3_model, vocab=vocab, step=step, partitioner=partitioner,
        max_decode_length=max_decode_length)
    domains = [(IN_DOMAIN, dataset_root, split)]
    if ood_dataset_root is not None:
        domains.append((OUT_OF_DOMAIN, ood_dataset_root, ood_split))
    lead = output_dir is not None and jax.process_index() == 0
    all_scores: dict[str, float] = {}
    report: dict[str, Any] = {"checkpoint": str(checkpoint), "step": step, "split": split,
                              "gin_config": gin_config, "domains": {}}
    for domain, root, domain_split in domains:
        evaluator = TranscriptionEvaluator(
            model=mt3_model, vocab=vocab, partitioner=partitioner, batch_size=batch_size,
            files=dataset_eval_files(root, domain_split, vocab=vocab,
                                     program_source=program_source, max_files=max_files))
        scores = evaluator.scores(params)
        scores["Files"] = float(len(evaluator.last_results))
        prefix = "" if domain == IN_DOMAIN else f"{domain}/"
        all_scores.update({prefix + k: v for k, v in scores.items()})
        report["domains"][domain] = {
            "dataset_root": str(root), "split": domain_split, "averages": scores,
            "files": {r.file.file_id: {**r.metrics, "health": r.health()}
                      for r in evaluator.last_results}}
        if domain == IN_DOMAIN:  # the layout of earlier metrics.json files
            report["averages"] = scores
            report["files"] = report["domains"][domain]["files"]
        if lead:
            out = Path(output_dir) / ("" if domain == IN_DOMAIN else domain)
            _write_tensorboard(Path(output_dir) / "tensorboard" / domain, step, scores)
            if write_midi:
                _write_midi_and_plots(evaluator.last_results, out, step)
    if lead:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "metrics.json") as tmp:
            tmp.write_text(json.dumps(report, indent=1) + "\n")
    return all_scores


def _write_tensorboard(logdir: Path, step: int | None, scores: dict[str, float]) -> None:
    """The short metric names and the decoding-health counters as TensorBoard scalars."""
    scalars = short_metrics(scores)
    scalars.update({key: scores[name] for key, name in HEALTH_NAMES.items() if name in scores})
    writer = TensorBoardWriter(logdir.parent, logdir.name)
    writer.write_scalars(int(step or 0), scalars)
    writer.flush()
    writer.close()


def _write_midi_and_plots(results: list, out: Path, step: int | None) -> None:
    """One .mid and one piano-roll .png (TP/FP/FN) per evaluated file under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    for r in results:
        stem = r.file.file_id.replace("/", "_")
        write_midi_file(r.estimate, out / f"{stem}.mid")
        plot_transcription(r.file.reference, r.estimate, out / f"{stem}.png",
                           title=f"{r.file.file_id} (step {step})")

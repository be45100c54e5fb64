"""MT3 runs end to end on a tiny demo dataset through `train_mt3` / `evaluate_mt3` (what
launch/train.py and launch/eval.py call): the loss falls, evaluation computes MT3's metrics
(exact on an oracle), a run resumes through the gin entry point, fine-tuning restores params
only and keeps frozen ones fixed, and bad inputs and settings fail clearly."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import gin
import jax
import numpy as np
import pretty_midi
import pytest

from tests import mt3_testdata as data
from tests.mt3_testdata import OracleModel, oracle_table, reference_notes
from mt3x.data import DatasetError
from mt3x.runs.config import (DataConfig, EvalConfig, Mt3TrainConfig, RunConfigError,
                              ScheduleConfig)
from mt3x.runs.evaluate import evaluate_mt3
from mt3x.runs.train import train_mt3
from mt3x.trainer import CheckpointOptions
from mt3x.trainer import CheckpointError, Checkpointer, ShardingError
from mt3x.trainer.checkpoints import numpy_tree
from mt3x.transcription.evaluation import EvalFile, TranscriptionEvaluator

LAUNCH = Path(__file__).resolve().parents[2] / "launch"
NO_EVAL = EvalConfig(transcription=False, loss_batches=0)


# ---- the evaluator's decode -> stitch -> score path, exact on an oracle -----------------------
def test_evaluator_scores_an_oracle_perfectly_and_silence_as_zero():
    ns = reference_notes()
    num_samples = 5 * 16000
    frames_count = num_samples // 128 + 1
    segments = -(-frames_count // 256)
    frames = np.zeros((segments, 256, 128), np.float32)
    frames[:, 0, 0] = np.arange(1, segments + 1)
    eval_file = EvalFile("validation/Track1", frames, np.arange(segments) * 2.048, ns)
    perfect = TranscriptionEvaluator(model=OracleModel(oracle_table(ns, num_samples)),
                                     files=[eval_file], batch_size=8)(None, step=0)
    for name in ("onset_f1", "onset_offset_f1", "multi_instrument_f1", "drum_onset_f1",
                 "multi_instrument_f1_flat"):
        assert perfect[name] == pytest.approx(1.0), name
    assert perfect["invalid_events"] == 0 and perfect["estimated_notes"] == len(ns.notes)
    silent = TranscriptionEvaluator(
        model=OracleModel(oracle_table(ns, num_samples, empty=True)), files=[eval_file],
        batch_size=8)(None, step=0)
    assert silent["onset_f1"] == 0.0 and silent["multi_instrument_f1"] == 0.0


# ---- real runs on the tiny dataset -------------------------------------------------------------
def test_loss_falls_and_the_run_is_evaluated_and_saved(tmp_path_factory):
    workdir, result = data.tiny_run(tmp_path_factory)
    losses = [result.losses[s] for s in sorted(result.losses)]
    assert len(losses) == data.TINY_STEPS
    assert np.mean(losses[-4:]) < 0.75 * np.mean(losses[:4])
    final = result.eval_history[data.TINY_STEPS]
    for name in ("eval/loss", "eval/onset_f1", "eval/multi_instrument_f1", "eval/frame_f1"):
        assert name in final
    for name in ("eval/onset_f1", "eval/multi_instrument_f1"):
        assert 0.0 <= final[name] <= 1.0
    assert final["eval/loss"] < losses[0]
    spec = json.loads((workdir / "mt3x_model.json").read_text())
    assert spec["config"]["emb_dim"] == 32 and spec["vocab"] == "mt3"
    checkpointer = Checkpointer(workdir / "checkpoints", read_only=True)
    assert checkpointer.all_steps() == [data.TINY_STEPS]
    _, meta = checkpointer.read_data_and_meta()
    checkpointer.close()
    assert meta["gin_config"] == "# tiny test run\n"
    assert (workdir / "operative_config.gin").read_text() == "# tiny test run\n"


@pytest.fixture(scope="module")
def seeded_run(tmp_path_factory):
    """(workdir, TrainResult) of one step at learning rate 0 from the seeded tiny checkpoint,
    evaluated at the end: its transcriptions hold notes (the 24-step tiny run's hold none)."""
    workdir = tmp_path_factory.mktemp("mt3_seeded_run") / "run"
    config = data.tiny_train_config(
        workdir, data.tiny_dataset(tmp_path_factory),
        init_checkpoint=data.seeded_tiny_checkpoint(tmp_path_factory),
        schedule=ScheduleConfig(num_steps=1, optimizer="adamw", learning_rate=0.0,
                                weight_decay=0.0),
        evaluation=EvalConfig(loss_batches=0, max_files=1,
                              decode_length=data.TINY_DECODE_LENGTH),
        checkpoint=CheckpointOptions(save_every_steps=1, keep_best=0))
    return workdir, train_mt3(config)


def test_evaluate_mt3_reproduces_the_training_evaluation(tmp_path_factory, tmp_path,
                                                         seeded_run):
    workdir, result = seeded_run
    final = result.eval_history[1]
    # Not 0 notes compared with 0 notes: the training evaluation transcribed some.
    assert final["eval/estimated_notes"] > 0
    scores = evaluate_mt3(checkpoint=workdir, dataset_root=data.tiny_dataset(tmp_path_factory),
                          split="validation", max_decode_length=data.TINY_DECODE_LENGTH,
                          max_files=1, output_dir=tmp_path, write_midi=True)
    assert scores["Files"] == 1
    assert scores["Estimated notes"] == final["eval/estimated_notes"]
    for name, key in [("Invalid events", "invalid_events"), ("Dropped events", "dropped_events"),
                      ("Duplicate notes", "duplicate_notes"),
                      ("Truncated segments", "truncated_segments")]:
        assert scores[name] == final[f"eval/{key}"], name
    assert scores["Onset F1"] == pytest.approx(final["eval/onset_f1"])
    assert scores["Onset + offset + program F1 (full)"] == pytest.approx(
        final["eval/multi_instrument_f1"])
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["step"] == 1 and list(report["files"]) == ["validation/Track00003"]
    midi = pretty_midi.PrettyMIDI(str(tmp_path / "validation_Track00003.mid"))
    assert sum(len(i.notes) for i in midi.instruments) == final["eval/estimated_notes"]
    assert (tmp_path / "validation_Track00003.png").read_bytes()[:4] == b"\x89PNG"


def _launch(name: str):
    spec = importlib.util.spec_from_file_location(f"launch_{name}", LAUNCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_launch_eval_ood_flags_become_gin_bindings(capsys):
    module = _launch("eval")
    assert module.ood_bindings(["--gin_file", "runs/eval.gin", "--ood-data", "/d/o o",
                                "--ood-split=validation", "--workdir", "w"]) == [
        "--gin_file", "runs/eval.gin", "--gin.OOD_DATASET_ROOT='/d/o o'",
        "--gin.OOD_SPLIT='validation'", "--workdir", "w"]
    assert module.main(["--gin_file", "runs/eval.gin", "--ood-data"]) == 2
    assert "--ood-data: missing value" in capsys.readouterr().err


def test_launch_eval_prints_in_domain_and_out_of_domain_side_by_side(tmp_path_factory,
                                                                    tmp_path, capsys):
    workdir, _ = data.tiny_run(tmp_path_factory)
    root = data.tiny_dataset(tmp_path_factory)
    out = tmp_path / "eval"
    # The tiny dataset's test split stands in for an out-of-domain folder.
    argv = ["--gin_file", "runs/eval.gin", f"--gin.CHECKPOINT='{workdir}'",
            f"--gin.DATASET_ROOT='{root}'", "--gin.EVAL_SPLIT='validation'",
            f"--gin.mt3x.evaluate_mt3.max_decode_length={data.TINY_DECODE_LENGTH}",
            "--gin.mt3x.evaluate_mt3.write_midi=False",
            "--ood-data", str(root), "--ood-split=test", "--workdir", str(out)]
    try:
        assert _launch("eval").main(argv) == 0
    finally:
        gin.clear_config()
    printed = capsys.readouterr().out
    header = next(line for line in printed.splitlines() if line.startswith("metric ")
                  and "out-of-domain" in line)
    assert header.split()[1:] == ["in-domain", "out-of-domain"]
    for label in ("Agnostic onset (all notes, 50 ms) F1", "Multi-instrument (full) F1",
                  "invalid events / file", "duplicate notes / file",
                  "truncated segments / file"):
        assert label in printed, label
    report = json.loads((out / "metrics.json").read_text())
    assert set(report["domains"]) == {"in-domain", "out-of-domain"}
    assert list(report["domains"]["out-of-domain"]["files"]) == ["test/Track00004"]
    health = report["domains"]["in-domain"]["files"]["validation/Track00003"]["health"]
    assert set(health) >= {"invalid_events", "duplicate_notes", "truncated_segments"}
    # An untrained-ish tiny decoder may not end segments: the count is bounded by the segments.
    assert 0 <= health["truncated_segments"] <= health["segments"]
    for domain in ("in-domain", "out-of-domain"):
        assert list((out / "tensorboard" / domain).iterdir()), domain


def _launch_train():
    spec = importlib.util.spec_from_file_location("launch_train", LAUNCH / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_resume_through_launch_train_continues_the_run(tmp_path_factory, tmp_path):
    source, _ = data.tiny_run(tmp_path_factory)
    workdir = tmp_path / "run"
    shutil.copytree(source, workdir)
    steps = data.TINY_STEPS + 3
    argv = ["--gin_file", "runs/train.gin", "--gin_file", "models/tiny.gin",
            f"--gin.DATASET_ROOT='{data.tiny_dataset(tmp_path_factory)}'",
            f"--gin.TRAIN_STEPS={steps}", "--gin.BATCH_SIZE=8",
            f"--gin.TARGET_LENGTH={data.TINY_TARGET_LENGTH}", "--gin.OPTIMIZER='adamw'",
            "--gin.LEARNING_RATE=1e-2", "--gin.LOSS_NORMALIZATION='mean'",
            f"--gin.MAX_DECODE_LENGTH={data.TINY_DECODE_LENGTH}",
            "--gin.mt3x.runs.ScheduleConfig.weight_decay=0.0", "--gin.KEEP_BEST=0",
            "--gin.mt3x.runs.EvalConfig.transcription=False",
            "--gin.mt3x.runs.EvalConfig.loss_batches=0", "--gin.EVAL_EVERY_STEPS=0",
            "--gin.mt3x.runs.ReportConfig.show_progress=False",
            "--gin.mt3x.runs.ReportConfig.tensorboard=False", "--workdir", str(workdir)]
    try:
        assert _launch_train().main(argv) == 0
    finally:
        gin.clear_config()
    checkpointer = Checkpointer(workdir / "checkpoints", read_only=True)
    assert checkpointer.latest_step() == steps
    data_state, meta = checkpointer.read_data_and_meta()
    checkpointer.close()
    assert data_state["consumed"] == steps                # the data position continued
    assert meta["loss_history"]["steps"] == list(range(1, steps + 1))  # history of both calls
    assert f"TRAIN_STEPS = {steps}" in meta["gin_config"]  # the operative config, per checkpoint
    assert "Mt3TrainConfig.workdir = %MODEL_DIR" in (workdir / "operative_config.gin").read_text()


def test_finetune_restores_params_only_and_frozen_params_do_not_move(tmp_path_factory,
                                                                     tmp_path):
    source, base = data.tiny_run(tmp_path_factory)
    # A different dataset: the held-out test track as the only training track.
    other = tmp_path / "other"
    shutil.copytree(data.tiny_dataset(tmp_path_factory) / "test", other / "train")
    config = data.tiny_train_config(
        tmp_path / "ft", other, init_checkpoint=source,
        schedule=ScheduleConfig(num_steps=3, optimizer="adamw", learning_rate=1e-2,
                                freeze_patterns=["^encoder/"]),
        evaluation=NO_EVAL, checkpoint=CheckpointOptions(keep_best=0))
    result = train_mt3(config)
    assert sorted(result.losses) == [1, 2, 3]               # fresh optimizer state and step
    before = numpy_tree(base.state.params)
    after = numpy_tree(result.state.params)
    flat_before = dict(jax.tree_util.tree_flatten_with_path(before)[0])
    moved = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(after)[0]:
        name = jax.tree_util.keystr(path)
        moved[name] = float(np.abs(leaf - flat_before[path]).max())
    encoder = {k: v for k, v in moved.items() if "'encoder'" in k}
    decoder = {k: v for k, v in moved.items() if "'decoder'" in k}
    assert encoder and all(v == 0.0 for v in encoder.values())
    assert max(decoder.values()) > 1e-4
    # The first loss is the base model's on new data: far below an untrained model's ~7.3.
    assert result.losses[1] < 0.9 * np.log(1536)


def test_finetune_from_a_checkpoint_of_another_shape_names_the_array(tmp_path_factory,
                                                                     tmp_path):
    from mt3x.models import Mt3Model, get_config

    source, _ = data.tiny_run(tmp_path_factory)
    wider = Mt3Model(get_config("tiny", emb_dim=64), loss_normalization="mean")
    config = data.tiny_train_config(
        tmp_path / "ft", data.tiny_dataset(tmp_path_factory), model=wider,
        init_checkpoint=source, schedule=ScheduleConfig(num_steps=2), evaluation=NO_EVAL,
        checkpoint=CheckpointOptions(keep_best=0))
    with pytest.raises(CheckpointError, match=r"does not match this model: .*shape"):
        train_mt3(config)


def test_bad_datasets_and_batch_sizes_fail_clearly(tmp_path_factory, tmp_path):
    def run(dataset_root, batch_size=8, vocab="mt3"):
        return train_mt3(data.tiny_train_config(
            tmp_path / "run", dataset_root, model="tiny", evaluation=NO_EVAL,
            schedule=ScheduleConfig(num_steps=2), checkpoint=CheckpointOptions(keep_best=0),
            data=DataConfig(dataset_root=dataset_root, batch_size=batch_size, vocab=vocab,
                            target_length=data.TINY_TARGET_LENGTH)))

    with pytest.raises(RunConfigError, match="does not exist"):
        run(tmp_path / "nowhere")
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(DatasetError, match="train"):
        run(tmp_path / "empty")
    with pytest.raises(ShardingError, match="does not divide over 8"):
        run(data.tiny_dataset(tmp_path_factory), batch_size=4)
    with pytest.raises(Exception, match="vocab"):
        run(data.tiny_dataset(tmp_path_factory), vocab="ismir2021")


def test_settings_that_do_not_fit_together_name_the_field(tmp_path):
    groups = dict(data=DataConfig(dataset_root=tmp_path), schedule=ScheduleConfig(num_steps=2))
    with pytest.raises(RunConfigError, match="keep_best > 0 needs an evaluation"):
        Mt3TrainConfig(workdir=tmp_path, evaluation=NO_EVAL, **groups)
    with pytest.raises(RunConfigError, match="needs evaluation.transcription=True"):
        Mt3TrainConfig(workdir=tmp_path, evaluation=EvalConfig(transcription=False), **groups)
    assert Mt3TrainConfig(workdir=tmp_path, evaluation=EvalConfig(transcription=False),
                          checkpoint=CheckpointOptions(keep_best=1, best_metric="eval/loss"),
                          **groups).checkpoint.best_metric == "eval/loss"
    with pytest.raises(RunConfigError, match="schedule.lr_schedule"):
        ScheduleConfig(num_steps=2, lr_schedule="linear")
    with pytest.raises(RunConfigError, match="schedule.optimizer"):
        ScheduleConfig(num_steps=2, optimizer="sgd")
    with pytest.raises(RunConfigError, match="evaluation.split"):
        EvalConfig(split="valid")
    assert ScheduleConfig(num_steps=2, freeze_patterns=["^encoder/"]).freeze_patterns == \
        ("^encoder/",)

"""MT3 training from the piece cache on Grain (`INPUT_PIPELINE = 'grain'`): through
launch/train.py on CPU with TensorFlow and seqio not importable, and a resumed run that continues
at the same example (the same losses as an uninterrupted run)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from tests import mt3_testdata as data
from tests.tasks.test_grain_pipeline import REPO, run_without_tensorflow
from mt3x.runs.config import DataConfig, EvalConfig, RunConfigError
from mt3x.runs.train import train_mt3
from mt3x.tasks.cache import CacheError
from mt3x.tasks.cache_build import build_cache
from mt3x.trainer import CheckpointOptions, Checkpointer


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    root = data.tiny_dataset(tmp_path_factory)
    out = tmp_path_factory.mktemp("tiny_cache") / "cache"
    build_cache(root, out, splits=("train", "validation"), progress=False)
    return root, out


def grain_config(workdir, root, cache, steps: int, **data_changes):
    config = data.tiny_train_config(
        workdir, root, evaluation=EvalConfig(transcription=False, loss_batches=0),
        checkpoint=CheckpointOptions(save_every_steps=3, keep_best=0))
    config = dataclasses.replace(config, schedule=dataclasses.replace(config.schedule,
                                                                      num_steps=steps))
    return dataclasses.replace(config, data=dataclasses.replace(
        config.data, input_pipeline="grain", cache_dir=cache, **data_changes))


@pytest.mark.slow
def test_grain_training_through_launch_without_tensorflow(tiny_cache, tmp_path):
    root, cache = tiny_cache
    argv = ["--gin_file", "runs/train.gin", "--gin_file", "models/tiny.gin",
            f"--gin.DATASET_ROOT='{root}'", "--gin.INPUT_PIPELINE='grain'",
            f"--gin.CACHE_DIR='{cache}'", "--gin.TRAIN_STEPS=3", "--gin.BATCH_SIZE=8",
            f"--gin.TARGET_LENGTH={data.TINY_TARGET_LENGTH}", "--gin.OPTIMIZER='adamw'",
            f"--gin.MAX_DECODE_LENGTH={data.TINY_DECODE_LENGTH}", "--gin.EVAL_EVERY_STEPS=0",
            "--gin.EVAL_MAX_FILES=1", "--gin.KEEP_BEST=1",
            "--gin.mt3x.runs.EvalConfig.loss_batches=1",
            "--gin.mt3x.runs.ReportConfig.show_progress=False",
            "--gin.mt3x.runs.ReportConfig.tensorboard=False",
            "--workdir", str(tmp_path / "run")]
    proc = run_without_tensorflow(f"""
        import importlib.util, sys
        spec = importlib.util.spec_from_file_location('launch_train', {str(REPO / 'launch' /
                                                                        'train.py')!r})
        launch = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(launch)
        if __name__ == '__main__':
            code = launch.main({argv!r})
            loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'seqio'))
            print('loaded:', loaded)
            sys.exit(code)
    """, tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "trained to step 3" in proc.stdout and "loaded: []" in proc.stdout
    assert "eval/multi_instrument_f1=" in proc.stdout and "eval/loss=" in proc.stdout
    checkpointer = Checkpointer(tmp_path / "run" / "checkpoints", read_only=True)
    data_state, _ = checkpointer.read_data_and_meta()
    checkpointer.close()
    assert data_state["kind"] == "grain" and json.loads(data_state["iterator"])


@pytest.mark.slow
def test_resumed_grain_run_continues_at_the_same_example(tiny_cache, tmp_path):
    root, cache = tiny_cache
    straight = train_mt3(grain_config(tmp_path / "straight", root, cache, 6))
    train_mt3(grain_config(tmp_path / "resumed", root, cache, 3))
    resumed = train_mt3(grain_config(tmp_path / "resumed", root, cache, 6))
    assert sorted(resumed.losses) == [4, 5, 6]
    np.testing.assert_allclose([resumed.losses[s] for s in (4, 5, 6)],
                               [straight.losses[s] for s in (4, 5, 6)], rtol=1e-5)


def test_grain_runs_refuse_a_missing_or_mismatched_cache(tiny_cache, tmp_path):
    root, cache = tiny_cache
    with pytest.raises(RunConfigError, match="cache_dir"):
        DataConfig(dataset_root=root, input_pipeline="grain")
    with pytest.raises(RunConfigError, match="input_pipeline"):
        DataConfig(dataset_root=root, input_pipeline="tfrecord")
    with pytest.raises(CacheError, match="manifest task"):
        train_mt3(grain_config(tmp_path / "w", root, cache, 1, dataset_name="other"))
    with pytest.raises(CacheError, match="no cache manifest"):
        train_mt3(grain_config(tmp_path / "w", root, tmp_path, 1))

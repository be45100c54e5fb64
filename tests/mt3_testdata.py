"""Shared, session-cached inputs of the MT3 run tests (test_mt3_training.py, test_transcribe.py):
a tiny demo dataset and one short training run of the `tiny` network on it.

Both are built at most once per pytest session, whichever test file asks first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TINY_TARGET_LENGTH = 192
TINY_DECODE_LENGTH = 48
TINY_STEPS = 24
TINY_TRAIN_KWARGS: dict[str, Any] = dict(
    batch_size=8, target_length=TINY_TARGET_LENGTH, optimizer="adamw", learning_rate=1e-2,
    weight_decay=0.0, eval_loss_batches=1, eval_max_files=1, eval_decode_length=TINY_DECODE_LENGTH,
    save_every_steps=TINY_STEPS, keep_best=1, best_metric="eval/multi_instrument_f1",
    show_progress=False, tensorboard=False, log_every_steps=8, seed=0)

_CACHE: dict[str, Any] = {}


def tiny_model() -> Any:
    from mt3x.models import Mt3Model

    return Mt3Model("tiny", loss_normalization="mean", max_decode_length=TINY_DECODE_LENGTH)


def tiny_dataset(tmp_path_factory) -> Path:
    """4 chorale tracks of 6 s (2 train, 1 validation, 1 test), drums on every other track."""
    if "dataset" not in _CACHE:
        from mt3x.data.presets import build_demo

        root = tmp_path_factory.mktemp("mt3_tiny_demo") / "demo"
        _CACHE["dataset"] = build_demo(root, seed=0, max_pieces=4, split_counts=(2, 1, 1),
                                       segment_seconds=5.0, drums_every=2)
    return _CACHE["dataset"]


def tiny_run(tmp_path_factory) -> tuple[Path, Any]:
    """(workdir, TrainResult) of TINY_STEPS steps of the tiny network, evaluated at the end."""
    if "run" not in _CACHE:
        from mt3x.run_training import train_mt3

        root = tiny_dataset(tmp_path_factory)
        workdir = tmp_path_factory.mktemp("mt3_tiny_run") / "run"
        result = train_mt3(workdir=workdir, dataset_root=root, model=tiny_model(),
                           num_steps=TINY_STEPS, gin_config="# tiny test run\n",
                           **TINY_TRAIN_KWARGS)
        _CACHE["run"] = (workdir, result)
    return _CACHE["run"]

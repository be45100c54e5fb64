"""Shared, session-cached inputs of the MT3 run tests (test_mt3_training.py, test_transcribe.py):
a tiny demo dataset and one short training run of the `tiny` network on it.

Both are built at most once per pytest session, whichever test file asks first.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import note_seq
import numpy as np

from mt3x import codec
from mt3x.runs.config import (DataConfig, EvalConfig, Mt3TrainConfig, ReportConfig,
                              ScheduleConfig)
from mt3x.runs.train import train_mt3
from mt3x.trainer import CheckpointOptions

TINY_TARGET_LENGTH = 192
TINY_DECODE_LENGTH = 48
TINY_STEPS = 24

_CACHE: dict[str, Any] = {}


def tiny_model() -> Any:
    from mt3x.models import Mt3Model

    return Mt3Model("tiny", loss_normalization="mean", max_decode_length=TINY_DECODE_LENGTH)


def tiny_train_config(workdir: Path, dataset_root: Path, **changes: Any) -> Mt3TrainConfig:
    """The tiny run's `Mt3TrainConfig` (batch 8, AdamW 1e-2, evaluated and saved at the end,
    quiet); `changes` replace whole top-level fields (e.g. `evaluation=EvalConfig(...)`)."""
    config = Mt3TrainConfig(
        workdir=workdir, model=tiny_model(), seed=0,
        data=DataConfig(dataset_root=dataset_root, batch_size=8,
                        target_length=TINY_TARGET_LENGTH),
        schedule=ScheduleConfig(num_steps=TINY_STEPS, optimizer="adamw", learning_rate=1e-2,
                                weight_decay=0.0),
        evaluation=EvalConfig(loss_batches=1, max_files=1, decode_length=TINY_DECODE_LENGTH),
        checkpoint=CheckpointOptions(save_every_steps=TINY_STEPS, keep_best=1,
                                     best_metric="eval/multi_instrument_f1", best_mode="max"),
        report=ReportConfig(log_every_steps=8, show_progress=False, tensorboard=False))
    return dataclasses.replace(config, **changes)


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
        root = tiny_dataset(tmp_path_factory)
        workdir = tmp_path_factory.mktemp("mt3_tiny_run") / "run"
        result = train_mt3(tiny_train_config(workdir, root), gin_config="# tiny test run\n")
        _CACHE["run"] = (workdir, result)
    return _CACHE["run"]


# Seed of `seeded_tiny_checkpoint`'s random parameters: with it the tiny network transcribes
# notes from the demo mixtures (6 on the validation track, 4 on the test track at
# TINY_DECODE_LENGTH), unlike TINY_STEPS of training (none), so comparisons of two
# transcriptions are not between two empty note lists. (Seed 0 transcribes no notes.)
NOTED_PARAMS_SEED = 1


def seeded_tiny_checkpoint(tmp_path_factory) -> Path:
    """An mt3x checkpoint (workdir with mt3x_model.json) of the tiny network with parameters
    drawn from NOTED_PARAMS_SEED, written as an import would (step 0, no training)."""
    if "seeded" not in _CACHE:
        import flax.linen as nn
        import jax

        from mt3x.t5x_checkpoint.convert import write_mt3x_params_checkpoint
        from mt3x.transcription.checkpoint import model_spec

        model = tiny_model()
        batch = {"encoder_input_tokens": np.zeros((1, 256, 128), np.float32)}
        params = nn.unbox(jax.jit(model.init)(jax.random.key(NOTED_PARAMS_SEED), batch))
        workdir = tmp_path_factory.mktemp("mt3_tiny_seeded") / "run"
        _CACHE["seeded"] = write_mt3x_params_checkpoint(
            workdir, params, meta={"gin_config": ""}, model_spec=model_spec(model, "mt3"))
    return _CACHE["seeded"]


# ---- an oracle "model" -------------------------------------------------------------------------
def reference_notes(seconds: float = 5.0) -> note_seq.NoteSequence:
    """Two pitched instruments with notes held across segment boundaries, plus drums."""
    ns = note_seq.NoteSequence(ticks_per_quarter=220)
    for i, t in enumerate(np.arange(0.1, seconds - 0.6, 0.37)):
        ns.notes.add(pitch=48 + i % 12, velocity=100, start_time=float(t),
                     end_time=float(t + 0.9), program=33)
        ns.notes.add(pitch=72 - i % 7, velocity=100, start_time=float(t + 0.11),
                     end_time=float(t + 0.3), program=0)
        ns.notes.add(pitch=36, velocity=100, start_time=float(t + 0.2),
                     end_time=float(t + 0.25), is_drum=True)
    ns.total_time = seconds
    return ns


class OracleModel:
    """predict() returns the token row whose index is stored in each segment's first sample."""

    def __init__(self, table: np.ndarray) -> None:
        self.table = table
        self.max_decode_length = table.shape[1]
        self.config = type("Config", (), {"vocab_size": 1536})()

    def predict(self, params, batch, *, max_decode_length=None):
        ids = jnp.round(batch["encoder_input_tokens"][:, 0, 0]).astype(jnp.int32)
        return jnp.asarray(self.table)[ids]


def oracle_table(ns: note_seq.NoteSequence, num_samples: int, length: int = 256,
                 empty: bool = False) -> np.ndarray:
    """Row 0: just EOS (padding segments); row s + 1: segment s's model ids + EOS."""
    vocabulary = codec.get_config("mt3").vocabulary
    segments = codec.note_sequence_to_segments(ns, "mt3", num_samples=num_samples)
    table = np.zeros((len(segments) + 1, length), np.int32)
    table[:, 0] = 1
    for s, seg in enumerate(segments):
        ids = [] if empty else list(vocabulary.encode(seg.tokens))
        table[s + 1, :len(ids) + 1] = ids + [1]
    return table

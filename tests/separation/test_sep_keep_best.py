"""Layer-wise DNN training with validation selection never returns params that validate worse
than the least-squares start (issue 13: gradient training made the DNN worse than LS)."""

import numpy as np

from separation import training
from separation.model_objects import DNNSeparator


def _batches(seed, n=2, rows=4):
    rng = np.random.default_rng(seed)
    t = np.arange(4096) / 16000
    for _ in range(n):
        tone = (np.sin(2 * np.pi * rng.uniform(100, 300, (rows, 1)) * t)
                * rng.uniform(0.1, 1, (rows, 1)))
        hiss = np.diff(rng.standard_normal((rows, 4097)), axis=-1) * 0.1
        yield {"mixture": (tone + hiss).astype(np.float32),
               "sources": np.stack([tone, hiss], 1).astype(np.float32)}


def test_keep_best_never_ends_below_the_least_squares_start(tmp_path):
    model = DNNSeparator(instruments=("tone", "hiss"), n_fft=64, hop_length=32, context=1)
    validate = training.validation_si_sdr(_batches(99, n=2, rows=8))
    # a learning rate far too high for a start at the least-squares optimum: training diverges
    result = training.train_dnn_layerwise(
        model, lambda seed: _batches(seed, n=100, rows=8), tmp_path, num_layers=1,
        ls_batches=2, steps_per_layer=6, finetune_steps=0, learning_rate=0.3,
        train_kwargs={"tensorboard": False, "show_progress": False}, validate=validate,
        validate_every=3)
    assert list(result.validation) == ["ls1", "layer1@3", "layer1@6"]
    start = result.validation["ls1"]
    assert result.validation[result.best] == max(result.validation.values()) >= start
    trained_model, trained_params = result.trained
    assert validate(trained_model, trained_params) >= start - 1e-4
    if result.best == "ls1":
        assert result.final_stage is None      # the caller saves the kept LS params
    # without validation the last stage is returned (the original behaviour)
    plain = training.train_dnn_layerwise(
        model, lambda seed: _batches(seed, n=100, rows=8), tmp_path / "plain", num_layers=1,
        ls_batches=2, steps_per_layer=2, finetune_steps=0, learning_rate=0.3,
        train_kwargs={"tensorboard": False, "show_progress": False})
    assert plain.final_stage == "layer1" and plain.validation == {} and plain.best is None

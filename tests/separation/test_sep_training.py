"""Least-squares growth through the Model object; the short-training check on demo tracks."""

import dataclasses
import re

import flax.linen as nn
import jax
import numpy as np
import pytest

from separation import training
from separation.model_objects import DNNSeparator
from separation.models.dnn import grow_by_least_squares


def _batches(seed, n=2, rows=4):
    rng = np.random.default_rng(seed)
    t = np.arange(4096) / 16000
    for _ in range(n):
        tone = (np.sin(2 * np.pi * rng.uniform(100, 300, (rows, 1)) * t)
                * rng.uniform(0.1, 1, (rows, 1)))
        hiss = np.diff(rng.standard_normal((rows, 4097)), axis=-1) * 0.1
        yield {"mixture": (tone + hiss).astype(np.float32),
               "sources": np.stack([tone, hiss], 1).astype(np.float32)}


def test_grow_dnn_matches_single_network_growth_and_init_returns_it():
    model = DNNSeparator(instruments=("tone", "hiss"), n_fft=64, hop_length=32, context=1,
                         num_layers=0)
    grown, params = training.grow_dnn(model, None, _batches(0))
    assert grown.num_layers == 1 and grown.initial_params is params
    # the same solve through the single-network API (silent frames: none in this data)
    pairs = [model.ls_pairs(b, "hiss") for b in _batches(0)]
    _, single, _ = grow_by_least_squares(model.network, None, pairs)
    np.testing.assert_allclose(params["hiss"]["layer_0"]["kernel"],
                               single["layer_0"]["kernel"], rtol=1e-4, atol=1e-5)
    boxed = grown.init(jax.random.key(0), next(_batches(1)))
    assert isinstance(boxed["tone"]["layer_0"]["kernel"], nn.Partitioned)
    np.testing.assert_array_equal(nn.meta.unbox(boxed)["tone"]["layer_0"]["bias"],
                                  params["tone"]["layer_0"]["bias"])
    # initial_params is not part of the model's identity (jit static args stay hashable)
    assert hash(grown) == hash(dataclasses.replace(grown, initial_params=None))
    grown2, params2 = training.grow_dnn(grown, params, _batches(0))
    assert set(params2["tone"]) == {"layer_0", "layer_1"}
    assert params2["tone"]["layer_1"]["kernel"].shape == (33, 33)


@pytest.mark.slow
def test_short_training_beats_the_mixture_on_held_out_demo_tracks(tmp_path):
    import csv

    from mt3x.data.presets import build_demo
    from separation import checkpoints
    from separation.experiment import ExperimentConfig, run_experiment
    root = build_demo(tmp_path / "demo", seed=0)
    config = ExperimentConfig(instruments="piano=0-7;guitar=24-31;bass=32-39",
                              dnn_layers=1, dnn_steps_per_layer=0, dnn_finetune_steps=20,
                              unet_steps=60, eval_split="validation", eval_max_seconds=8.0,
                              bss_eval=False)
    summary = run_experiment(root, tmp_path / "out", config)
    rows = list(csv.DictReader(open(tmp_path / "out" / "separation_scores.csv")))
    by = {(r["method"], r["instrument"]): float(r["si_sdr"]) for r in rows if r["si_sdr"]}
    for inst in ("piano", "guitar", "bass"):
        mixture = by[("mixture", inst)]
        # every learned row (LS init alone, the fine-tuned DNN, the U-Net) beats the mixture on
        # held-out tracks, by at least 1 dB; the oracle at the DNN's STFT stays above the DNN
        for method in ("DNN, LS init", "DNN, 1 layers trained", "U-Net"):
            assert by[(method, inst)] > mixture + 1.0, (method, inst, by[(method, inst)], mixture)
        assert by[("IRM (n_fft 256)", inst)] > by[("DNN, LS init", inst)]
    assert (tmp_path / "out" / "stems").is_dir()
    # every checkpoint rebuilds its model from separator.json
    for key, directory in summary["checkpoints"].items():
        model, _, info = checkpoints.load_separator(directory)
        assert model.instruments == ("piano", "guitar", "bass")
        assert [g.name for g in info.groups] == ["piano", "guitar", "bass"]


def test_layerwise_training_shows_a_bar_per_stage_with_rate_loss_and_eta(tmp_path, capsys):
    model = DNNSeparator(instruments=("tone", "hiss"), n_fft=64, hop_length=32, context=1)
    training.train_dnn_layerwise(
        model, lambda seed: _batches(seed, n=100, rows=8), tmp_path, num_layers=1, ls_batches=2,
        steps_per_layer=3, finetune_steps=2, train_kwargs={"tensorboard": False})
    err = capsys.readouterr().err
    # tqdm's final redraw of each bar: prefix, count, elapsed<remaining, rate, loss
    for stage, steps in (("dnn layer 1/1", 3), ("dnn finetune", 2)):
        assert re.search(rf"{stage}: 100%.*\| {steps}/{steps} \[[0-9:]+<[0-9:]+, +[0-9.]+"
                         rf"(step/s|s/step), loss=[0-9.e+-]+\]", err), err
    assert re.search(r"dnn layer 1/1 least squares: 100%.*\| 2/2 ", err), err
    # and none without show_progress
    training.train_dnn_layerwise(
        model, lambda seed: _batches(seed, n=100, rows=8), tmp_path / "quiet", num_layers=1,
        ls_batches=2, steps_per_layer=2, finetune_steps=0,
        train_kwargs={"tensorboard": False, "show_progress": False})
    assert "dnn layer" not in capsys.readouterr().err

"""Chunked separation equals one-piece separation; evaluation table."""

import csv

import jax
import flax.linen as nn
import numpy as np
import pytest

from mt3x.errors import Mt3xError
from separation import evaluate, separate
from separation.model_objects import DNNSeparator
from separation.spectral import StftConfig


def test_weights_sum_to_one():
    plan = separate.plan_chunks(10_000, chunk_samples=1000, margin_samples=100, fade_samples=50)
    total = np.zeros(plan.padded_length)
    for i, s in enumerate(plan.starts):
        total[s:s + plan.chunk_samples] += plan.weights(i)
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    assert plan.padded_length >= 10_000
    with pytest.raises(Mt3xError, match="chunk_samples"):
        separate.plan_chunks(100, 100, 30, 10)
    aligned = separate.plan_chunks(10_000, 1000, 100, 50, align_samples=128)
    assert all(s % 128 == 0 for s in aligned.starts) and len(aligned.starts) > 2
    total = np.zeros(aligned.padded_length)
    for i, s in enumerate(aligned.starts):
        total[s:s + aligned.chunk_samples] += aligned.weights(i)
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


def test_pointwise_separator_is_reassembled_exactly():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(7777).astype(np.float32)
    fn = lambda chunks: np.stack([chunks, -2 * chunks], axis=1)
    out = separate.separate_long(fn, x, chunk_samples=1000, margin_samples=64, fade_samples=32,
                                 chunks_per_call=3)
    np.testing.assert_allclose(out, np.stack([x, -2 * x]), atol=1e-5)


def test_long_file_equals_one_piece_dnn():
    model = DNNSeparator(instruments=("a", "b"), n_fft=256, hop_length=128, context=3,
                         num_layers=2)
    rng = np.random.default_rng(1)
    t = np.arange(12_000) / 16000
    mixture = (np.sin(2 * np.pi * 220 * t) * 0.3 + 0.05 * rng.standard_normal(t.size)
               ).astype(np.float32)
    params = nn.meta.unbox(model.init(jax.random.key(0), {"mixture": mixture[None]}))
    whole = np.asarray(jax.jit(model.predict)(params, {"mixture": mixture[None]})["sources"][0])
    margin = separate.receptive_margin(model)
    chunked = separate.separate_long(separate.model_separate_fn(model, params), mixture,
                                     chunk_samples=6 * margin + 400, margin_samples=margin,
                                     fade_samples=200, chunks_per_call=2,
                                     align_samples=model.hop_length)
    assert chunked.shape == whole.shape
    err = np.max(np.abs(chunked - whole)) / np.max(np.abs(whole))
    assert err < 1e-3


def test_long_file_equals_one_piece_unet_with_default_chunking():
    """separate_with_model's defaults (10 s chunks, 0.1 s fades, 2 chunks per call, margin
    receptive_margin) on a small U-Net at 1 kHz: a 22 s file is 3 chunks (a batch of 2, then a
    shorter last one). Chunking must be invisible (float32 rounding: ~1e-7 measured), while a
    margin of one hop, short of the U-Net's reach, is 1e-2 off: the tolerance can see edges."""
    from separation.model_objects import UNetSeparator

    sr = 1000
    model = UNetSeparator(instruments=("a", "b"), sample_rate=sr, n_fft=128, hop_length=32,
                          channels=(4, 8))
    rng = np.random.default_rng(1)
    t = np.arange(22 * sr) / sr
    mixture = (0.3 * np.sin(2 * np.pi * 110 * t) * (1 + np.sin(2 * np.pi * 0.7 * t))
               + 0.2 * np.sign(np.sin(2 * np.pi * 3.1 * t)) * np.sin(2 * np.pi * 440 * t)
               + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    params = nn.meta.unbox(model.init(jax.random.key(0), {"mixture": mixture[None]}))
    whole = np.asarray(jax.jit(model.predict)(params, {"mixture": mixture[None]})["sources"][0])
    plan = separate.plan_chunks(mixture.size, int(separate.DEFAULT_CHUNK_SECONDS * sr),
                                separate.receptive_margin(model),
                                int(separate.DEFAULT_FADE_SECONDS * sr), model.hop_length)
    assert len(plan.starts) == 3
    chunked = separate.separate_with_model(model, params, mixture)
    assert chunked.shape == whole.shape == (2, mixture.size)
    scale = np.max(np.abs(whole))
    assert np.max(np.abs(chunked - whole)) / scale < 1e-5
    too_short = separate.separate_in_chunks(
        separate.model_separate_fn(model, params), mixture, sample_rate=sr,
        hop_length=model.hop_length, margin_samples=model.hop_length)
    assert np.max(np.abs(too_short - whole)) / scale > 1e-3


def test_evaluation_table(tmp_path):
    rng = np.random.default_rng(2)
    sr = 4000
    t = np.arange(2 * sr) / sr
    low = 0.5 * np.sin(2 * np.pi * 100 * t)
    high = 0.3 * np.sin(2 * np.pi * 1500 * t)
    silent = np.zeros_like(t)
    examples = [("T1", (low + high).astype(np.float32), np.stack([low, high, silent]).astype(np.float32))]
    est = evaluate.oracle_estimators(StftConfig(256, 64))
    scores = evaluate.score_tracks(est, examples, ["low", "high", "none"], sr)
    rows = evaluate.summarize_scores(scores)
    assert [(r.method, r.instrument) for r in rows][:3] == [("mixture", "low"), ("mixture", "high"),
                                                           ("mixture", "none")]
    by = {(r.method, r.instrument): r for r in rows}
    assert by[("IRM", "low")].si_sdr.median > by[("mixture", "low")].si_sdr.median + 10
    assert by[("IRM", "none")].si_sdr.median is None and by[("IRM", "none")].si_sdr.n_undefined == 1
    assert by[("mixture", "low")].si_sdri.median == pytest.approx(0.0, abs=1e-6)
    paths = evaluate.write_table(rows, scores, tmp_path)
    text = paths["markdown"].read_text()
    assert "| IRM | low |" in text and "nan" not in text.lower()
    with open(paths["csv"]) as f:
        records = list(csv.DictReader(f))
    assert len(records) == 9 and records[2]["si_sdr"] == ""
    png = evaluate.write_bar_chart(rows, tmp_path / "bars.png")
    assert png.stat().st_size > 1000
    # what each output is made of: the mixture holds low and high at 0.25 : 0.09 of energy
    matrices = evaluate.compositions(scores)
    mix = matrices["mixture"]
    assert mix.outputs == ("low", "high", "none")
    assert mix.parts == ("low", "high", "none", "other", "artifacts")
    np.testing.assert_allclose(mix.shares[:2], [[0.25 / 0.34, 0.09 / 0.34, 0, 0, 0]] * 2,
                               atol=1e-3)
    assert list(mix.tracks) == [1, 1, 0] and np.all(np.isnan(mix.shares[2]))
    irm = matrices["IRM"].shares
    assert irm[0, 0] > 0.95 and irm[1, 1] > 0.95 and irm[0, 1] < 0.01 and irm[1, 0] < 0.01
    paths = evaluate.write_compositions(scores, tmp_path, pictures=["IRM", "absent"])
    text = paths["composition"].read_text()
    assert "| low | 1 | 0.74 | 0.26 | 0.00 | 0.00 | 0.00 |" in text and "| none | 0 | n/a" in text
    assert paths["composition_png IRM"].name == "separation_composition_IRM.png"
    assert paths["composition_png IRM"].stat().st_size > 5000
    assert "composition_png absent" not in paths
    with open(paths["composition_csv"]) as f:
        cells = list(csv.DictReader(f))
    assert len(cells) == 3 * 3 * 5 and cells[1] == {"method": "mixture", "output": "low",
                                                   "tracks": "1", "part": "high",
                                                   "share": f"{0.09 / 0.34:.4f}"}


def test_spectrogram_figure(tmp_path):
    from separation.plots import spectrogram_figure
    rng = np.random.default_rng(5)
    mix = rng.standard_normal(8000).astype(np.float32) * 0.1
    est = np.stack([mix * 0.5, mix * 0.5])
    out = spectrogram_figure(tmp_path / "fig.png", mix, est, ["a", "b"], 16000, references=est)
    assert out.stat().st_size > 5000

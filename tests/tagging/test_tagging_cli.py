"""`mt3x-tag`: one CSV row per started second, training outputs, clear errors (exit 2)."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from mt3x.audio.io import write_audio
from tagging import cli as tag_cli
from tagging.model import TrainConfig, load_tagger, save_tagger, train_tagger
from tagging.pipeline import load_split_examples
from tests.tagging.conftest import SR, tone, tone_stem, write_slakh_track


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tagger trained on tracks Track00000-03 and validated on Track00007 of a hand-made Slakh
    folder; track i: bass (MIDI pitch 35 + i, 62-92 Hz) for 4 s, then a pipe (pitch 86 + i,
    1.2-1.8 kHz) for 4 s."""
    root = tmp_path_factory.mktemp("cli") / "slakh"
    for split, ids in (("train", range(4)), ("validation", [7])):
        for i in ids:
            write_slakh_track(root, split, f"Track{i:05d}", [
                tone_stem(33, 35 + i, 8.0, start=0.0, stop=4.0, amplitude=0.4),
                tone_stem(73, 86 + i, 8.0, start=4.0, stop=8.0, amplitude=0.2)])
    train = load_split_examples(root, "train")
    validation = load_split_examples(root, "validation", instruments=train.instruments)
    assert train.instruments == ["Bass", "Pipe"] and len(train) == 32 and len(validation) == 8
    tagger = train_tagger(train, validation,
                          config=TrainConfig(seed=0, min_positives=3, min_data_in_leaf=3))
    return save_tagger(tagger, tmp_path_factory.mktemp("cli") / "model")


def test_tag_writes_one_row_per_started_second(model_dir, tmp_path, capsys):
    # 5.5 s at 22.05 kHz (resampled on reading): bass for 3 s, then the high tone.
    rate = 22050
    audio = np.concatenate([tone(70.0, 3.0, 0.4, rate), tone(1500.0, 2.5, 0.2, rate)])
    wav = tmp_path / "song.wav"
    write_audio(wav, audio, rate)
    out = tmp_path / "out"
    assert tag_cli.main([str(wav), "--model", str(model_dir), "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "song.tags.csv")))
    assert len(rows) == math.ceil(len(audio) / rate) == 6
    assert [float(r["start_s"]) for r in rows] == [0, 1, 2, 3, 4, 5]
    assert set(rows[0]) == {"start_s", "end_s", "p_Bass", "p_Pipe", "Bass", "Pipe"}
    bass = [int(r["Bass"]) for r in rows]
    pipe = [int(r["Pipe"]) for r in rows]
    assert bass[:3] == [1, 1, 1] and bass[4:] == [0, 0]
    assert pipe[:3] == [0, 0, 0] and pipe[4:] == [1, 1]
    assert all(0.0 <= float(r["p_Bass"]) <= 1.0 for r in rows)
    assert (out / "song.timeline.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert sum(1 for line in printed.splitlines() if line.strip()[:1].isdigit()) == 6


def test_bad_input_exits_2(model_dir, tmp_path, capsys):
    wav = tmp_path / "ok.wav"
    write_audio(wav, tone(440.0, 1.0), SR)
    assert tag_cli.main([str(wav), "--model", str(tmp_path / "nope")]) == 2
    assert "error:" in capsys.readouterr().err
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....not audio")
    assert tag_cli.main([str(broken), "--model", str(model_dir), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "broken.wav" in err
    assert tag_cli.main(["train", "--data", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    assert tag_cli.main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "error:" in capsys.readouterr().err


def _eval_folder(root, split, ids, *, bass_amp, pipe_pitch, extra_program=None):
    """Tracks like the model's training tracks (bass then pipe); `extra_program` adds a stem
    of an instrument the model does not know."""
    for i in ids:
        stems = [tone_stem(33, 35 + i, 8.0, start=0.0, stop=4.0, amplitude=bass_amp),
                 tone_stem(73, pipe_pitch + i, 8.0, start=4.0, stop=8.0, amplitude=0.2)]
        if extra_program is not None:
            stems.append(tone_stem(extra_program, 60, 8.0, start=2.0, stop=6.0, amplitude=0.1))
        write_slakh_track(root, split, f"Track{i:05d}", stems)
    return root


def test_eval_prints_tagger_and_baselines_in_and_out_of_domain(model_dir, tmp_path, capsys):
    import json

    in_domain = _eval_folder(tmp_path / "in", "test", [10, 11], bass_amp=0.4, pipe_pitch=86)
    ood = _eval_folder(tmp_path / "ood", "test", [20, 21, 22], bass_amp=0.1, pipe_pitch=79,
                       extra_program=40)
    out = tmp_path / "eval"
    assert tag_cli.main(["eval", "--data", str(in_domain), "--model", str(model_dir),
                         "--ood-data", str(ood), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "in-domain" in printed and "out-of-domain" in printed
    for method in ("tagger", "constant prior", "majority class"):
        row = next(line for line in printed.splitlines() if line.startswith(method))
        assert len(row[len(method):].split()) == 6, row  # 3 scores x 2 domains
    assert "16 snippets of 2 tracks" in printed and "24 snippets of 3 tracks" in printed
    report = json.loads((out / "eval.json").read_text())
    scores = report["scores"]
    assert set(scores) == {"in-domain", "out-of-domain"}
    tagger = scores["in-domain"]["tagger"]
    # Held-out tracks like the training ones: the tagger beats the constant prior.
    assert tagger["micro_f1"] > scores["in-domain"]["constant prior"]["micro_f1"]
    assert tagger["micro_auc"] > 0.9
    for domain in scores.values():
        for method in domain.values():
            assert 0.0 <= method["micro_f1"] <= 1.0
    assert (out / "eval.txt").read_text().strip() in printed


def test_eval_without_ood_and_with_a_missing_folder(model_dir, tmp_path, capsys):
    in_domain = _eval_folder(tmp_path / "in", "test", [10], bass_amp=0.4, pipe_pitch=86)
    assert tag_cli.main(["eval", "--data", str(in_domain), "--model", str(model_dir),
                         "--quiet"]) == 0
    assert "out-of-domain" not in capsys.readouterr().out
    assert tag_cli.main(["eval", "--data", str(in_domain), "--model", str(model_dir),
                         "--ood-data", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: data folder not found" in capsys.readouterr().err


def test_train_then_tag_on_demo_data(demo_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert tag_cli.main(["train", "--data", str(demo_root), "--out", str(out), "--quiet"]) == 0
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    tagger = load_tagger(out)
    assert [r["instrument"] for r in rows] == tagger.instruments + ["micro", "macro"]
    assert float(rows[-2]["f1"]) > float(rows[-2]["baseline_f1"])
    assert "| **micro** |" in (out / "metrics.md").read_text()
    assert (out / "importance.png").read_bytes()[:4] == b"\x89PNG"
    importance = list(csv.reader(open(out / "importance.csv")))
    assert len(importance) == 1 + len(tagger.instruments)
    mix = next((demo_root / "test").glob("Track*/mix.flac"))
    capsys.readouterr()
    assert tag_cli.main([str(mix), "--model", str(out), "--out", str(tmp_path / "tags")]) == 0
    import soundfile

    seconds = soundfile.info(str(mix)).duration
    tags = list(csv.DictReader(open(tmp_path / "tags" / "mix.tags.csv")))
    assert len(tags) == math.ceil(seconds - 1e-9)


def test_output_names_are_unique():
    from pathlib import Path

    paths = [Path("a/Track1/mix.flac"), Path("a/Track2/mix.flac"), Path("b/song.wav"),
             Path("x/d/e.wav"), Path("y/d/e.wav")]
    assert tag_cli.output_names(paths) == ["Track1_mix", "Track2_mix", "song", "d_e_1", "d_e_2"]


def test_train_regularisation_flags_reach_lightgbm(tmp_path):
    """`--num-leaves` etc. set TrainConfig (and so the LightGBM params); omitted flags keep the
    TrainConfig defaults, so older command lines train the same models."""
    base = ["--data", str(tmp_path), "--out", str(tmp_path / "out")]
    default = tag_cli.train_config_from_args(tag_cli._train_parser().parse_args(base))
    assert default == TrainConfig()
    args = tag_cli._train_parser().parse_args(
        base + ["--num-leaves", "7", "--min-data-in-leaf", "100", "--feature-fraction", "0.5",
                "--lambda-l2", "10", "--threads", "2", "--seed", "3", "--thresholds", "micro"])
    config = tag_cli.train_config_from_args(args)
    assert config == TrainConfig(num_leaves=7, min_data_in_leaf=100, feature_fraction=0.5,
                                 lambda_l2=10.0, num_threads=2, seed=3,
                                 threshold_objective="micro")
    params = config.lgb_params()
    assert (params["num_leaves"], params["min_data_in_leaf"], params["feature_fraction"],
            params["lambda_l2"]) == (7, 100, 0.5, 10.0)

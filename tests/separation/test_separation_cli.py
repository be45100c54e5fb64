"""`mt3x-separate` through main(argv): stems equal the library's chunked separation, input is
downmixed/resampled with a note, references give the library's SI-SDR, foreign/missing/partial
checkpoints are refused with exit 2, and `eval` writes the table with every framing row."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import flax.linen as nn
import jax
import numpy as np
import pytest
import soundfile
import yaml

from mt3x.audio.io import read_audio
from separation.cli import separate as cli
from separation import checkpoints, data, metrics
from separation.model_objects import DNNSeparator
from separation.separate import separate_with_model

SR = 8000
SPEC = "low=32-39;high=0-7"


def _model() -> DNNSeparator:
    return DNNSeparator(instruments=("low", "high"), sample_rate=SR, n_fft=64, hop_length=32,
                        context=1, num_layers=1)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A separator run directory: random DNN params saved as a committed checkpoint."""
    model = _model()
    batch = {"mixture": np.zeros((1, SR), np.float32)}
    params = jax.tree.map(np.asarray, nn.meta.unbox(model.init(jax.random.key(3), batch)))
    directory = tmp_path_factory.mktemp("ckpt") / "dnn"
    checkpoints.save_params_checkpoint(directory, model, params,
                                       groups=data.parse_instruments(SPEC))
    return directory


def _tones(seconds: float, rate: int, freqs: tuple[float, ...]) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return np.stack([0.3 * np.sin(2 * np.pi * f * t) for f in freqs]).astype(np.float32)


def test_separates_stereo_file_at_other_rate_like_the_library(run_dir, tmp_path, capsys):
    stereo = _tones(3.0, 11025, (220.0, 1500.0))          # 2 channels at 11.025 kHz
    audio_path = tmp_path / "song.wav"
    soundfile.write(audio_path, stereo.T, 11025, subtype="FLOAT")
    assert cli.main([str(audio_path), "--checkpoint", str(run_dir), "--out",
                     str(tmp_path / "out"), "--chunk-seconds", "1.0"]) == 0
    printed = capsys.readouterr().out
    assert "2 channels downmixed to mono" in printed
    assert "resampled from 11025 Hz to 8000 Hz" in printed
    model, params, _ = checkpoints.load_separator(run_dir)
    mixture, _ = read_audio(audio_path, sample_rate=SR, mono=True)
    expected = separate_with_model(model, params, mixture, chunk_seconds=1.0)
    for j, name in enumerate(("low", "high")):
        stem, rate = soundfile.read(tmp_path / "out" / "song" / f"{name}.wav", dtype="float32")
        assert rate == SR and stem.shape == mixture.shape
        np.testing.assert_allclose(stem, np.clip(expected[j], -1, 1), atol=2 / 32768)
    assert (tmp_path / "out" / "song" / "spectrogram.png").stat().st_size > 1000


def test_reference_dir_scores_match_the_library(run_dir, tmp_path, capsys):
    refs = _tones(2.0, SR, (100.0, 2000.0))
    soundfile.write(tmp_path / "mix.wav", refs.sum(0), SR, subtype="FLOAT")
    ref_dir = tmp_path / "refs" / "mix"
    ref_dir.mkdir(parents=True)
    for name, ref in zip(("low", "high"), refs):
        soundfile.write(ref_dir / f"{name}.wav", ref, SR, subtype="FLOAT")
    assert cli.main([str(tmp_path / "mix.wav"), "--checkpoint", str(run_dir), "--out",
                     str(tmp_path / "out"), "--reference-dir", str(tmp_path / "refs")]) == 0
    scores = json.loads((tmp_path / "out" / "mix" / "scores.json").read_text())
    model, params, _ = checkpoints.load_separator(run_dir)
    est = separate_with_model(model, params, refs.sum(0))
    want = metrics.si_sdr(refs, est)
    for j, name in enumerate(("low", "high")):
        assert scores[name]["si_sdr"] == pytest.approx(float(want[j]), abs=0.05)
    assert "SI-SDR low" in capsys.readouterr().out


def test_refuses_checkpoint_for_other_instruments(run_dir, tmp_path, capsys):
    soundfile.write(tmp_path / "a.wav", np.zeros(SR, np.float32), SR)
    code = cli.main([str(tmp_path / "a.wav"), "--checkpoint", str(run_dir), "--out",
                     str(tmp_path / "o"), "--instruments", "bass=32-39;drums=drums"])
    assert code == 2
    err = capsys.readouterr().err
    assert "separates other instruments" in err and "low=32-39;high=0-7" in err
    assert not (tmp_path / "o").exists()
    # same names, other programs: also refused
    assert cli.main([str(tmp_path / "a.wav"), "--checkpoint", str(run_dir), "--out",
                     str(tmp_path / "o"), "--instruments", "low=40-47;high=0-7"]) == 2
    # the stored spec is accepted
    assert cli.main([str(tmp_path / "a.wav"), "--checkpoint", str(run_dir), "--out",
                     str(tmp_path / "o"), "--instruments", SPEC]) == 0


def test_missing_and_partial_checkpoints_exit_2(run_dir, tmp_path, capsys):
    soundfile.write(tmp_path / "a.wav", np.zeros(SR, np.float32), SR)
    args = [str(tmp_path / "a.wav"), "--out", str(tmp_path / "o")]
    assert cli.main(args + ["--checkpoint", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli.main(args + ["--checkpoint", str(tmp_path / "empty")]) == 2
    assert "separator.json not found" in capsys.readouterr().err
    partial = tmp_path / "partial"
    (partial / "checkpoints" / "7").mkdir(parents=True)     # never committed
    (partial / "separator.json").write_text((run_dir / "separator.json").read_text())
    assert cli.main(args + ["--checkpoint", str(partial)]) == 2
    assert "partial" in capsys.readouterr().err
    (partial / "separator.json").write_text('{"kind": "transformer", "settings": {}}')
    assert cli.main(args + ["--checkpoint", str(partial)]) == 2
    assert "'kind'" in capsys.readouterr().err


def _write_track(root: Path, split: str, track: str, seed: int, *, high: bool = True) -> None:
    """A 1.5 s track: a low sine (program 33), a high square (program 0; left out when not
    `high`, so the 'high' group is absent) and noise (program 56, in no group)."""
    rng = np.random.default_rng(seed)
    folder = root / split / track
    (folder / "stems").mkdir(parents=True)
    t = np.arange(int(1.5 * SR)) / SR
    stems = {"S00": (33, 0.3 * np.sin(2 * np.pi * rng.uniform(60, 120) * t)),
             "S01": (0, 0.2 * np.sign(np.sin(2 * np.pi * rng.uniform(600, 900) * t))),
             "S02": (56, 0.05 * rng.standard_normal(t.size))}
    if not high:
        del stems["S01"]
    meta = {"UUID": track, "stems": {}}
    for name, (program, audio) in stems.items():
        meta["stems"][name] = {"program_num": program, "is_drum": False, "inst_class": "x",
                               "audio_rendered": True}
        soundfile.write(folder / "stems" / f"{name}.wav", audio.astype(np.float32), SR,
                        subtype="FLOAT")
    soundfile.write(folder / "mix.wav", sum(a for _, a in stems.values()).astype(np.float32),
                    SR, subtype="FLOAT")
    (folder / "metadata.yaml").write_text(yaml.safe_dump(meta))


def test_eval_writes_every_row(run_dir, tmp_path, capsys):
    root = tmp_path / "set"
    for k in range(2):
        _write_track(root, "test", f"Track0000{k + 1}", k)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "separators.json").write_text(json.dumps({"dnn": str(run_dir)}))
    code = cli.main(["eval", "--data", str(root), "--split", "test", "--checkpoints",
                     str(tmp_path / "runs"), "--out", str(tmp_path / "scores"), "--no-bss-eval"])
    assert code == 0
    rows = list(csv.DictReader(open(tmp_path / "scores" / "separation_scores.csv")))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    assert methods == ["mixture", "IBM (n_fft 64)", "IRM (n_fft 64)", "DNN, trained"]
    by = {(r["method"], r["instrument"]): float(r["si_sdr"]) for r in rows}
    for inst in ("low", "high"):                # the oracle beats the mixture on this data
        assert by[("IRM (n_fft 64)", inst)] > by[("mixture", inst)] + 3.0
    assert (tmp_path / "scores" / "separation_si_sdr.png").is_file()
    assert (tmp_path / "scores" / "separation_scores.md").read_text().count("| DNN, trained |") == 2
    assert (tmp_path / "scores" / "stems" / "Track00001" / "DNN_trained" / "low.wav").is_file()
    # label=DIR form and a bad entry
    assert cli.main(["eval", "--data", str(root), "--checkpoints", f"mine={run_dir}", "--out",
                     str(tmp_path / "s2"), "--no-bss-eval", "--max-tracks", "1"]) == 0
    assert "| mine | low |" in (tmp_path / "s2" / "separation_scores.md").read_text()
    assert cli.main(["eval", "--data", str(root), "--checkpoints", "oops", "--out",
                     str(tmp_path / "s3")]) == 2
    assert "separators.json" in capsys.readouterr().err


def test_eval_prints_in_domain_and_out_of_domain_side_by_side(run_dir, tmp_path, capsys):
    root, ood = tmp_path / "set", tmp_path / "ood"
    for k in range(2):
        _write_track(root, "test", f"Track0000{k + 1}", k)
    for k in range(3):  # one OOD track has no 'high' stem: absent, not scored
        _write_track(ood, "test", f"Track0010{k}", 10 + k, high=k != 2)
    out = tmp_path / "scores"
    assert cli.main(["eval", "--data", str(root), "--checkpoints", f"dnn={run_dir}",
                     "--out", str(out), "--no-bss-eval", "--ood-data", str(ood)]) == 0
    printed = capsys.readouterr().out
    head = next(line for line in printed.splitlines() if line.startswith("| method"))
    assert "in-domain SI-SDR" in head and "out-of-domain SI-SDRi" in head
    assert "out-of-domain absent" in head and "silent" not in head
    cells = {}
    for line in printed.splitlines():
        parts = [p.strip() for p in line.strip("|").split("|")]
        if len(parts) == 10 and parts[0] in ("mixture", "IRM (n_fft 64)", "DNN, trained"):
            cells[(parts[0], parts[1])] = parts[2:]
    assert len(cells) == 6
    # in-domain: 2 tracks, none absent; out-of-domain: 'high' rests on 2 of 3 tracks.
    for method in ("mixture", "IRM (n_fft 64)", "DNN, trained"):
        assert cells[(method, "low")][2:4] == ["2", "0"]
        assert cells[(method, "low")][6:8] == ["3", "0"]
        assert cells[(method, "high")][6:8] == ["2", "1"]
    # The ideal ratio mask frames the OOD scores as it does the in-domain ones.
    for inst in ("low", "high"):
        assert float(cells[("IRM (n_fft 64)", inst)][4]) > float(cells[("mixture", inst)][4])
    assert (out / "separation_domains.md").read_text() in printed
    rows = list(csv.DictReader(open(out / "out-of-domain" / "separation_scores.csv")))
    assert {r["tracks_absent"] for r in rows if r["instrument"] == "high"} == {"1"}


def test_reference_dir_takes_a_slakh_track_and_mixes_its_stems_into_the_groups(
        run_dir, tmp_path, capsys):
    root = tmp_path / "set"
    _write_track(root, "test", "Track00001", 5)
    track = root / "test" / "Track00001"
    mix = track / "mix.wav"
    model, params, _ = checkpoints.load_separator(run_dir)
    mixture, _ = read_audio(mix, sample_rate=SR, mono=True)
    est = separate_with_model(model, params, mixture)
    # SPEC low=32-39;high=0-7: S00 (program 33) is low, S01 (program 0) high, S02 (56) neither
    stems = {n: read_audio(track / "stems" / f"{n}.wav")[0] for n in ("S00", "S01", "S02")}
    want = metrics.si_sdr(np.stack([stems["S00"], stems["S01"]]), est)
    # the track itself, or the split folder holding it (found by the input's folder name)
    for k, ref_dir in enumerate((track, root / "test")):
        out = tmp_path / f"out{k}"
        assert cli.main([str(mix), "--checkpoint", str(run_dir), "--out", str(out),
                         "--reference-dir", str(ref_dir), "--no-figure"]) == 0, \
            capsys.readouterr().err
        scores = json.loads((out / "mix" / "scores.json").read_text())
        for j, name in enumerate(("low", "high")):
            assert scores[name]["si_sdr"] == pytest.approx(float(want[j]), abs=0.05)
        # against the mixture too: the references are exactly S00 and S01 (S02 in neither)
        mix_want = metrics.si_sdr(np.stack([stems["S00"], stems["S01"]]),
                                  np.stack([mixture, mixture]))
        wrong = metrics.si_sdr(np.stack([stems["S00"] + stems["S02"], stems["S01"]]),
                               np.stack([mixture, mixture]))
        assert abs(float(mix_want[0]) - float(wrong[0])) > 0.5
        for j, name in enumerate(("low", "high")):
            assert scores[name]["si_sdr_mixture"] == pytest.approx(float(mix_want[j]), abs=0.01)
    # a folder with neither a track nor <instrument>.wav files says what it expected
    (tmp_path / "empty").mkdir()
    assert cli.main([str(mix), "--checkpoint", str(run_dir), "--out", str(tmp_path / "o"),
                     "--reference-dir", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "no reference for instrument 'low'" in err and "Slakh track folder" in err


def test_instruments_take_the_shared_group_syntax_and_refuse_bad_specs(run_dir, tmp_path, capsys):
    soundfile.write(tmp_path / "a.wav", np.zeros(SR, np.float32), SR)
    args = [str(tmp_path / "a.wav"), "--checkpoint", str(run_dir), "--out", str(tmp_path / "o"),
            "--no-figure", "--instruments"]
    assert cli.main(args + ["low=32-39,high=0-7"]) == 0      # ',' separates groups like ';'
    assert cli.main(args + ["low=32-39;violin"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: instrument spec 'low=32-39;violin': 'violin' is neither "
                          "name=selector nor a known instrument")
    assert "Traceback" not in err

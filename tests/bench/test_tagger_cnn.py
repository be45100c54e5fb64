"""bench/tagger_cnn.py: its augmentation and input normalisation, and a short run that must
learn a bass / pipe split on hand-made tracks, in domain and with shifted pitches."""

import importlib.util
import json
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from tests.tagging.conftest import tone_stem, write_slakh_track

_SPEC = importlib.util.spec_from_file_location(
    "bench_tagger_cnn", Path(__file__).resolve().parents[2] / "bench" / "tagger_cnn.py")
tagger_cnn = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = tagger_cnn   # flax modules are dataclasses: their module must be known
_SPEC.loader.exec_module(tagger_cnn)


def test_mix_in_power_adds_scaled_power_and_ors_labels_only_where_chosen():
    rng = np.random.default_rng(0)
    power, other = rng.random((3, 5, 4)), rng.random((3, 5, 4))
    labels = np.array([[1, 0], [0, 0], [0, 1]], np.float32)
    other_labels = np.array([[0, 1], [1, 0], [1, 1]], np.float32)
    gain = np.array([0.5, 0.25, 1.0])
    chosen = np.array([True, False, True])
    mixed, mixed_labels = tagger_cnn.mix_in_power(power, labels, other, other_labels, gain,
                                                   chosen)
    np.testing.assert_allclose(mixed[0], power[0] + 0.5 * other[0])
    np.testing.assert_array_equal(mixed[1], power[1])
    np.testing.assert_allclose(mixed[2], power[2] + other[2])
    np.testing.assert_array_equal(mixed_labels, [[1, 1], [0, 0], [1, 1]])
    assert labels[0, 1] == 0  # inputs untouched


def test_log_mel_normalisation_ignores_gain_and_floors_78_db_down():
    rng = np.random.default_rng(1)
    power = jnp.asarray(10 ** rng.uniform(-5, 0, (2, 6, 8)), jnp.float32)   # 50 dB range
    a = np.asarray(tagger_cnn.normalise_log_mel(power))
    b = np.asarray(tagger_cnn.normalise_log_mel(power * 1e3))
    np.testing.assert_allclose(a, b, atol=2e-3)
    assert a.max() == 1.0 and a.min() > -2.0
    quiet = np.asarray(tagger_cnn.normalise_log_mel(power.at[0, 0, 0].set(1e-10) * 1e3))
    assert quiet[0, 0, 0] == -2.0     # 100 dB below the snippet's maximum: floored


def test_short_run_learns_bass_against_pipe_and_reports_both_domains(tmp_path, capsys):
    root, ood = tmp_path / "slakh", tmp_path / "ood"
    layout = {"train": range(6), "validation": [6], "test": [7]}
    for split, ids in layout.items():
        for i in ids:
            write_slakh_track(root, split, f"Track{i:05d}", [
                tone_stem(33, 35 + i, 8.0, start=0.0, stop=4.0, amplitude=0.4),
                tone_stem(73, 86 + i, 8.0, start=4.0, stop=8.0, amplitude=0.2)])
    write_slakh_track(ood, "test", "Track00000", [       # other pitches, other order
        tone_stem(33, 45, 8.0, start=4.0, stop=8.0, amplitude=0.3),
        tone_stem(73, 79, 8.0, start=0.0, stop=4.0, amplitude=0.3)])
    out = tmp_path / "cnn.json"
    assert tagger_cnn.main(["--data", str(root), "--ood-data", str(ood), "--epochs", "25",
                             "--batch", "8", "--width", "8", "--mix", "0", "--eq-db", "0",
                             "--out", str(out), "--no-progress"]) == 0
    result = json.loads(out.read_text())
    assert result["instruments"] == ["Bass", "Pipe"] and result["train_snippets"] == 48
    for domain in ("in-domain", "out-of-domain"):
        scores = result["domains"][domain]["scores"]
        assert scores["tagger"]["micro_auc"] > 0.95, (domain, scores)
        assert scores["tagger"]["micro_f1"] > scores["constant prior"]["micro_f1"]
    assert "out-of-domain: AUC of track-averaged probabilities" in capsys.readouterr().out


def test_out_of_domain_folders_are_named_in_order():
    assert tagger_cnn.ood_domain_names(["data/ood", "data/ood_music_only"]) == {
        "out-of-domain": "data/ood", "out-of-domain (ood_music_only)": "data/ood_music_only"}
    assert tagger_cnn.ood_domain_names([]) == {}


def test_a_folder_without_tracks_is_an_error_naming_it_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "cnn.json"
    assert tagger_cnn.main(["--data", str(tmp_path / "missing"), "--out", str(out),
                            "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing/train: no Track* folders" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []

"""Separator bundles: `mt3x-export` of a separator run, `mt3x-separate --bundle` in a process that
cannot import the model code (stems equal the checkpoint path's, on a length that is not a
multiple of the hop),
the bfloat16 bundle (half the parameter bytes, computes with the rounded weights), and refusals
of bad inputs (exit 2 naming the path)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import flax.linen as nn
import jax
import ml_dtypes
import numpy as np
import pytest
import soundfile

from mt3x.bundles.bundle import BundleError, cast_params
from mt3x.cli import export as export_cli
from separation.cli import separate as separate_cli
from separation import checkpoints, data
from separation.bundle_runtime import BundleSeparator
from separation.model_objects import DNNSeparator, UNetSeparator
from separation.separate import separate_with_model

SR = 8000
SPEC = "low=32-39;high=0-7"
LSB = 1 / 32768                       # one step of the 16-bit WAVs
MODELS = {
    "dnn": DNNSeparator(instruments=("low", "high"), sample_rate=SR, n_fft=64, hop_length=32,
                        context=1, num_layers=1),
    "unet": UNetSeparator(instruments=("low", "high"), sample_rate=SR, n_fft=128, hop_length=32,
                          channels=(4, 8)),
}
BLOCKED = ("separation.model_objects", "separation.models", "separation.checkpoints",
           "separation.training", "mt3x.trainer", "mt3x.models", "flax", "orbax")
SUBPROCESS = textwrap.dedent("""
    import importlib.abc, json, sys
    BLOCKED = {blocked!r}

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if any(name == b or name.startswith(b + ".") for b in BLOCKED):
                raise ImportError("blocked in this test: " + name)
            return None

    sys.meta_path.insert(0, Blocker())
    from separation.cli import separate
    codes = [separate.main(argv) for argv in json.loads(sys.argv[1])]
    loaded = sorted(m for m in sys.modules if any(m == b or m.startswith(b + ".") for b in BLOCKED))
    print("RESULT " + json.dumps({{"codes": codes, "loaded": loaded}}))
""")


def _params(model):
    batch = {"mixture": np.zeros((1, SR), np.float32)}
    return jax.tree.map(np.asarray, nn.meta.unbox(model.init(jax.random.key(3), batch)))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Separator run directories (random params) and their float32 bundles (the DNN's lowered
    for the default platforms cpu, cuda, tpu; the U-Net's for cpu only)."""
    root = tmp_path_factory.mktemp("sep_bundles")
    out = {}
    for kind, model in MODELS.items():
        run = root / kind
        checkpoints.save_params_checkpoint(run, model, _params(model),
                                           groups=data.parse_instruments(SPEC))
        platforms = [] if kind == "dnn" else ["--platforms", "cpu"]
        assert export_cli.main(["--checkpoint", str(run), "--out", str(root / f"{kind}_bundle"),
                                *platforms]) == 0
        out[kind], out[f"{kind}_bundle"] = run, root / f"{kind}_bundle"
    return out


@pytest.fixture(scope="module")
def mixture_file(tmp_path_factory) -> tuple[Path, Path]:
    """A 1.3 s mixture (10407 samples: not a multiple of the 32-sample hop) and its stems."""
    folder = tmp_path_factory.mktemp("audio")
    t = np.arange(int(1.3 * SR) + 7) / SR
    rng = np.random.default_rng(0)
    low = 0.3 * np.sin(2 * np.pi * 110 * t) + 0.02 * rng.standard_normal(t.size)
    high = 0.2 * np.sign(np.sin(2 * np.pi * 1500 * t))
    soundfile.write(folder / "mix.wav", (low + high).astype(np.float32), SR, subtype="FLOAT")
    refs = folder / "refs"
    refs.mkdir()
    for name, stem in (("low", low), ("high", high)):
        soundfile.write(refs / f"{name}.wav", stem.astype(np.float32), SR, subtype="FLOAT")
    return folder / "mix.wav", refs


def test_export_prints_the_bundle(runs, capsys, tmp_path):
    manifest = json.loads((runs["dnn_bundle"] / "bundle.json").read_text())
    params = _params(MODELS["dnn"])
    assert manifest["kind"] == "separator" and manifest["stored_dtype"] == "float32"
    assert manifest["params"]["size"] == sum(a.size for a in jax.tree.leaves(params))
    assert manifest["separator"]["instruments"] == ["low", "high"]
    assert manifest["chunking"]["margin_samples"] == 64 + 2 * 32     # n_fft + (C + 1) * hop
    assert manifest["functions"]["separate"]["inputs"][-1] == "float32[b,n]"
    assert manifest["functions"]["separate"]["outputs"] == ["float32[b,2,n]"]
    assert manifest["functions"]["separate"]["platforms"] == ["cpu", "cuda", "tpu"]
    assert manifest["source"]["step"] == 0
    # again, to an existing folder: refused without --overwrite
    code = export_cli.main(["--checkpoint", str(runs["dnn"]), "--out", str(runs["dnn_bundle"]),
                            "--platforms", "cpu"])
    assert code == 2 and "already exists" in capsys.readouterr().err
    assert export_cli.main(["--checkpoint", str(runs["dnn"]), "--out", str(tmp_path / "b"),
                            "--platforms", "cpu", "--vocab", "mt3"]) == 2
    assert "MT3 checkpoints only" in capsys.readouterr().err


def test_bundle_without_model_code_matches_checkpoint(runs, mixture_file, tmp_path):
    """One fresh process (model code, Flax, Orbax blocked) separates with both bundles; the WAVs
    equal the checkpoint path's to 1 LSB (16-bit rounding of values equal to float rounding)."""
    mix, refs = mixture_file
    jobs = []
    for kind in MODELS:
        extra = ["--reference-dir", str(refs)] if kind == "dnn" else ["--no-figure"]
        common = [str(mix), "--chunk-seconds", "0.5", "--instruments", SPEC, *extra]
        assert separate_cli.main(common + ["--checkpoint", str(runs[kind]), "--out",
                                           str(tmp_path / f"{kind}_ckpt")]) == 0
        jobs.append(common + ["--bundle", str(runs[f"{kind}_bundle"]), "--out",
                              str(tmp_path / f"{kind}_bundle")])
    proc = subprocess.run([sys.executable, "-c", SUBPROCESS.format(blocked=BLOCKED),
                           json.dumps(jobs)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert result == {"codes": [0, 0], "loaded": []}
    assert "SI-SDR low" in proc.stdout
    for kind in MODELS:
        for name in ("low", "high"):
            want, _ = soundfile.read(tmp_path / f"{kind}_ckpt" / "mix" / f"{name}.wav",
                                     dtype="float32")
            got, _ = soundfile.read(tmp_path / f"{kind}_bundle" / "mix" / f"{name}.wav",
                                    dtype="float32")
            assert got.shape == want.shape == (10407,)
            assert np.abs(got - want).max() <= LSB * 1.01, (kind, name)
    want = json.loads((tmp_path / "dnn_ckpt" / "mix" / "scores.json").read_text())
    got = json.loads((tmp_path / "dnn_bundle" / "mix" / "scores.json").read_text())
    for name in ("low", "high"):
        # random weights: SI-SDR about -34 dB (low) and 0 dB (high)
        assert got[name]["si_sdr"] == pytest.approx(want[name]["si_sdr"], abs=1e-3)
    assert (tmp_path / "dnn_bundle" / "mix" / "spectrogram.png").stat().st_size > 1000


@pytest.mark.parametrize("kind", list(MODELS))
def test_runtime_equals_separate_with_model(runs, kind):
    """In float32, on a length that is not a multiple of the hop, over 4 chunks, and on the
    shortest call: the bundle gives the checkpoint path's stems to float rounding."""
    model, params, _ = checkpoints.load_separator(runs[kind])
    separator = BundleSeparator(runs[f"{kind}_bundle"])
    assert separator.instruments == ("low", "high")
    assert separator.groups == data.parse_instruments(SPEC)
    rng = np.random.default_rng(1)
    mixture = (0.3 * rng.standard_normal(12807)).astype(np.float32)   # 12807 = 400 * 32 + 7
    want = separate_with_model(model, params, mixture, chunk_seconds=0.5)
    got = separator.separate(mixture, chunk_seconds=0.5)              # 4 chunks
    np.testing.assert_allclose(got, want, atol=1e-6)
    short = mixture[None, :separator.min_samples]                      # the shortest call
    np.testing.assert_allclose(separator.separate_chunks(short),
                               model.predict(params, {"mixture": short})["sources"], atol=1e-6)
    with pytest.raises(BundleError, match=f"needs at least {separator.min_samples} samples"):
        separator.separate_chunks(short[:, :-1])


def test_bfloat16_bundle_is_half_and_uses_rounded_weights(runs, tmp_path, capsys):
    out = tmp_path / "dnn_bf16"
    assert export_cli.main(["--checkpoint", str(runs["dnn"]), "--out", str(out), "--dtype",
                            "bfloat16", "--platforms", "cpu"]) == 0
    printed = capsys.readouterr().out
    size = json.loads((out / "bundle.json").read_text())["params"]["size"]
    assert size == sum(a.size for a in jax.tree.leaves(_params(MODELS["dnn"])))
    assert f"kind separator, {size:,} parameters" in printed
    assert "stored as bfloat16" in printed and "params.safetensors: " in printed
    assert "separate.jax_exported: " in printed and "exported in " in printed
    size_32 = (runs["dnn_bundle"] / "params.safetensors").stat().st_size
    size_16 = (out / "params.safetensors").stat().st_size
    assert 0.45 < size_16 / size_32 < 0.55
    model, params, _ = checkpoints.load_separator(runs["dnn"])
    separator = BundleSeparator(out)
    assert separator.stored_dtype == "bfloat16"
    assert all(a.dtype == ml_dtypes.bfloat16 for a in jax.tree.leaves(separator.params))
    x = (0.3 * np.random.default_rng(2).standard_normal((2, 3200))).astype(np.float32)
    rounded = cast_params(cast_params(params, "bfloat16"), "float32")
    got = separator.separate_chunks(x)
    np.testing.assert_allclose(got, model.predict(rounded, {"mixture": x})["sources"], atol=1e-6)
    assert np.abs(got - model.predict(params, {"mixture": x})["sources"]).max() > 1e-5


def test_bad_inputs_exit_2_naming_the_path(runs, mixture_file, tmp_path, capsys):
    mix, _ = mixture_file
    (tmp_path / "empty").mkdir()
    assert export_cli.main(["--checkpoint", str(tmp_path / "empty"), "--out",
                            str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'empty'} is not a checkpoint" in err and "separator.json" in err
    assert export_cli.main(["--checkpoint", str(tmp_path / "nowhere"), "--out",
                            str(tmp_path / "b")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
    (tmp_path / "mt3run" / "checkpoints").mkdir(parents=True)       # a train_mt3 workdir layout
    assert export_cli.detect_kind(tmp_path / "mt3run") == "mt3"
    assert export_cli.detect_kind(runs["dnn"]) == "separator"

    def separate(*argv: str) -> tuple[int, str]:
        code = separate_cli.main([str(mix), "--out", str(tmp_path / "o"), *argv])
        return code, capsys.readouterr().err

    code, err = separate("--bundle", str(tmp_path / "empty"))
    assert code == 2 and f"{tmp_path / 'empty'} is not an mt3x bundle" in err
    truncated = tmp_path / "truncated"
    shutil.copytree(runs["dnn_bundle"], truncated)
    params_file = truncated / "params.safetensors"
    params_file.write_bytes(params_file.read_bytes()[:-100])
    code, err = separate("--bundle", str(truncated))
    assert code == 2 and f"{params_file}: checksum does not match" in err
    mt3 = tmp_path / "mt3_kind"
    shutil.copytree(runs["dnn_bundle"], mt3)
    manifest = json.loads((mt3 / "bundle.json").read_text())
    (mt3 / "bundle.json").write_text(json.dumps({**manifest, "kind": "mt3"}))
    code, err = separate("--bundle", str(mt3))
    assert code == 2 and "holds a 'mt3' bundle, not a 'separator' one" in err
    code, err = separate("--bundle", str(runs["dnn_bundle"]), "--instruments", "bass=32-39")
    assert code == 2 and f"bundle {runs['dnn_bundle']} separates other instruments" in err
    code, err = separate("--bundle", str(runs["dnn_bundle"]), "--step", "3")
    assert code == 2 and "--step" in err
    code, err = separate("--bundle", str(runs["dnn_bundle"]), "--checkpoint", str(runs["dnn"]))
    assert code == 2 and "not allowed with argument" in err
    code, err = separate()
    assert code == 2 and "one of the arguments --checkpoint --bundle is required" in err
    assert not (tmp_path / "o").exists()

"""The bad-input corpus (issue 15): every case runs through the real command line (in-process
`main([...])`, or a subprocess for the hang case) and must end with exit code 2, `error: ...`
naming the file and the problem, no traceback, and nothing half-written.

Cases: an impossible `--out` (under a file, in /proc, a file for a folder); a damaged newest
checkpoint step (an Orbax data file missing or truncated) for transcription, export, separation
and training resume (fall back to the newest intact step with a warning, or refuse naming step
and file); a mistyped gin macro or parameter; NaN audio; a separator run given to
`mt3x-transcribe`; names in metadata.yaml / bundle.json / a tagger manifest that escape their
folder; outputs created with the user's umask; a refused resume that must not hang.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import flax.linen as nn
import jax
import numpy as np
import pytest
import soundfile
import yaml

from mt3x.cli import data as data_cli
from mt3x.cli import export as export_cli
from mt3x.cli import transcribe as transcribe_cli
from mt3x.t5x_checkpoint.convert import write_mt3x_params_checkpoint
from mt3x.trainer import CheckpointOptions, train
from mt3x.transcription.checkpoint import load_model_and_params, model_spec
from mt3x.util.files import atomic_path, current_umask
from tests import mt3_testdata
from tests.trainer import trainer_toy as toy

REPO = Path(__file__).resolve().parents[1]
LAUNCH_TRAIN = REPO / "launch" / "train.py"


# ---- helpers -----------------------------------------------------------------------------------
def run_cli(main, argv, capsys) -> tuple[int, str]:
    """(exit code, stderr) of an in-process CLI call; asserts there is no traceback."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse
        code = exit_.code
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, err


def assert_refused(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert "error: " in err, err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"


def leftovers(folder: Path) -> list[str]:
    """Temporary or partial names anywhere under `folder`."""
    return sorted(str(p) for p in folder.rglob("*")
                  if ".tmp" in p.name or ".partial" in p.name or "write-probe" in p.name)


def state_data_files(step_dir: Path) -> list[Path]:
    """The Orbax/OCDBT data files of a checkpoint step's arrays (largest first)."""
    files = [p for p in (step_dir / "state" / "d").iterdir() if p.is_file()]
    return sorted(files, key=lambda p: -p.stat().st_size)


def write_wav(path: Path, audio: np.ndarray, rate: int = 16000, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), audio, rate, subtype=subtype)
    return path


@pytest.fixture(scope="module")
def mt3_run(tmp_path_factory) -> Path:
    """A tiny MT3 run directory with two committed steps, 0 and 5 (5 a copy of 0)."""
    model = mt3_testdata.tiny_model()
    batch = {"encoder_input_tokens": np.zeros((1, 256, 128), np.float32)}
    params = nn.unbox(model.init(jax.random.key(3), batch))
    run = tmp_path_factory.mktemp("bad_inputs_mt3") / "run"
    write_mt3x_params_checkpoint(run, params, meta={"gin_config": ""},
                                 model_spec=model_spec(model, "mt3"))
    shutil.copytree(run / "checkpoints" / "0", run / "checkpoints" / "5")
    return run


def damaged_copy(run: Path, tmp_path: Path, *, steps: tuple[int, ...], how: str) -> Path:
    """A copy of `run` whose steps `steps` lost ('missing') or truncated ('truncated') their
    largest array data file."""
    copy = tmp_path / f"{run.name}_{how}"
    shutil.copytree(run, copy)
    for step in steps:
        victim = state_data_files(copy / "checkpoints" / str(step))[0]
        if how == "missing":
            victim.unlink()
        else:
            with open(victim, "r+b") as handle:
                handle.truncate(victim.stat().st_size // 3)
    return copy


@pytest.fixture()
def audio_file(tmp_path) -> Path:
    t = np.arange(16000 * 3) / 16000
    return write_wav(tmp_path / "in" / "tone.wav", 0.3 * np.sin(2 * np.pi * 440 * t))


# ---- 1. impossible --out -----------------------------------------------------------------------
def test_data_build_out_under_a_file_or_in_proc(tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    code, err = run_cli(data_cli.main, ["build", "--out", blocker / "sub", "--no-progress"],
                        capsys)
    assert_refused(code, err, str(blocker / "sub"), f"{blocker} is a file")
    code, err = run_cli(data_cli.main, ["build", "--out", "/proc/x", "--no-progress"], capsys)
    assert_refused(code, err, "/proc/x", "not writable")
    assert not Path("/proc/x").exists()
    assert leftovers(tmp_path) == [] and sorted(os.listdir(tmp_path)) == ["file.txt"]


def test_transcribe_out_is_a_file(tmp_path, audio_file, mt3_run, capsys):
    out = tmp_path / "out.mid"
    out.write_text("not a folder")
    code, err = run_cli(transcribe_cli.main,
                        [audio_file, "--checkpoint", mt3_run, "--out", out], capsys)
    assert_refused(code, err, str(out), "is a file; expected a folder")
    assert out.read_text() == "not a folder"


def test_export_out_in_proc(mt3_run, capsys):
    code, err = run_cli(export_cli.main, ["--checkpoint", mt3_run, "--out", "/proc/x/bundle"],
                        capsys)
    assert_refused(code, err, "/proc/x/bundle", "cannot be written")


# ---- 1. damaged checkpoints ----------------------------------------------------------------------
@pytest.mark.parametrize("how", ["missing", "truncated"])
def test_damaged_newest_step_falls_back_with_a_warning(mt3_run, tmp_path, how, caplog):
    run = damaged_copy(mt3_run, tmp_path, steps=(5,), how=how)
    victim_dir = run / "checkpoints" / "5" / "state" / "d"
    with caplog.at_level(logging.WARNING, logger="mt3x.trainer.checkpoints"):
        _, params, _, step = load_model_and_params(run)
    assert step == 0
    warning = caplog.text
    assert "step 5 is damaged" in warning and str(victim_dir) in warning
    assert ("file missing" if how == "missing" else "file truncated") in warning
    _, reference, _, _ = load_model_and_params(mt3_run / "checkpoints" / "0")
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(reference)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_explicit_damaged_step_and_no_intact_step_are_refused(mt3_run, tmp_path, audio_file,
                                                              capsys):
    run = damaged_copy(mt3_run, tmp_path, steps=(0, 5), how="truncated")
    out = tmp_path / "midi"
    code, err = run_cli(transcribe_cli.main, [audio_file, "--checkpoint", run, "--out", out],
                        capsys)
    assert_refused(code, err, "no intact step", "step 5 is damaged", "step 0 is damaged",
                   str(run / "checkpoints" / "5" / "state" / "d"), "file truncated")
    assert not out.exists()
    code, err = run_cli(export_cli.main, ["--checkpoint", run, "--out", tmp_path / "bundle"],
                        capsys)
    assert_refused(code, err, "step 5 is damaged", "file truncated")
    assert not (tmp_path / "bundle").exists() and leftovers(tmp_path) == []
    one_bad = damaged_copy(mt3_run, tmp_path, steps=(5,), how="missing")
    code, err = run_cli(transcribe_cli.main, [audio_file, "--checkpoint", one_bad, "--step", 5,
                                              "--out", out], capsys)
    assert_refused(code, err, "step 5 is damaged", "file missing")


def test_damaged_separator_checkpoint(tmp_path, audio_file, capsys):
    from separation import checkpoints, data
    from separation.cli import separate
    from separation.model_objects import DNNSeparator

    model = DNNSeparator(instruments=("low", "high"), sample_rate=8000, n_fft=64, hop_length=32,
                         context=1, num_layers=1)
    params = jax.tree.map(np.asarray, nn.meta.unbox(
        model.init(jax.random.key(3), {"mixture": np.zeros((1, 8000), np.float32)})))
    run = checkpoints.save_params_checkpoint(tmp_path / "sep", model, params,
                                             groups=data.parse_instruments("low=32-39;high=0-7"))
    # NaN input: the error names the input file, not an output
    nan_audio = np.full(8000, np.nan, np.float32)
    nan_file = write_wav(tmp_path / "nan.wav", nan_audio, 8000, subtype="FLOAT")
    out = tmp_path / "stems"
    code, err = run_cli(separate.main, [nan_file, "--checkpoint", run, "--out", out], capsys)
    assert_refused(code, err, f"{nan_file}: audio contains", "NaN")
    assert str(out) not in err and not (out / "nan").exists()
    # a separator run given to mt3x-transcribe
    code, err = run_cli(transcribe_cli.main,
                        [audio_file, "--checkpoint", run, "--out", tmp_path / "midi"], capsys)
    assert_refused(code, err, str(run), "separator run", "separator.json", "mt3x-separate")
    # damaged: its only step
    victim = state_data_files(run / "checkpoints" / "0")[0]
    victim.unlink()
    code, err = run_cli(separate.main, [audio_file, "--checkpoint", run, "--out", out], capsys)
    assert_refused(code, err, "step 0 is damaged", str(victim), "file missing")
    assert not out.exists()


def test_training_resumes_from_the_newest_intact_step(tmp_path, caplog):
    kwargs = dict(model=toy.ToyRegressor(), num_steps=4, batch_size=8, show_progress=False,
                  tensorboard=False, checkpoint=CheckpointOptions(
                      save_every_steps=2, keep_latest=3, async_save=False))
    reference = train(train_data=toy.batches, workdir=tmp_path / "ref", **kwargs)
    run = tmp_path / "run"
    train(train_data=toy.batches, workdir=run, **kwargs)
    victim = state_data_files(run / "checkpoints" / "4")[0]
    victim.write_bytes(victim.read_bytes()[:10])
    with caplog.at_level(logging.WARNING, logger="mt3x.trainer.checkpoints"):
        resumed = train(train_data=toy.batches, workdir=run, **kwargs)
    assert "step 4 is damaged" in caplog.text and str(victim) in caplog.text
    assert sorted(resumed.losses) == [3, 4]            # steps 3-4 trained again from step 2
    for step in (3, 4):
        assert resumed.losses[step] == reference.losses[step]
    assert (run / "checkpoints" / "4.damaged").is_dir()  # kept aside, not deleted


@pytest.mark.slow
def test_cli_fall_back_past_a_damaged_step_and_say_so(mt3_run, tmp_path, audio_file, capsys,
                                                      caplog):
    """mt3x-transcribe and mt3x-export complete from step 0 when step 5 is damaged, warning
    about step 5 and its file."""
    run = damaged_copy(mt3_run, tmp_path, steps=(5,), how="truncated")
    with caplog.at_level(logging.WARNING, logger="mt3x.trainer.checkpoints"):
        code = transcribe_cli.main([str(audio_file), "--checkpoint", str(run), "--out",
                                    str(tmp_path / "midi"), "--no_pianoroll"])
        assert code == 0
        assert "step 0" in capsys.readouterr().out
        assert export_cli.main(["--checkpoint", str(run), "--out", str(tmp_path / "bundle"),
                                "--platforms", "cpu"]) == 0
    assert caplog.text.count("step 5 is damaged") == 2
    assert json.loads((tmp_path / "bundle" / "bundle.json").read_text())["source"]["step"] == 0


# ---- 1. gin typos ----------------------------------------------------------------------------------
@pytest.mark.parametrize("entry, gin_file, binding, expected", [
    ("train", "experiments/demo_cpu.gin", "--gin.TRAIN_STEPZ=2",
     ["unknown macro 'TRAIN_STEPZ'", "did you mean TRAIN_STEPS", "demo_cpu.gin"]),
    ("train", "experiments/demo_cpu.gin", "--gin.mt3x.runs.DataConfig.batch_sise=4",
     ["batch_sise", "did you mean batch_size"]),
    ("separation_train", "separation/dnn_demo.gin", "--gin.INSTRUMENT='piano'",
     ["unknown macro 'INSTRUMENT'", "did you mean INSTRUMENTS", "dnn_demo.gin"]),
])
def test_mistyped_gin_binding_is_refused(tmp_path, entry, gin_file, binding, expected, capsys):
    import importlib.util

    import gin

    # By path, under its own name: a plain `import train` could find another `train` module
    # (bench/train.py once a bench script has put bench/ on sys.path).
    spec = importlib.util.spec_from_file_location(f"launch_{entry}",
                                                  LAUNCH_TRAIN.parent / f"{entry}.py")
    launcher = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(launcher)
    gin.clear_config()
    try:
        code, err = run_cli(launcher.main, [f"--gin_file={gin_file}", binding,
                                            "--gin.DATASET_ROOT='nowhere'",
                                            "--workdir", tmp_path / "run"], capsys)
    finally:
        gin.clear_config()
    assert_refused(code, err, *expected)
    assert not (tmp_path / "run").exists()


# ---- 3. names that escape their folder ---------------------------------------------------------
def _track(root: Path, stem_name: str) -> Path:
    track = root / "train" / "Track00001"
    write_wav(track / "mix.wav", np.zeros(1600))
    meta = {"audio_dir": "stems", "midi_dir": "MIDI",
            "stems": {stem_name: {"program_num": 0, "is_drum": False, "inst_class": "Piano",
                                  "audio_rendered": True}}}
    (track / "metadata.yaml").write_text(yaml.safe_dump(meta))
    return track


def test_metadata_stem_outside_the_track_is_refused(tmp_path, capsys):
    root = tmp_path / "dataset"
    secret = write_wav(tmp_path / "outside" / "secret.flac", np.zeros(1600))
    track = _track(root, "../../../../outside/secret")
    assert (track / "stems" / "../../../../outside/secret.flac").resolve() == secret.resolve()
    code = data_cli.main(["check", str(root)])
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert code != 0 and "Traceback" not in text
    assert str(track / "metadata.yaml") in text and "resolves outside" in text


def test_bundle_function_file_outside_the_bundle_is_refused(tmp_path, audio_file, capsys):
    from mt3x.bundles.bundle import BUNDLE_FORMAT
    from mt3x.bundles.safetensors import write_safetensors

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    write_safetensors(bundle / "params.safetensors", {"w": np.zeros(2, np.float32)})
    (tmp_path / "evil.jax_exported").write_bytes(b"x")
    manifest = {"format": BUNDLE_FORMAT, "kind": "mt3",
                "params": {"file": "params.safetensors"},
                "functions": {"encode": {"file": "../evil.jax_exported", "platforms": ["cpu"]}}}
    (bundle / "bundle.json").write_text(json.dumps(manifest))
    out = tmp_path / "midi"
    code, err = run_cli(transcribe_cli.main, [audio_file, "--bundle", bundle, "--out", out],
                        capsys)
    assert_refused(code, err, str(bundle / "bundle.json"), "functions.encode.file",
                   "resolves outside")
    assert not out.exists()


def test_tagger_model_file_outside_the_model_is_refused(tmp_path, capsys):
    from tagging import cli as tag_cli
    from tagging.examples import InstrumentGrouping, LabelConfig
    from tagging.features import FeatureConfig, feature_names
    from tagging.model import FORMAT, MANIFEST

    model = tmp_path / "model"
    model.mkdir()
    (tmp_path / "secret.txt").write_text("tree\n")
    features = FeatureConfig()
    manifest = {"format": FORMAT, "feature_config": features.to_json(),
                "feature_names": list(feature_names(features)),
                "label_config": LabelConfig().to_json(),
                "grouping": InstrumentGrouping().to_json(),
                "instruments": [{"name": "piano", "model_file": "../secret.txt",
                                 "threshold": 0.5}]}
    (model / MANIFEST).write_text(json.dumps(manifest))
    audio = write_wav(tmp_path / "a.wav", np.zeros(16000))
    code, err = run_cli(tag_cli.main, [audio, "--model", model, "--out", tmp_path / "tags"],
                        capsys)
    assert_refused(code, err, str(model / MANIFEST), "model_file", "resolves outside")


# ---- 3. umask ----------------------------------------------------------------------------------
@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_outputs_follow_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        assert current_umask() == mask
        with atomic_path(tmp_path / "folder", is_dir=True) as tmp:
            (tmp / "inside.txt").write_text("x")
        with atomic_path(tmp_path / "file.txt") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o777 & ~mask
    assert (tmp_path / "file.txt").stat().st_mode & 0o777 == 0o666 & ~mask


# ---- 2. no hang after a refused resume -----------------------------------------------------------
@pytest.mark.slow
def test_refused_resume_exits_promptly_every_time(tmp_path_factory, tmp_path):
    """A workdir holding a checkpoint of another network: launch/train.py refuses the resume
    (exit 2, naming the array) and exits within the timeout, each of 3 times."""
    dataset = mt3_testdata.tiny_dataset(tmp_path_factory)
    model = mt3_testdata.tiny_model()
    params = nn.unbox(model.init(jax.random.key(0),
                                 {"encoder_input_tokens": np.zeros((1, 256, 128), np.float32)}))
    workdir = tmp_path / "run"
    write_mt3x_params_checkpoint(workdir, params, meta={"gin_config": ""})
    argv = [sys.executable, str(LAUNCH_TRAIN), "--gin_file=experiments/demo_cpu.gin",
            f"--gin.DATASET_ROOT='{dataset}'", "--gin.TRAIN_STEPS=2", f"--workdir={workdir}"]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"}
    for _ in range(3):
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=240, env=env,
                              cwd=REPO)
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert "does not match this model" in proc.stderr and "Traceback" not in proc.stderr

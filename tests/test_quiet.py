"""Quiet tools: TensorFlow/absl/pydub/Orbax start-up noise is hidden by default in every entry
point and shown with --verbose (`mt3x.util.quiet`). Each case runs a real process."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mt3x.util.quiet import NOISE

REPO = Path(__file__).resolve().parents[1]


def _load_setup():
    spec = importlib.util.spec_from_file_location("mt3x_setup_quiet", REPO / "setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CONSOLE_SCRIPTS = _load_setup().CONSOLE_SCRIPTS
HAS_FFMPEG = bool(shutil.which("ffmpeg") or shutil.which("avconv"))


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "MT3X_VERBOSE", "PYTHONWARNINGS")}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    return env


def _python(code: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=_env(), cwd=cwd or REPO, timeout=300)


def _noise(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if NOISE.search(line)]


@pytest.mark.parametrize("script", CONSOLE_SCRIPTS, ids=lambda s: s.split("=")[0])
def test_console_script_help_is_quiet(script):
    """Runs each console script as pip's wrapper does (`from module import main`)."""
    name, target = script.split("=")
    module, func = target.split(":")
    wrapper = f"import sys; from {module} import {func}; sys.exit({func}())"
    proc = _python(wrapper, "--help")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert name in proc.stdout or "usage" in proc.stdout
    assert _noise(proc.stderr) == [], f"{name}: {proc.stderr[-2000:]}"


@pytest.mark.skipif(HAS_FFMPEG, reason="pydub warns only where ffmpeg is missing")
def test_verbose_shows_pydub_warning():
    wrapper = "import sys; from mt3x.cli.transcribe import main; sys.exit(main())"
    quiet = _python(wrapper, "--help")
    verbose = _python(wrapper, "--help", "--verbose")
    assert quiet.returncode == verbose.returncode == 0, verbose.stderr[-2000:]
    assert "Couldn't find ffmpeg" not in quiet.stderr
    assert "Couldn't find ffmpeg" in verbose.stderr


def test_training_entry_point_hides_tensorflow_noise_and_keeps_the_error(tmp_path):
    """launch/train.py imports TensorFlow (the seqio path) before it refuses a missing dataset:
    quiet, the only stderr is the error; --verbose shows what TensorFlow prints on this machine."""
    pytest.importorskip("tensorflow")
    raw = _python("import tensorflow")  # what TensorFlow prints here, unfiltered
    assert raw.returncode == 0, raw.stderr[-2000:]
    cmd = [str(REPO / "launch" / "train.py"), "--gin_file=experiments/demo_cpu.gin",
           f"--gin.DATASET_ROOT='{tmp_path / 'missing'}'"]
    quiet = subprocess.run([sys.executable, *cmd, f"--workdir={tmp_path / 'q'}"],
                           capture_output=True, text=True, env=_env(), timeout=300)
    assert quiet.returncode == 2, quiet.stderr[-2000:]
    assert "error: " in quiet.stderr and "missing" in quiet.stderr
    assert _noise(quiet.stderr) == [], quiet.stderr[-2000:]
    assert "Traceback" not in quiet.stderr
    assert not (tmp_path / "q").exists()  # the compilation cache left nothing behind either
    verbose = subprocess.run([sys.executable, *cmd, f"--workdir={tmp_path / 'v'}", "--verbose"],
                             capture_output=True, text=True, env=_env(), timeout=300)
    assert verbose.returncode == 2 and "error: " in verbose.stderr
    expected = {NOISE.search(line).group(0) for line in _noise(raw.stderr)}
    shown = {NOISE.search(line).group(0) for line in _noise(verbose.stderr)}
    # TensorFlow prints a varying subset (order of imports, log level); some of it shows.
    assert not expected or expected & shown, (expected, verbose.stderr[-2000:])


def test_filtered_stderr_keeps_real_messages():
    """Native writes to file descriptor 2 pass unless they are known noise."""
    code = textwrap.dedent("""
        import os
        from mt3x.util.quiet import filtered_stderr
        with filtered_stderr():
            os.write(2, b"I0000 cudart_stub.cc:31] Could not find cuda drivers on your machine\\n")
            os.write(2, b"E0000 something real went wrong\\n")
            os.write(2, b"W0000 failed call to cuInit: UNKNOWN ERROR (303)\\n")
        os.write(2, b"after\\n")
    """)
    proc = _python(code)
    assert proc.returncode == 0
    assert proc.stderr.splitlines() == ["E0000 something real went wrong", "after"]


def test_orbax_read_only_warning_is_hidden_unless_verbose(tmp_path):
    code = textwrap.dedent("""
        import sys
        from mt3x.util.quiet import quiet_startup
        quiet_startup()
        import orbax.checkpoint as ocp
        options = ocp.CheckpointManagerOptions(read_only=True)
        ocp.CheckpointManager(sys.argv[1], options=options)
        print("opened")
    """)
    (tmp_path / "ckpt").mkdir()
    quiet = _python(code, str(tmp_path / "ckpt"))
    verbose = _python(code, str(tmp_path / "ckpt"), "--verbose")
    assert quiet.returncode == verbose.returncode == 0, verbose.stderr[-2000:]
    assert "opened" in quiet.stdout
    assert "read only" not in quiet.stderr
    assert "read only" in verbose.stderr

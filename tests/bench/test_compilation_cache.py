"""The persistent compilation cache: a second process loads what the first one compiled."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import pytest

from mt3x.util import compilation_cache
from mt3x.util.compilation_cache import ENV_VAR, WORKDIR_SUBDIR, enable_compilation_cache
from tests import mt3_testdata as data

REPO = Path(__file__).resolve().parents[2]

# Compiles one jitted function in a fresh process and reports the cache events it saw.
SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, jax.numpy as jnp
    from mt3x.util.compilation_cache import enable_compilation_cache
    events = []
    jax.monitoring.register_event_listener(lambda name, **kw: events.append(name))
    cache_dir = enable_compilation_cache(sys.argv[1])
    assert enable_compilation_cache(sys.argv[1]) == cache_dir  # idempotent
    @jax.jit
    def f(x):
        for _ in range(40):
            x = jnp.sin(x @ x.T) + jnp.cos(x)
        return x.sum()
    print(float(f(jnp.ones((64, 64)))))
    print(json.dumps({"dir": str(cache_dir),
                      "hits": events.count("/jax/compilation_cache/cache_hits"),
                      "misses": events.count("/jax/compilation_cache/cache_misses")}))
""")


def _run(workdir: Path, **env: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    environ.update({"JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO), **env})
    # The threshold is 0.5 s; a 40-layer chain compiles in less on a fast machine, so the
    # subprocess lowers it to 0 through JAX's own flag (applied after ours would override it).
    script = SCRIPT.replace(
        "cache_dir = enable_compilation_cache(sys.argv[1])",
        "cache_dir = enable_compilation_cache(sys.argv[1]); "
        "jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)")
    proc = subprocess.run([sys.executable, "-c", script, str(workdir)], capture_output=True,
                          text=True, env=environ, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _entries(cache_dir: Path) -> list[Path]:
    return [p for p in cache_dir.rglob("*") if p.is_file()]


def test_second_process_hits_the_cache(tmp_path):
    first = _run(tmp_path)
    cache_dir = Path(first["dir"])
    assert cache_dir == (tmp_path / WORKDIR_SUBDIR).resolve()
    written = _entries(cache_dir)
    assert written, "the first process wrote no cache entries"
    assert first["hits"] == 0 and first["misses"] >= 1
    second = _run(tmp_path)
    assert second["hits"] >= 1, second
    assert second["misses"] == 0, second
    assert len(_entries(cache_dir)) == len(written)  # nothing new to write


def test_env_override_and_off(tmp_path):
    custom = tmp_path / "custom"
    report = _run(tmp_path / "run", **{ENV_VAR: str(custom)})
    assert Path(report["dir"]) == custom.resolve() and _entries(custom)
    assert not (tmp_path / "run" / WORKDIR_SUBDIR).exists()
    off = _run(tmp_path / "off_run", **{ENV_VAR: "off"})
    assert off["dir"] == "None" and off["hits"] == 0
    assert not (tmp_path / "off_run").exists()


def test_resolve_and_enable_in_process(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compilation_cache.resolve_cache_dir(None) == tmp_path / "xdg" / "mt3x" / "jax"
    assert compilation_cache.resolve_cache_dir("gs://bucket/run") == tmp_path / "xdg/mt3x/jax"
    assert compilation_cache.resolve_cache_dir(tmp_path) == tmp_path / WORKDIR_SUBDIR
    before = {name: jax.config.values.get(name) for name in (
        "jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
        "jax_persistent_cache_min_entry_size_bytes", "jax_enable_compilation_cache")}
    try:
        first = enable_compilation_cache(tmp_path / "a")
        assert jax.config.values["jax_compilation_cache_dir"] == str(first)
        assert jax.config.values["jax_persistent_cache_min_compile_time_secs"] == 0.5
        assert enable_compilation_cache(tmp_path / "a") == first
        second = enable_compilation_cache(tmp_path / "b")
        assert second != first and jax.config.values["jax_compilation_cache_dir"] == str(second)
    finally:
        for name, value in before.items():
            if name in jax.config.values:
                jax.config.update(name, value)
        compilation_cache.jax_compilation_cache.reset_cache()


# ---- the entry point: launch/train.py turns the cache on under its workdir ---------------------
# Runs launch/train.py as `python launch/train.py` would (run_path as __main__), recording JAX's
# cache events and backend compile seconds at exit; nothing in the entry point is replaced.
ENTRY = textwrap.dedent("""
    import atexit, json, runpy, sys
    import jax
    report = {"hits": 0, "misses": 0, "compile_s": 0.0}
    def count(name, **kw):
        if name.endswith("/cache_hits"): report["hits"] += 1
        if name.endswith("/cache_misses"): report["misses"] += 1
    def seconds(name, secs, **kw):
        if name == "/jax/core/compile/backend_compile_duration": report["compile_s"] += secs
    jax.monitoring.register_event_listener(count)
    jax.monitoring.register_event_duration_secs_listener(seconds)
    out = sys.argv.pop(1)
    atexit.register(lambda: open(out, "w").write(json.dumps(report)))
    sys.argv[0] = sys.argv[1]; del sys.argv[1]
    runpy.run_path(sys.argv[0], run_name="__main__")
""")


def _train_process(train_py: Path, report: Path, argv: list[str]) -> dict:
    environ = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    environ.update({"JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)})
    proc = subprocess.run([sys.executable, "-c", ENTRY, str(report), str(train_py), *argv],
                          capture_output=True, text=True, env=environ, timeout=900, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(report.read_text())


@pytest.mark.slow
def test_resume_through_launch_train_compiles_from_the_workdir_cache(tmp_path_factory, tmp_path):
    """A first launch writes <workdir>/jax_cache; resuming the run in a new process compiles
    its train step from there (cache hits, nothing new written, far less compile time)."""
    root = data.tiny_dataset(tmp_path_factory)
    workdir = tmp_path / "run"

    def argv(steps: int) -> list[str]:
        return ["--gin_file", "runs/train.gin", "--gin_file", "models/tiny.gin",
                f"--gin.DATASET_ROOT='{root}'", f"--gin.TRAIN_STEPS={steps}",
                "--gin.BATCH_SIZE=8", f"--gin.TARGET_LENGTH={data.TINY_TARGET_LENGTH}",
                "--gin.OPTIMIZER='adamw'", "--gin.LEARNING_RATE=1e-2",
                "--gin.KEEP_BEST=0", "--gin.EVAL_EVERY_STEPS=0",
                "--gin.mt3x.runs.EvalConfig.transcription=False",
                "--gin.mt3x.runs.EvalConfig.loss_batches=0",
                "--gin.mt3x.runs.ReportConfig.show_progress=False",
                "--gin.mt3x.runs.ReportConfig.tensorboard=False", "--workdir", str(workdir)]

    train_py = REPO / "launch" / "train.py"
    first = _train_process(train_py, tmp_path / "first.json", argv(2))
    cache_dir = workdir / WORKDIR_SUBDIR
    written = _entries(cache_dir)
    assert written and first["misses"] >= 1, first
    second = _train_process(train_py, tmp_path / "second.json", argv(4))  # resumes at step 2
    assert second["hits"] >= 1, second
    assert len(_entries(cache_dir)) == len(written), "the resume compiled something new"
    assert second["compile_s"] < 0.5 * first["compile_s"], (first, second)
    print(f"launch/train.py backend compile: first launch {first}, resume {second}")
    assert second["compile_s"] < 10.0, second

"""The persistent compilation cache: a second process loads what the first one compiled."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax

from mt3x.util import compilation_cache
from mt3x.util.compilation_cache import ENV_VAR, WORKDIR_SUBDIR, enable_compilation_cache

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

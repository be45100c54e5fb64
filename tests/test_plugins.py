"""`mt3x.plugins`: the registry through which separation adds its exporter and demo stage to
mt3x's tools, and the clear refusals when the package providing a capability is absent."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mt3x.cli import demo, export
from mt3x.errors import Mt3xError
from mt3x.plugins import (ENTRY_POINT_GROUP, KNOWN_BUNDLE_KINDS, KNOWN_DEMO_STAGES, DemoContext,
                          PluginError, Registry, installed_registry, load_registry)
from separation import plugin as separation_plugin
from separation.bundle_export import export_separator_bundle

REPO = Path(__file__).resolve().parents[1]


def _separator_dir(root: Path) -> Path:
    """A directory that looks like a separator run (its marker file; nothing else is read)."""
    run = root / "sep_run"
    run.mkdir()
    (run / "separator.json").write_text("{}")
    return run


def test_installed_separation_plugin_registers_its_capabilities():
    registry = installed_registry()
    assert registry.failed == {}
    exporter = registry.bundle_exporters["separator"]
    assert exporter.export is export_separator_bundle and exporter.provider == "separation"
    # the marker mt3x names when separation is absent is the one separation really writes
    assert {(k.name, k.marker) for k in KNOWN_BUNDLE_KINDS} == {("separator", exporter.marker)}
    stage = registry.demo_stages["separate"]
    assert stage.run is separation_plugin.run_demo_stage and stage.provider == "separation"
    assert [k.name for k in KNOWN_DEMO_STAGES] == list(registry.demo_stages)


def test_registry_refuses_duplicates_and_the_mt3_kind():
    registry = Registry()
    registry.register_plugin("one", separation_plugin.register)
    with pytest.raises(PluginError, match="plugin two: a bundle exporter for kind 'separator'"):
        registry.register_plugin("two", separation_plugin.register)
    with pytest.raises(PluginError, match="kind 'mt3' is already registered"):
        registry.add_bundle_exporter("mt3", "x.json", export_separator_bundle)
    with pytest.raises(PluginError, match="demo stage 'separate' is already registered"):
        registry.add_demo_stage("separate", "again", separation_plugin.run_demo_stage)
    assert registry.bundle_exporters["separator"].provider == "one"


def test_a_plugin_that_fails_to_load_is_reported_not_raised(tmp_path):
    broken = importlib.metadata.EntryPoint(name="separation", group=ENTRY_POINT_GROUP,
                                           value="mt3x_no_such_package.plugin:register")
    registry = load_registry([broken])
    assert registry.bundle_exporters == {} and registry.demo_stages == {}
    assert registry.failed["separation"].startswith("ModuleNotFoundError: ")
    with pytest.raises(PluginError, match=r"sep_run looks like a separator run \(it holds "
                                          r"separator.json\) but the separation plugin failed "
                                          r"to load \(ModuleNotFoundError"):
        registry.exporter_for(_separator_dir(tmp_path))


def test_export_without_separation_names_the_missing_package(tmp_path, capsys):
    run = _separator_dir(tmp_path)
    with pytest.raises(PluginError, match="looks like a separator run .* but the separation "
                                          "package is not installed"):
        export.detect_kind(run, Registry())
    args = export.build_parser().parse_args(["--checkpoint", str(run), "--out",
                                             str(tmp_path / "b")])
    with pytest.raises(PluginError, match="separation package is not installed"):
        export.export(args, Registry())
    (tmp_path / "empty").mkdir()
    with pytest.raises(Mt3xError, match=r"is not a checkpoint: it holds no separator.json"):
        export.detect_kind(tmp_path / "empty", Registry())
    assert not (tmp_path / "b").exists()


def test_demo_runs_plugin_stages_with_their_context(tmp_path, capsys):
    seen: list[DemoContext] = []
    registry = Registry()
    registry.register_plugin("probe", lambda r: r.add_demo_stage("probe", "records", seen.append))
    assert demo.main(["--stages", "probe", "--out", str(tmp_path), "--seed", "3"],
                     registry=registry) == 0
    assert seen == [DemoContext(out=tmp_path, data_root=tmp_path / "data", seed=3, steps=None)]
    # 'all' with separation absent: its stage is skipped with a note naming the package
    stages, notes = demo.plugin_stages(set(demo.STAGES), registry, everything=True)
    assert [s.name for s in stages] == ["probe"]
    assert notes == ["[demo] separate: skipped (the separation package is not installed)"]
    # naming it is an error (exit 2), an unknown stage a usage error
    assert demo.main(["--stages", "separate", "--out", str(tmp_path)], registry=registry) == 2
    assert ("error: demo stage 'separate' needs the separation package: the separation package "
            "is not installed") in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        demo.main(["--stages", "bogus", "--out", str(tmp_path)], registry=registry)
    assert exit_.value.code == 2 and "unknown stage(s) ['bogus']" in capsys.readouterr().err
    assert len(seen) == 1


SUBPROCESS = textwrap.dedent("""
    import importlib.abc, json, sys

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "separation" or name.startswith("separation."):
                raise ImportError("separation is blocked in this test")
            return None

    sys.meta_path.insert(0, Blocker())
    from mt3x.cli import demo, export
    run, out = sys.argv[1], sys.argv[2]
    codes = [export.main(["--checkpoint", run, "--out", out + "/bundle"]),
             demo.main(["--stages", "separate", "--out", out])]
    print("RESULT " + json.dumps(codes))
""")


def test_cli_tools_without_the_separation_package(tmp_path):
    """In a process that cannot import separation, mt3x-export and mt3x-demo refuse a separator
    run / the separate stage with exit 2 and one line naming the package (no traceback)."""
    run = _separator_dir(tmp_path)
    proc = subprocess.run([sys.executable, "-c", SUBPROCESS, str(run), str(tmp_path / "out")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.split("RESULT ", 1)[1]) == [2, 2]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: {run} looks like a separator run (it holds separator.json) but the separation "
        "plugin failed to load (ImportError: separation is blocked in this test)",
        "error: demo stage 'separate' needs the separation package: the separation plugin failed "
        "to load (ImportError: separation is blocked in this test)"]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_export_arguments_reach_the_registered_exporter(tmp_path):
    """A registered exporter gets the parsed arguments (platforms split, step, dtype)."""
    calls: list[dict] = []

    def record(checkpoint_dir, out, **kwargs):
        calls.append({"checkpoint_dir": checkpoint_dir, "out": out, **kwargs})
        return out

    registry = Registry()
    registry.add_bundle_exporter("probe", "probe.json", record)
    run = tmp_path / "probe_run"
    run.mkdir()
    (run / "probe.json").write_text("{}")
    args = export.build_parser().parse_args(["--checkpoint", str(run), "--out", "b", "--step",
                                             "7", "--platforms", "cpu, tpu", "--dtype",
                                             "bfloat16"])
    assert export.export(args, registry) == Path("b")
    assert calls == [{"checkpoint_dir": run, "out": Path("b"), "dtype": "bfloat16", "step": 7,
                      "platforms": ("cpu", "tpu"), "overwrite": False}]
    args = argparse.Namespace(**{**vars(args), "vocab": "mt3"})
    with pytest.raises(Mt3xError, match="--vocab apply to MT3 checkpoints only"):
        export.export(args, registry)

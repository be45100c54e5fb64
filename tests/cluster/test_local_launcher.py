"""mt3x.cluster.local: the processes of one local JAX job (checked against the
environment JAX reads), launch/local_multiprocess.py's --dry-run, and the supervisor running
real processes (output prefixes, logs, stopping the others on a failure)."""

from __future__ import annotations

import json
import sys
import textwrap
import time
from pathlib import Path

import pytest

from launch_helpers import LAUNCH, run
from mt3x.cluster import common, local


def test_local_specs_give_every_process_the_same_coordinator_and_its_own_id():
    specs = local.local_process_specs(["launch/train.py", "--workdir", "runs/x"], num_processes=3,
                                      port=4321, devices_per_process=4, python="py",
                                      base_env={"XLA_FLAGS": "--xla_dump_to=/d "
                                                "--xla_force_host_platform_device_count=8"},
                                      extra_env={"A": "1"}, log_dir="logs/t")
    assert [s.env["JAX_PROCESS_ID"] for s in specs] == ["0", "1", "2"]
    for spec in specs:
        assert spec.argv == ["py", "launch/train.py", "--workdir", "runs/x"]
        assert spec.env["JAX_COORDINATOR_ADDRESS"] == "127.0.0.1:4321"
        assert spec.env["JAX_NUM_PROCESSES"] == "3"
        assert spec.env["JAX_PLATFORMS"] == "cpu"
        assert spec.env["JAX_CPU_COLLECTIVES_IMPLEMENTATION"] == "gloo"
        assert spec.env["JAX_NUM_CPU_DEVICES"] == "4"
        # the inherited device count is replaced, other XLA flags kept
        assert spec.env["XLA_FLAGS"] == ("--xla_dump_to=/d "
                                         "--xla_force_host_platform_device_count=4")
        assert spec.env["A"] == "1"
    assert specs[2].log_path == Path("logs/t/process_2.log")
    text = local.describe_local(specs, 4)
    assert "3 processes" in text and "12 in total" in text and "127.0.0.1:4321" in text
    assert text.count("JAX_PROCESS_ID=") == 3
    # the environment names jax.config options: JAX reads them at import
    import jax

    for name in ("JAX_PLATFORMS", "JAX_CPU_COLLECTIVES_IMPLEMENTATION", "JAX_NUM_CPU_DEVICES"):
        assert hasattr(jax.config, name.lower()), name


def test_local_specs_refuse_what_cannot_work():
    with pytest.raises(common.LaunchError, match="--num_processes"):
        local.local_process_specs(["x.py"], num_processes=0, port=1)
    with pytest.raises(common.LaunchError, match="--port"):
        local.local_process_specs(["x.py"], num_processes=2, port=70000)
    with pytest.raises(common.LaunchError, match="after `--`"):
        local.local_process_specs([], num_processes=2, port=1234)
    with pytest.raises(common.LaunchError, match="--platform cpu"):
        local.local_process_specs(["x.py"], num_processes=2, port=1234, devices_per_process=2,
                                  platform="")
    with pytest.raises(common.LaunchError, match="KEY=VALUE"):
        common.parse_env_assignments(["NOEQUALS"])
    assert common.command_argv(["--", "mt3x-demo", "-h"]) == ["mt3x-demo", "-h"]


def test_local_dry_run_prints_the_processes_and_starts_none(tmp_path):
    result = run([sys.executable, str(LAUNCH / "local_multiprocess.py"), "--num_processes", "2",
                   "--devices_per_process", "4", "--port", "5555", "--log_dir",
                   str(tmp_path / "logs"), "--dry-run", "--", "launch/train.py", "--workdir",
                   "runs/x"])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "2 processes" in lines[0] and "127.0.0.1:5555" in lines[0] and "8 in total" in lines[0]
    for i in (0, 1):
        line = lines[1 + i]
        assert f"JAX_PROCESS_ID={i} " in line and "JAX_NUM_PROCESSES=2 " in line
        assert "JAX_COORDINATOR_ADDRESS=127.0.0.1:5555 " in line
        assert "JAX_NUM_CPU_DEVICES=4 " in line
        assert line.endswith(f"launch/train.py --workdir runs/x > {tmp_path}/logs/process_{i}.log"
                             " 2>&1 &")
    assert not (tmp_path / "logs").exists()
    bad = run([sys.executable, str(LAUNCH / "local_multiprocess.py"), "--num_processes", "2",
                "--port", "x", "--", "a.py"])
    assert bad.returncode == 2 and "error: --port" in bad.stderr


def test_local_launcher_prefixes_output_writes_logs_and_passes_the_env(tmp_path, show_env):
    result = run([sys.executable, str(LAUNCH / "local_multiprocess.py"), "--num_processes", "2",
                   "--devices_per_process", "3", "--port", "6006", "--log_dir",
                   str(tmp_path / "logs"), "--", str(show_env)])
    assert result.returncode == 0, result.stdout + result.stderr
    for i in (0, 1):
        line = next(x for x in result.stdout.splitlines() if x.startswith(f"[p{i}] {{"))
        seen = json.loads(line[len(f"[p{i}] "):])
        assert seen["JAX_PROCESS_ID"] == str(i) and seen["JAX_NUM_PROCESSES"] == "2"
        assert seen["JAX_COORDINATOR_ADDRESS"] == "127.0.0.1:6006"
        assert seen["JAX_NUM_CPU_DEVICES"] == "3"
        assert json.loads((tmp_path / "logs" / f"process_{i}.log").read_text()) == seen


FAILING = textwrap.dedent("""
    import os, sys, time
    if os.environ["JAX_PROCESS_ID"] == "1":
        print("process 1 fails", flush=True)
        sys.exit(3)
    print("process 0 waits", flush=True)
    time.sleep(60)
    print("process 0 was not stopped", flush=True)
""")


def test_local_launcher_stops_the_others_and_returns_the_first_failure(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text(FAILING)
    specs = local.local_process_specs([str(script)], num_processes=2, port=common.free_port(),
                                      log_dir=tmp_path / "logs")
    with open(tmp_path / "out.txt", "w") as out:
        start = time.monotonic()
        code = local.run_processes(specs, out=out, grace_seconds=5)
        elapsed = time.monotonic() - start
    assert code == 3 and elapsed < 30
    text = (tmp_path / "out.txt").read_text()
    assert "[p1] process 1 fails" in text and "[p0] process 0 waits" in text
    assert "not stopped" not in text and "exited with code 3" in text
    assert (tmp_path / "logs" / "process_1.log").read_text() == "process 1 fails\n"

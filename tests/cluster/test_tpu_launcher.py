"""mt3x.cluster.tpu_pod: accelerator topologies, the worker script executed against a stand-in
metadata server (checked against jax's GceTpuCluster), the gcloud plan and launch/tpu_pod.py's
--dry-run."""

from __future__ import annotations

import json
import os
import sys

import pytest

from launch_helpers import LAUNCH, SHOW_ENV, executable, run
from mt3x.cluster import common, tpu_pod


@pytest.mark.parametrize("accelerator, hosts, devices, runtime", [
    ("v4-8", 1, 4, "tpu-ubuntu2204-base"),
    ("v4-32", 4, 16, "tpu-ubuntu2204-base"),
    ("v3-32", 4, 32, "tpu-ubuntu2204-base"),   # v2/v3: every TensorCore is a device
    ("v5p-128", 16, 64, "v2-alpha-tpuv5"),
    ("v5litepod-8", 1, 8, "v2-alpha-tpuv5-lite"),
    ("v5litepod-16", 4, 16, "v2-alpha-tpuv5-lite"),
    ("v6e-256", 64, 256, "v2-alpha-tpuv6e"),
])
def test_tpu_topology(accelerator, hosts, devices, runtime):
    topo = tpu_pod.tpu_topology(accelerator)
    assert (topo.hosts, topo.devices, topo.runtime_version) == (hosts, devices, runtime)


def test_tpu_topology_and_job_refuse_unknown_names():
    for bad in ("v4", "v9-8", "v4-7", "tpu-32"):
        with pytest.raises(common.LaunchError, match="--accelerator_type"):
            tpu_pod.tpu_topology(bad)
    with pytest.raises(common.LaunchError, match="--name"):
        tpu_pod.TpuPodJob(name="Bad_Name", zone="z", accelerator_type="v4-8")


FAKE_CURL = """#!/bin/sh
# curl stand-in for the TPU VM metadata server: the last argument is the URL.
for last; do :; done
case "$last" in
  */agent-worker-number) echo 2 ;;
  */worker-network-endpoints) echo "$ENDPOINTS_FIXTURE" ;;
  *) exit 22 ;;
esac
"""


@pytest.mark.parametrize("endpoints, coordinator_host", [
    ("t1v-n-1-w-0:0:10.0.0.5,t1v-n-1-w-1:1:10.0.0.6,t1v-n-1-w-2:2:10.0.0.7,"
     "t1v-n-1-w-3:3:10.0.0.8", "10.0.0.5"),                 # old name:id:ip format
    ("w-0.internal,w-1.internal,w-2.internal,w-3.internal", "w-0.internal"),  # host names
])
def test_tpu_worker_script_reads_the_process_env_from_metadata_like_jax(
        tmp_path, monkeypatch, endpoints, coordinator_host):
    from jax._src.clusters import cloud_tpu_cluster

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    executable(bin_dir / "curl", FAKE_CURL)
    checkout = tmp_path / "checkout"
    (checkout / ".venv" / "bin").mkdir(parents=True)
    (checkout / ".venv" / "bin" / "python").symlink_to(sys.executable)
    job = tpu_pod.TpuPodJob(name="pod", zone="z", accelerator_type="v4-32",
                            remote_dir=str(checkout), env={"JAX_TRACEBACK_FILTERING": "off"})
    (checkout / "show_env.py").write_text(SHOW_ENV)
    script = tpu_pod.tpu_worker_script(job, ["show_env.py"])
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
               HOME=str(tmp_path), ENDPOINTS_FIXTURE=endpoints)
    result = run(["bash", "-c", script], env=env)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["JAX_PROCESS_ID"] == "2" and seen["JAX_NUM_PROCESSES"] == "4"
    assert seen["JAX_COORDINATOR_ADDRESS"] == f"{coordinator_host}:8476"
    assert seen["JAX_TRACEBACK_FILTERING"] == "off"             # --env reaches every worker
    log = tmp_path / "mt3x-logs" / "pod-worker2.log"
    assert json.loads(log.read_text()) == seen
    # jax's own GceTpuCluster reading the same metadata picks the same coordinator and count
    monkeypatch.setattr(cloud_tpu_cluster, "get_metadata",
                        lambda key: ({"worker-network-endpoints": endpoints,
                                      "agent-worker-number": "2"}[key], 200))
    workers = cloud_tpu_cluster.GceTpuCluster._get_worker_list_in_slice()
    assert workers[0] == coordinator_host and len(workers) == 4
    assert cloud_tpu_cluster.GceTpuCluster._get_process_id_in_slice() == 2


def test_tpu_plan_creates_copies_installs_runs_and_collects_on_every_worker():
    job = tpu_pod.TpuPodJob(name="mt3-pod", zone="us-central2-b", accelerator_type="v4-32",
                            project="proj", spot=True)
    plan = tpu_pod.tpu_plan(job, ["launch/train.py", "--workdir", "/mnt/runs/a"], create=True,
                            repo="/src")
    commands = [step.argv for step in plan]
    assert commands[0][:6] == ["gcloud", "compute", "tpus", "tpu-vm", "create", "mt3-pod"]
    assert {"--accelerator-type=v4-32", "--version=tpu-ubuntu2204-base", "--spot",
            "--zone=us-central2-b", "--project=proj"} <= set(commands[0])
    assert commands[1] == ["git", "-C", "/src", "archive", "--format=tar.gz", "-o",
                           "/tmp/mt3x-src.tar.gz", "HEAD"]
    remote = [c for c in commands if c[0] == "gcloud" and c[4] in ("ssh", "scp")]
    assert len(remote) == 5 and all("--worker=all" in c for c in remote)
    run = next(c for c in commands if any("launch/train.py" in a for a in c))
    script = next(a for a in run if a.startswith("--command="))
    assert ".venv/bin/python launch/train.py --workdir /mnt/runs/a" in script
    assert "4 worker(s) (16 devices" in plan[-2].title
    assert commands[-1][4] == "scp" and commands[-1][5] == "mt3-pod:~/mt3x-logs/mt3-pod-worker*.log"
    cloned = tpu_pod.tpu_plan(job, ["launch/train.py"], steps=["copy"],
                              git_url="https://example.org/mt3x.git")
    assert len(cloned) == 1 and "git clone https://example.org/mt3x.git mt3x" in \
        next(a for a in cloned[0].argv if a.startswith("--command="))
    with pytest.raises(common.LaunchError, match="--steps"):
        tpu_pod.tpu_plan(job, ["x"], steps=["deploy"])


def test_tpu_dry_run_prints_the_gcloud_commands():
    result = run([sys.executable, str(LAUNCH / "tpu_pod.py"), "--name", "pod", "--zone",
                   "europe-west4-a", "--accelerator_type", "v5litepod-16", "--create",
                   "--dry-run", "--", "launch/train.py", "--workdir", "/mnt/runs/x"])
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "# 1. create pod: v5litepod-16, 4 worker(s)" in out
    assert "--accelerator-type=v5litepod-16 --version=v2-alpha-tpuv5-lite" in out
    assert "run on all 4 worker(s) (16 devices; worker 0 coordinates on port 8476)" in out
    assert out.count("--worker=all") == 5
    bad = run([sys.executable, str(LAUNCH / "tpu_pod.py"), "--name", "pod", "--zone", "z",
                "--accelerator_type", "v4-33", "--dry-run", "--", "a.py"])
    assert bad.returncode == 2 and "error: --accelerator_type" in bad.stderr

"""mt3x.cluster.slurm: host lists and the coordinator checked against jax's SlurmCluster, the
generated sbatch script executed with stand-ins for srun/scontrol, and launch/slurm.py's
--dry-run."""

from __future__ import annotations

import json
import os
import re
import sys

import pytest

from launch_helpers import LAUNCH, REPO, executable, run
from mt3x.cluster import common, slurm


@pytest.mark.parametrize("nodelist, hosts", [
    ("node001", ["node001"]),
    ("node001,host2", ["node001", "host2"]),
    ("node[001-003],host2", ["node001", "node002", "node003", "host2"]),
    ("gpu[07,09-10]", ["gpu07", "gpu09", "gpu10"]),
    ("a[8-10]-ib,b1", ["a8-ib", "a9-ib", "a10-ib", "b1"]),
])
def test_nodelist_expansion_and_coordinator_agree_with_jax_slurm_detection(
        nodelist, hosts, monkeypatch):
    from jax._src.clusters.slurm_cluster import SlurmCluster

    assert slurm.expand_nodelist(nodelist) == hosts
    env = {"SLURM_JOB_ID": "123456", "SLURM_JOB_NODELIST": nodelist,
           "SLURM_STEP_NODELIST": nodelist, "SLURM_NTASKS": "16", "SLURM_PROCID": "3",
           "SLURM_LOCALID": "3"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert SlurmCluster.is_env_present()
    if "-ib" not in nodelist:  # jax drops a suffix after the brackets; scontrol keeps it
        expected = SlurmCluster.get_coordinator_address(None, None)
        assert slurm.slurm_coordinator(env) == expected
    assert slurm.slurm_coordinator(env) == f"{hosts[0]}:{61440 + 123456 % 4096}"


def test_slurm_job_validates_and_counts_processes():
    per_gpu = slurm.SlurmJob(nodes=4, gpus_per_node=8, partition="p", time="1-00:00:00")
    per_node = slurm.SlurmJob(nodes=4, gpus_per_node=8, partition="p", time="2:00:00",
                              one_process_per="node")
    assert (per_gpu.num_processes, per_gpu.tasks_per_node, per_gpu.devices_per_process) == \
        (32, 8, 1)
    assert (per_node.num_processes, per_node.tasks_per_node, per_node.devices_per_process) == \
        (4, 1, 8)
    for kwargs, flag in [(dict(time="tomorrow"), "--time"), (dict(nodes=0), "--nodes"),
                         (dict(one_process_per="core"), "--one_process_per")]:
        args = dict(nodes=1, gpus_per_node=1, partition="p", time="1:00:00") | kwargs
        with pytest.raises(common.LaunchError, match=flag):
            slurm.SlurmJob(**args)


FAKE_SRUN = """#!{python}
# srun stand-in: starts --nodes x --ntasks-per-node copies of the command after the options,
# one after another, with the SLURM task variables set.
import os, subprocess, sys
args = sys.argv[1:]
opts = {{}}
while args and args[0].startswith("--"):
    key, _, value = args.pop(0)[2:].partition("=")
    opts[key] = value
nodes, per_node = int(opts["nodes"]), int(opts["ntasks-per-node"])
code = 0
for node in range(nodes):
    for local in range(per_node):
        env = dict(os.environ, SLURM_PROCID=str(node * per_node + local),
                   SLURM_LOCALID=str(local), SLURM_NODEID=str(node),
                   SLURM_NTASKS=str(nodes * per_node))
        code = code or subprocess.call(args, env=env)
sys.exit(code)
"""


@pytest.mark.parametrize("per, tasks, local_ids", [
    ("gpu", 8, [str(i) for i in range(4)] * 2),
    ("node", 2, ["0,1,2,3"] * 2),
])
def test_slurm_script_gives_each_task_its_process_id_devices_and_the_coordinator(
        tmp_path, show_env, per, tasks, local_ids):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    executable(bin_dir / "srun", FAKE_SRUN.format(python=sys.executable))
    executable(bin_dir / "scontrol", "#!/bin/sh\nprintf 'gpu07\\ngpu08\\n'\n")
    job = slurm.SlurmJob(nodes=2, gpus_per_node=4, partition="p", time="1:00:00",
                         one_process_per=per, env={"NCCL_DEBUG": "WARN"})
    script = slurm.slurm_script(job, [show_env.name], repo=tmp_path, python=sys.executable)
    assert f"#SBATCH --ntasks-per-node={job.tasks_per_node}" in script
    assert "#SBATCH --nodes=2" in script and "#SBATCH --gres=gpu:4" in script
    (tmp_path / "job.sh").write_text(script)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
               SLURM_JOB_ID="777", SLURM_JOB_NODELIST="gpu[07-08]")
    result = run(["bash", str(tmp_path / "job.sh")], env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].endswith(f"{tasks} processes, coordinator gpu07:{61440 + 777}")
    seen = [json.loads(line) for line in lines[1:]]
    assert len(seen) == tasks
    assert [s["JAX_PROCESS_ID"] for s in seen] == [str(i) for i in range(tasks)]
    assert [s["JAX_LOCAL_DEVICE_IDS"] for s in seen] == local_ids
    assert {s["JAX_NUM_PROCESSES"] for s in seen} == {str(tasks)}
    coordinator = slurm.slurm_coordinator({"SLURM_JOB_ID": "777",
                                           "SLURM_JOB_NODELIST": "gpu[07-08]"})
    assert {s["JAX_COORDINATOR_ADDRESS"] for s in seen} == {coordinator}


def test_slurm_dry_run_prints_the_script_and_the_sbatch_command(tmp_path):
    script_path = tmp_path / "job.sbatch"
    result = run([sys.executable, str(LAUNCH / "slurm.py"), "--nodes", "2", "--gpus_per_node",
                   "8", "--partition", "gpu", "--time", "24:00:00", "--account", "acc",
                   "--one_process_per", "node", "--script", str(script_path), "--dry-run",
                   "--", "launch/train.py", "--gin.BATCH_SIZE=64"])
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1", "#SBATCH --gres=gpu:8",
                 "#SBATCH --partition=gpu", "#SBATCH --time=24:00:00",
                 "#SBATCH --account=acc", "export JAX_NUM_PROCESSES=2",
                 f"cd {REPO}", f"sbatch {script_path}"):
        assert line in out.splitlines(), line
    assert "JAX_LOCAL_DEVICE_IDS=0,1,2,3,4,5,6,7" in out
    assert out.rstrip().endswith(f"sbatch {script_path}")
    assert re.search(r"launch/train\.py --gin\.BATCH_SIZE=64$", out, re.M)
    assert not script_path.exists()
    bad = run([sys.executable, str(LAUNCH / "slurm.py"), "--nodes", "2", "--gpus_per_node",
                "8", "--partition", "gpu", "--time", "soon", "--dry-run", "--", "a.py"])
    assert bad.returncode == 2 and "error: --time" in bad.stderr

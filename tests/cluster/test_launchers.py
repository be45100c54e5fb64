"""The launchers: what each writes (hosts, devices, process counts, coordinator) checked against
JAX's own cluster detection; the generated SLURM and TPU scripts executed with stand-ins for
srun/scontrol and the TPU metadata server; each launch/ script's --dry-run; the local launcher
supervising real processes; and (multiprocess, slow) two processes training MT3, checkpointing
and resuming through launch/local_multiprocess.py + launch/train.py."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mt3x.cluster import launchers as L

REPO = Path(__file__).resolve().parents[2]
LAUNCH = REPO / "launch"
# A script that reports what a launched process sees.
SHOW_ENV = ("import json, os\nprint(json.dumps({k: v for k, v in os.environ.items() "
            "if k.startswith(('JAX_', 'XLA_FLAGS', 'CUDA_VISIBLE'))}))\n")


@pytest.fixture
def show_env(tmp_path) -> Path:
    path = tmp_path / "show_env.py"
    path.write_text(SHOW_ENV)
    return path


def _run(argv, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=REPO, **kwargs)


def _executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


# ---- pure functions ------------------------------------------------------------------------------
def test_local_specs_give_every_process_the_same_coordinator_and_its_own_id():
    specs = L.local_process_specs(["launch/train.py", "--workdir", "runs/x"], num_processes=3,
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
    text = L.describe_local(specs, 4)
    assert "3 processes" in text and "12 in total" in text and "127.0.0.1:4321" in text
    assert text.count("JAX_PROCESS_ID=") == 3
    # the environment names jax.config options: JAX reads them at import
    import jax

    for name in ("JAX_PLATFORMS", "JAX_CPU_COLLECTIVES_IMPLEMENTATION", "JAX_NUM_CPU_DEVICES"):
        assert hasattr(jax.config, name.lower()), name


def test_local_specs_refuse_what_cannot_work():
    with pytest.raises(L.LaunchError, match="--num_processes"):
        L.local_process_specs(["x.py"], num_processes=0, port=1)
    with pytest.raises(L.LaunchError, match="--port"):
        L.local_process_specs(["x.py"], num_processes=2, port=70000)
    with pytest.raises(L.LaunchError, match="after `--`"):
        L.local_process_specs([], num_processes=2, port=1234)
    with pytest.raises(L.LaunchError, match="--platform cpu"):
        L.local_process_specs(["x.py"], num_processes=2, port=1234, devices_per_process=2,
                              platform="")
    with pytest.raises(L.LaunchError, match="KEY=VALUE"):
        L.parse_env_assignments(["NOEQUALS"])
    assert L.command_argv(["--", "mt3x-demo", "-h"]) == ["mt3x-demo", "-h"]


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

    assert L.expand_nodelist(nodelist) == hosts
    env = {"SLURM_JOB_ID": "123456", "SLURM_JOB_NODELIST": nodelist,
           "SLURM_STEP_NODELIST": nodelist, "SLURM_NTASKS": "16", "SLURM_PROCID": "3",
           "SLURM_LOCALID": "3"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert SlurmCluster.is_env_present()
    if "-ib" not in nodelist:  # jax drops a suffix after the brackets; scontrol keeps it
        expected = SlurmCluster.get_coordinator_address(None, None)
        assert L.slurm_coordinator(env) == expected
    assert L.slurm_coordinator(env) == f"{hosts[0]}:{61440 + 123456 % 4096}"


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
    topo = L.tpu_topology(accelerator)
    assert (topo.hosts, topo.devices, topo.runtime_version) == (hosts, devices, runtime)


def test_tpu_topology_and_job_refuse_unknown_names():
    for bad in ("v4", "v9-8", "v4-7", "tpu-32"):
        with pytest.raises(L.LaunchError, match="--accelerator_type"):
            L.tpu_topology(bad)
    with pytest.raises(L.LaunchError, match="--name"):
        L.TpuPodJob(name="Bad_Name", zone="z", accelerator_type="v4-8")


def test_slurm_job_validates_and_counts_processes():
    per_gpu = L.SlurmJob(nodes=4, gpus_per_node=8, partition="p", time="1-00:00:00")
    per_node = L.SlurmJob(nodes=4, gpus_per_node=8, partition="p", time="2:00:00",
                          one_process_per="node")
    assert (per_gpu.num_processes, per_gpu.tasks_per_node, per_gpu.devices_per_process) == \
        (32, 8, 1)
    assert (per_node.num_processes, per_node.tasks_per_node, per_node.devices_per_process) == \
        (4, 1, 8)
    for kwargs, flag in [(dict(time="tomorrow"), "--time"), (dict(nodes=0), "--nodes"),
                         (dict(one_process_per="core"), "--one_process_per")]:
        args = dict(nodes=1, gpus_per_node=1, partition="p", time="1:00:00") | kwargs
        with pytest.raises(L.LaunchError, match=flag):
            L.SlurmJob(**args)


# ---- the generated scripts, run against stand-ins for the cluster ------------------------------
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
    _executable(bin_dir / "srun", FAKE_SRUN.format(python=sys.executable))
    _executable(bin_dir / "scontrol", "#!/bin/sh\nprintf 'gpu07\\ngpu08\\n'\n")
    job = L.SlurmJob(nodes=2, gpus_per_node=4, partition="p", time="1:00:00",
                     one_process_per=per, env={"NCCL_DEBUG": "WARN"})
    script = L.slurm_script(job, [show_env.name], repo=tmp_path, python=sys.executable)
    assert f"#SBATCH --ntasks-per-node={job.tasks_per_node}" in script
    assert "#SBATCH --nodes=2" in script and "#SBATCH --gres=gpu:4" in script
    (tmp_path / "job.sh").write_text(script)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
               SLURM_JOB_ID="777", SLURM_JOB_NODELIST="gpu[07-08]")
    result = _run(["bash", str(tmp_path / "job.sh")], env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].endswith(f"{tasks} processes, coordinator gpu07:{61440 + 777}")
    seen = [json.loads(line) for line in lines[1:]]
    assert len(seen) == tasks
    assert [s["JAX_PROCESS_ID"] for s in seen] == [str(i) for i in range(tasks)]
    assert [s["JAX_LOCAL_DEVICE_IDS"] for s in seen] == local_ids
    assert {s["JAX_NUM_PROCESSES"] for s in seen} == {str(tasks)}
    coordinator = L.slurm_coordinator({"SLURM_JOB_ID": "777",
                                       "SLURM_JOB_NODELIST": "gpu[07-08]"})
    assert {s["JAX_COORDINATOR_ADDRESS"] for s in seen} == {coordinator}


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
    _executable(bin_dir / "curl", FAKE_CURL)
    checkout = tmp_path / "checkout"
    (checkout / ".venv" / "bin").mkdir(parents=True)
    (checkout / ".venv" / "bin" / "python").symlink_to(sys.executable)
    job = L.TpuPodJob(name="pod", zone="z", accelerator_type="v4-32",
                      remote_dir=str(checkout), env={"JAX_TRACEBACK_FILTERING": "off"})
    (checkout / "show_env.py").write_text(SHOW_ENV)
    script = L.tpu_worker_script(job, ["show_env.py"])
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
               HOME=str(tmp_path), ENDPOINTS_FIXTURE=endpoints)
    result = _run(["bash", "-c", script], env=env)
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
    job = L.TpuPodJob(name="mt3-pod", zone="us-central2-b", accelerator_type="v4-32",
                      project="proj", spot=True)
    plan = L.tpu_plan(job, ["launch/train.py", "--workdir", "/mnt/runs/a"], create=True,
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
    cloned = L.tpu_plan(job, ["launch/train.py"], steps=["copy"],
                        git_url="https://example.org/mt3x.git")
    assert len(cloned) == 1 and "git clone https://example.org/mt3x.git mt3x" in \
        next(a for a in cloned[0].argv if a.startswith("--command="))
    with pytest.raises(L.LaunchError, match="--steps"):
        L.tpu_plan(job, ["x"], steps=["deploy"])


# ---- the launch/ scripts' dry runs --------------------------------------------------------------
def test_local_dry_run_prints_the_processes_and_starts_none(tmp_path):
    result = _run([sys.executable, str(LAUNCH / "local_multiprocess.py"), "--num_processes", "2",
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
    bad = _run([sys.executable, str(LAUNCH / "local_multiprocess.py"), "--num_processes", "2",
                "--port", "x", "--", "a.py"])
    assert bad.returncode == 2 and "error: --port" in bad.stderr


def test_slurm_dry_run_prints_the_script_and_the_sbatch_command(tmp_path):
    script_path = tmp_path / "job.sbatch"
    result = _run([sys.executable, str(LAUNCH / "slurm.py"), "--nodes", "2", "--gpus_per_node",
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
    bad = _run([sys.executable, str(LAUNCH / "slurm.py"), "--nodes", "2", "--gpus_per_node",
                "8", "--partition", "gpu", "--time", "soon", "--dry-run", "--", "a.py"])
    assert bad.returncode == 2 and "error: --time" in bad.stderr


def test_tpu_dry_run_prints_the_gcloud_commands():
    result = _run([sys.executable, str(LAUNCH / "tpu_pod.py"), "--name", "pod", "--zone",
                   "europe-west4-a", "--accelerator_type", "v5litepod-16", "--create",
                   "--dry-run", "--", "launch/train.py", "--workdir", "/mnt/runs/x"])
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "# 1. create pod: v5litepod-16, 4 worker(s)" in out
    assert "--accelerator-type=v5litepod-16 --version=v2-alpha-tpuv5-lite" in out
    assert "run on all 4 worker(s) (16 devices; worker 0 coordinates on port 8476)" in out
    assert out.count("--worker=all") == 5
    bad = _run([sys.executable, str(LAUNCH / "tpu_pod.py"), "--name", "pod", "--zone", "z",
                "--accelerator_type", "v4-33", "--dry-run", "--", "a.py"])
    assert bad.returncode == 2 and "error: --accelerator_type" in bad.stderr


# ---- the local launcher supervising real processes ---------------------------------------------
def test_local_launcher_prefixes_output_writes_logs_and_passes_the_env(tmp_path, show_env):
    result = _run([sys.executable, str(LAUNCH / "local_multiprocess.py"), "--num_processes", "2",
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
    specs = L.local_process_specs([str(script)], num_processes=2, port=L.free_port(),
                                  log_dir=tmp_path / "logs")
    with open(tmp_path / "out.txt", "w") as out:
        import time

        start = time.monotonic()
        code = L.run_processes(specs, out=out, grace_seconds=5)
        elapsed = time.monotonic() - start
    assert code == 3 and elapsed < 30
    text = (tmp_path / "out.txt").read_text()
    assert "[p1] process 1 fails" in text and "[p0] process 0 waits" in text
    assert "not stopped" not in text and "exited with code 3" in text
    assert (tmp_path / "logs" / "process_1.log").read_text() == "process 1 fails\n"


# ---- two processes train MT3, checkpoint and resume ---------------------------------------------
TINY_BINDINGS = [
    "--gin_file", "experiments/demo_cpu.gin", "--gin_file", "models/tiny.gin",
    "--gin.TARGET_LENGTH=192", "--gin.MAX_DECODE_LENGTH=48", "--gin.KEEP_BEST=0",
    "--gin.EVAL_EVERY_STEPS=0", "--gin.SAVE_EVERY_STEPS=2", "--gin.WARMUP_STEPS=0",
    "--gin.LEARNING_RATE=1e-2", "--gin.mt3x.train_mt3.transcription_eval=False",
    "--gin.mt3x.train_mt3.eval_loss_batches=0", "--gin.mt3x.train_mt3.show_progress=False",
    "--gin.mt3x.train_mt3.tensorboard=False", "--gin.mt3x.train_mt3.log_every_steps=1"]


def _losses_by_process(stdout: str) -> dict[str, dict[int, float]]:
    """{'p0': {step: loss}, 'p1': ...} from the trainer's '[train] step N: ... loss=X' lines."""
    found: dict[str, dict[int, float]] = {}
    for proc, step, loss in re.findall(r"^\[(p\d)\] .*\[train\] step (\d+):.* loss=([-\d.e]+)",
                                       stdout, re.M):
        found.setdefault(proc, {})[int(step)] = float(loss)
    return found


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_processes_train_mt3_checkpoint_and_a_second_launch_resumes(tmp_path_factory):
    from tests import mt3_testdata as data
    from mt3x.trainer import Checkpointer

    dataset = data.tiny_dataset(tmp_path_factory)      # 2 train tracks: one per process
    root = tmp_path_factory.mktemp("launch_mp")
    workdir = root / "run"

    def launch(steps: int, logs: str) -> subprocess.CompletedProcess:
        argv = [sys.executable, str(LAUNCH / "local_multiprocess.py"), "--num_processes", "2",
                "--devices_per_process", "4", "--log_dir", str(root / logs), "--",
                "launch/train.py", *TINY_BINDINGS, f"--gin.DATASET_ROOT='{dataset}'",
                f"--gin.TRAIN_STEPS={steps}", "--workdir", str(workdir)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=REPO)

    first = launch(4, "logs1")
    assert first.returncode == 0, first.stdout[-6000:]
    losses = _losses_by_process(first.stdout)
    assert sorted(losses) == ["p0", "p1"] and sorted(losses["p0"]) == [1, 2, 3, 4]
    assert losses["p0"] == losses["p1"]                # one global loss, seen by both
    for i in (0, 1):
        assert f"trained to step 4 in {workdir}" in (root / "logs1" / f"process_{i}.log"
                                                     ).read_text()
    checkpoints = Checkpointer(workdir / "checkpoints", read_only=True)
    assert checkpoints.all_steps() == [4]
    checkpoints.close()

    second = launch(6, "logs2")
    assert second.returncode == 0, second.stdout[-6000:]
    resumed = _losses_by_process(second.stdout)
    assert sorted(resumed["p0"]) == [5, 6] and resumed["p0"] == resumed["p1"]
    checkpoints = Checkpointer(workdir / "checkpoints", read_only=True)
    assert checkpoints.latest_step() == 6
    data_state, meta = checkpoints.read_data_and_meta()
    checkpoints.close()
    assert data_state["consumed"] == 6                 # each host's stream continued
    history = dict(zip(meta["loss_history"]["steps"], meta["loss_history"]["losses"]))
    assert sorted(history) == [1, 2, 3, 4, 5, 6]
    for step, loss in {**losses["p0"], **resumed["p0"]}.items():
        assert history[step] == pytest.approx(loss, rel=1e-5)
    assert history[6] < history[1]

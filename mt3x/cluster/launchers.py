"""What the launchers in launch/ do, as plain data: command lines, environments and scripts for
N local processes, a SLURM GPU job and a Cloud TPU VM pod, plus the local process supervisor.

Every target ends the same way: each JAX process runs the user's command (usually
`launch/train.py ...`) with `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID` (and
`JAX_LOCAL_DEVICE_IDS` on GPUs) in its environment. launch/common.py reads the first three as the
defaults of --coordinator_address / --num_processes / --process_id and calls
`jax.distributed.initialize`, which itself reads `JAX_LOCAL_DEVICE_IDS`. Nothing else in the
command changes, so the printed commands are the commands you would type by hand.

    >>> specs = local_process_specs(['launch/train.py', '--workdir', 'runs/x'],
    ...                             num_processes=2, port=4321, devices_per_process=4)
    >>> specs[1].env['JAX_PROCESS_ID'], specs[1].env['JAX_COORDINATOR_ADDRESS']
    ('1', '127.0.0.1:4321')
    >>> script = slurm_script(SlurmJob(nodes=2, gpus_per_node=8, partition='gpu',
    ...                                time='24:00:00'), ['launch/train.py'], repo='/repo')
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Mapping, Sequence, TextIO

from mt3x.errors import Mt3xError

DEFAULT_TPU_PORT = 8476            # jax's default coordinator port on Cloud TPU
SLURM_PORT_BASE = 65535 - 2**12 + 1  # jax's SlurmCluster: 61440 + SLURM_JOB_ID % 4096
_DEVICE_COUNT_FLAG = re.compile(r"--xla_force_host_platform_device_count=\S*")


class LaunchError(Mt3xError):
    """A launcher argument that cannot work (names the flag and what was expected)."""


# ---- shared -------------------------------------------------------------------------------------
def command_argv(command: Sequence[str], python: str = sys.executable) -> list[str]:
    """The argv of a user command: a leading `*.py` script is run with `python`.

    Raises LaunchError when the command is empty (the launchers take it after `--`).
    """
    command = list(command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise LaunchError("no command given; put it after `--`, e.g. "
                          "`-- launch/train.py --gin_file=experiments/demo_cpu.gin ...`")
    if command[0].endswith(".py"):
        return [python, *command]
    return command


def split_command(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """`[launcher flags...] -- COMMAND...` -> (launcher flags, command); no `--`: no command."""
    argv = list(argv)
    split = argv.index("--") if "--" in argv else len(argv)
    return argv[:split], argv[split + 1:]


def parse_env_assignments(pairs: Sequence[str]) -> dict[str, str]:
    """['KEY=VALUE', ...] (the launchers' repeatable --env flag) -> {KEY: VALUE}."""
    env = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise LaunchError(f"--env {pair!r}: expected KEY=VALUE with a shell variable name")
        env[key] = value
    return env


def _exports(env: Mapping[str, str]) -> list[str]:
    return [f"export {k}={shlex.quote(v)}" for k, v in env.items()]


# ---- local: N processes on one machine ----------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ProcessSpec:
    """One process to start: `argv` with `env` added to the launcher's environment."""

    process_id: int
    argv: list[str]
    env: dict[str, str]
    log_path: Path | None = None

    def shell_line(self) -> str:
        """The process as one shell line (`KEY=VALUE ... argv`)."""
        assignments = [f"{k}={shlex.quote(v)}" for k, v in self.env.items()]
        line = " ".join(assignments + [shlex.join(self.argv)])
        return f"{line} > {shlex.quote(str(self.log_path))} 2>&1" if self.log_path else line


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def xla_flags_with_device_count(existing: str, count: int) -> str:
    """`existing` XLA_FLAGS with --xla_force_host_platform_device_count set to `count`."""
    kept = _DEVICE_COUNT_FLAG.sub("", existing).split()
    return " ".join(kept + [f"--xla_force_host_platform_device_count={count}"])


def local_process_specs(command: Sequence[str], *, num_processes: int, port: int,
                        devices_per_process: int | None = None, platform: str = "cpu",
                        host: str = "127.0.0.1", python: str = sys.executable,
                        base_env: Mapping[str, str] | None = None,
                        extra_env: Mapping[str, str] | None = None,
                        log_dir: str | os.PathLike | None = None) -> list[ProcessSpec]:
    """N processes of `command` forming one JAX job on this machine.

    Args:
      command: the user command (`launch/train.py ...`; a leading .py runs with `python`).
      num_processes: N >= 1.
      port: the coordinator's port on `host` (process 0 serves it).
      devices_per_process: CPU devices each process gets (JAX_NUM_CPU_DEVICES and the XLA flag);
        None keeps JAX's default (1). Only for platform 'cpu'.
      platform: 'cpu' (JAX_PLATFORMS=cpu, gloo collectives) or '' (let JAX choose; GPUs of
        this machine are then shared by all processes unless `extra_env` restricts them).
      base_env: the environment the launcher runs in (default os.environ), for XLA_FLAGS.
      extra_env: more variables for every process (--env KEY=VALUE).
      log_dir: each process's output goes to `log_dir/process_<i>.log`.
    """
    if num_processes < 1:
        raise LaunchError(f"--num_processes: expected >= 1, got {num_processes}")
    if devices_per_process is not None and devices_per_process < 1:
        raise LaunchError(f"--devices_per_process: expected >= 1, got {devices_per_process}")
    if devices_per_process is not None and platform != "cpu":
        raise LaunchError("--devices_per_process sets CPU devices; it needs --platform cpu")
    if not 0 < port < 65536:
        raise LaunchError(f"--port: expected 1..65535, got {port}")
    argv = command_argv(command, python)
    base = os.environ if base_env is None else base_env
    common: dict[str, str] = {"JAX_COORDINATOR_ADDRESS": f"{host}:{port}",
                              "JAX_NUM_PROCESSES": str(num_processes)}
    if platform == "cpu":
        common["JAX_PLATFORMS"] = "cpu"
        common["JAX_CPU_COLLECTIVES_IMPLEMENTATION"] = "gloo"
        common["CUDA_VISIBLE_DEVICES"] = ""
        if devices_per_process is not None:
            common["JAX_NUM_CPU_DEVICES"] = str(devices_per_process)
            common["XLA_FLAGS"] = xla_flags_with_device_count(base.get("XLA_FLAGS", ""),
                                                              devices_per_process)
    elif platform:
        common["JAX_PLATFORMS"] = platform
    common.update(extra_env or {})
    logs = Path(log_dir) if log_dir is not None else None
    return [ProcessSpec(process_id=i, argv=list(argv),
                        env={**common, "JAX_PROCESS_ID": str(i)},
                        log_path=logs / f"process_{i}.log" if logs else None)
            for i in range(num_processes)]


def describe_local(specs: Sequence[ProcessSpec], devices_per_process: int | None) -> str:
    """The dry-run text: a summary line, then one shell line per process."""
    first = specs[0].env
    devices = (f"{devices_per_process} CPU devices each, {devices_per_process * len(specs)} in "
               "total" if devices_per_process else "JAX's default devices")
    lines = [f"# {len(specs)} processes on this machine, coordinator "
             f"{first['JAX_COORDINATOR_ADDRESS']} (served by process 0), {devices}"]
    lines += [spec.shell_line() + " &" for spec in specs]
    lines.append("wait   # the launcher stops the others when one fails and exits with its code")
    return "\n".join(lines)


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def _pump(proc: subprocess.Popen, prefix: str, log: TextIO | None, out: TextIO,
          lock: threading.Lock) -> None:
    for line in proc.stdout:  # type: ignore[union-attr]
        if log is not None:
            log.write(line)
            log.flush()
        with lock:
            out.write(f"{prefix}{line}" if line.endswith("\n") else f"{prefix}{line}\n")
            out.flush()


def _stop(procs: Sequence[subprocess.Popen], grace_seconds: float) -> None:
    """SIGTERM to each still-running process's group, SIGKILL after `grace_seconds`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = [p for p in procs if p.poll() is None]
        for proc in alive:
            try:
                os.killpg(proc.pid, sig)  # the group we created for this child (its own pid)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_seconds
        while any(p.poll() is None for p in alive) and time.monotonic() < deadline:
            time.sleep(0.05)


def run_processes(specs: Sequence[ProcessSpec], *, out: TextIO = sys.stdout,
                  grace_seconds: float = 10.0, poll_seconds: float = 0.1) -> int:
    """Starts every process, prefixes their output lines with `[p<i>] ` on `out` (and writes
    them unprefixed to each spec's log file), and supervises them.

    Returns 0 when all exit 0; otherwise the first non-zero exit code (128 + signal for a
    signal), after stopping the others (SIGTERM, then SIGKILL after `grace_seconds`): a JAX
    job cannot continue without one of its processes, and the others would wait in a
    collective until the coordinator's heartbeat timeout. Ctrl-C stops all and returns 130.
    Raises LaunchError (after stopping those started) when a command cannot be started.
    """
    lock = threading.Lock()
    procs: list[subprocess.Popen] = []
    logs: list[TextIO | None] = []
    pumps: list[threading.Thread] = []
    try:
        for spec in specs:
            log = None
            if spec.log_path is not None:
                spec.log_path.parent.mkdir(parents=True, exist_ok=True)
                log = open(spec.log_path, "w", encoding="utf-8")
            logs.append(log)
            try:
                proc = subprocess.Popen(
                    spec.argv, env={**os.environ, **spec.env}, stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, bufsize=1,
                    errors="replace", start_new_session=True)
            except OSError as err:
                raise LaunchError(f"cannot start {spec.argv[0]!r}: {err.strerror}") from err
            procs.append(proc)
            pump = threading.Thread(target=_pump, daemon=True,
                                    args=(proc, f"[p{spec.process_id}] ", log, out, lock))
            pump.start()
            pumps.append(pump)
        code = 0
        while code == 0 and any(p.poll() is None for p in procs):
            time.sleep(poll_seconds)
            failed = [p for p in procs if p.poll() not in (None, 0)]
            if failed:
                code = _exit_code(failed[0].returncode)
        if code == 0:
            failed = [p for p in procs if p.returncode != 0]
            code = _exit_code(failed[0].returncode) if failed else 0
        if code != 0:
            with lock:
                out.write(f"[launcher] a process exited with code {code}; stopping the others\n")
                out.flush()
        return code
    except KeyboardInterrupt:
        return 130
    finally:
        _stop(procs, grace_seconds)
        for pump in pumps:
            pump.join(timeout=5)
        for log in logs:
            if log is not None:
                log.close()


# ---- SLURM ----------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SlurmJob:
    """A SLURM GPU job.

    Attributes:
      nodes, gpus_per_node: the allocation (`--nodes`, `--gres=gpu:<n>`).
      partition, time: `--partition`, `--time` (e.g. '24:00:00' or '1-00:00:00').
      one_process_per: 'gpu' (N x G processes, each sees one GPU) or 'node' (N processes, each
        drives all G GPUs of its node).
      job_name, account, cpus_per_task, mem: optional #SBATCH fields (mem like '200G').
      output: the job's log (%x = job name, %j = job id); srun prefixes each line with the
        task (= JAX process) number.
      port: the coordinator port; None derives it from the job id as jax's SlurmCluster does.
      env: extra variables exported before srun (NCCL settings, ...).
      extra_sbatch: more `#SBATCH` options, e.g. ['--exclusive', '--qos=high'].
    """

    nodes: int
    gpus_per_node: int
    partition: str
    time: str
    one_process_per: str = "gpu"
    job_name: str = "mt3x"
    account: str | None = None
    cpus_per_task: int | None = None
    mem: str | None = None
    output: str = "logs/slurm/%x-%j.out"
    port: int | None = None
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    extra_sbatch: Sequence[str] = ()

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise LaunchError(f"--nodes: expected >= 1, got {self.nodes}")
        if self.gpus_per_node < 1:
            raise LaunchError(f"--gpus_per_node: expected >= 1, got {self.gpus_per_node}")
        if self.one_process_per not in ("gpu", "node"):
            raise LaunchError(f"--one_process_per: expected 'gpu' or 'node', got "
                              f"{self.one_process_per!r}")
        if not re.fullmatch(r"(\d+-)?\d+(:\d{1,2}){0,2}", self.time):
            raise LaunchError(f"--time {self.time!r}: expected SLURM's [D-]HH:MM:SS form")
        if self.port is not None and not 0 < self.port < 65536:
            raise LaunchError(f"--port: expected 1..65535, got {self.port}")

    @property
    def tasks_per_node(self) -> int:
        return self.gpus_per_node if self.one_process_per == "gpu" else 1

    @property
    def num_processes(self) -> int:
        return self.nodes * self.tasks_per_node

    @property
    def devices_per_process(self) -> int:
        return 1 if self.one_process_per == "gpu" else self.gpus_per_node

    @property
    def local_device_ids(self) -> str:
        """JAX_LOCAL_DEVICE_IDS of each task (shell text, expanded by the task's own shell)."""
        if self.one_process_per == "gpu":
            return "$SLURM_LOCALID"
        return ",".join(str(i) for i in range(self.gpus_per_node))


def slurm_script(job: SlurmJob, command: Sequence[str], *, repo: str | os.PathLike,
                 python: str = "python") -> str:
    """The sbatch script: #SBATCH lines, the coordinator from the allocation, one srun.

    The batch script runs on the first node of the allocation; the coordinator is that node
    (`scontrol show hostnames $SLURM_JOB_NODELIST | head -n 1`, the host jax's SlurmCluster
    would pick). Each srun task exports JAX_PROCESS_ID=$SLURM_PROCID and JAX_LOCAL_DEVICE_IDS
    before exec'ing the command; with all four values set jax.distributed.initialize skips its
    own cluster detection (whose default for SLURM, one GPU per process, would be wrong for
    --one_process_per node).
    """
    argv = command_argv(command, python)
    per = (f"one process per GPU ({job.num_processes} processes, 1 GPU each)"
           if job.one_process_per == "gpu" else
           f"one process per node ({job.num_processes} processes, {job.gpus_per_node} GPUs each)")
    sbatch = [f"--job-name={job.job_name}", f"--partition={job.partition}",
              f"--time={job.time}", f"--nodes={job.nodes}",
              f"--ntasks-per-node={job.tasks_per_node}", f"--gres=gpu:{job.gpus_per_node}",
              f"--output={job.output}"]
    if job.account:
        sbatch.append(f"--account={job.account}")
    if job.cpus_per_task:
        sbatch.append(f"--cpus-per-task={job.cpus_per_task}")
    if job.mem:
        sbatch.append(f"--mem={job.mem}")
    sbatch += list(job.extra_sbatch)
    port = str(job.port) if job.port else f"$(({SLURM_PORT_BASE} + SLURM_JOB_ID % 4096))"
    task = (f"export JAX_PROCESS_ID=$SLURM_PROCID JAX_LOCAL_DEVICE_IDS={job.local_device_ids}; "
            'exec "$@"')
    lines = ["#!/bin/bash",
             f"# Written by launch/slurm.py: {job.nodes} node(s) x {job.gpus_per_node} GPU(s), "
             f"{per}.",
             *(f"#SBATCH {option}" for option in sbatch),
             "set -euo pipefail",
             f"cd {shlex.quote(str(repo))}",
             'COORDINATOR_HOST=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
             f"export JAX_COORDINATOR_ADDRESS=$COORDINATOR_HOST:{port}",
             f"export JAX_NUM_PROCESSES={job.num_processes}",
             *_exports(job.env),
             'echo "[mt3x] job $SLURM_JOB_ID on $SLURM_JOB_NODELIST: $JAX_NUM_PROCESSES '
             'processes, coordinator $JAX_COORDINATOR_ADDRESS"',
             f"srun --nodes={job.nodes} --ntasks-per-node={job.tasks_per_node} "
             f"--kill-on-bad-exit=1 --label bash -c {shlex.quote(task)} mt3x-task \\",
             f"  {shlex.join(argv)}",
             ""]
    return "\n".join(lines)


def expand_nodelist(nodelist: str) -> list[str]:
    """SLURM's compact host list -> host names ('gpu[01-03,07],login2' -> gpu01, gpu02, gpu03,
    gpu07, login2), as `scontrol show hostnames` prints them (zero padding kept)."""
    hosts: list[str] = []
    for match in re.finditer(r"([^,\[]+)(?:\[([^\]]*)\])?([^,]*)", nodelist):
        prefix, ranges, suffix = match.groups()
        if ranges is None:
            hosts.append(prefix + suffix)
            continue
        for part in ranges.split(","):
            lo, dash, hi = part.partition("-")
            if not dash:
                hosts.append(f"{prefix}{lo}{suffix}")
                continue
            for n in range(int(lo), int(hi) + 1):
                hosts.append(f"{prefix}{n:0{len(lo)}d}{suffix}")
    return hosts


def slurm_coordinator(env: Mapping[str, str], port: int | None = None) -> str:
    """host:port the script computes from a SLURM environment (first allocated host; the port
    from SLURM_JOB_ID unless given)."""
    host = expand_nodelist(env["SLURM_JOB_NODELIST"])[0]
    if port is None:
        port = SLURM_PORT_BASE + int(env["SLURM_JOB_ID"]) % 4096
    return f"{host}:{port}"


# ---- Cloud TPU VM pod ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TpuTopology:
    """What an accelerator type holds: `hosts` TPU VMs (workers, one JAX process each) with
    `devices` JAX devices in total (chips; TensorCores on v2/v3)."""

    accelerator_type: str
    generation: str
    chips: int
    hosts: int
    devices: int
    runtime_version: str


_TPU_GENERATIONS = {
    # generation: (the type's number counts 'cores' or 'chips', chips per multi-host VM,
    #              chips of the largest single-VM type, JAX devices per chip, runtime version)
    "v2": ("cores", 4, 4, 2, "tpu-ubuntu2204-base"),
    "v3": ("cores", 4, 4, 2, "tpu-ubuntu2204-base"),
    "v4": ("cores", 4, 4, 1, "tpu-ubuntu2204-base"),
    "v5p": ("cores", 4, 4, 1, "v2-alpha-tpuv5"),
    "v5litepod": ("chips", 4, 8, 1, "v2-alpha-tpuv5-lite"),
    "v6e": ("chips", 4, 8, 1, "v2-alpha-tpuv6e"),
}


def tpu_topology(accelerator_type: str) -> TpuTopology:
    """Workers and devices of a Cloud TPU accelerator type ('v4-32' -> 4 workers, 16 devices).

    v2/v3/v4/v5p count TensorCores (2 per chip, 4 chips per VM); v5e ('v5litepod-N') and v6e
    count chips (up to 8 on one VM, 4 per VM in multi-host slices). Only used to describe the
    plan: on the pod each worker reads the real worker list from the VM metadata.
    """
    match = re.fullmatch(r"(v2|v3|v4|v5p|v5litepod|v6e)-(\d+)", accelerator_type)
    if not match:
        raise LaunchError(f"--accelerator_type {accelerator_type!r}: expected e.g. v4-32, "
                          f"v5p-64, v5litepod-16, v6e-16, v3-32 "
                          f"(one of {sorted(_TPU_GENERATIONS)} and a size)")
    generation, size = match.group(1), int(match.group(2))
    counts, per_vm, single_vm_max, devices_per_chip, runtime = _TPU_GENERATIONS[generation]
    chips = size // 2 if counts == "cores" else size
    if chips < 1 or (counts == "cores" and size % 2):
        raise LaunchError(f"--accelerator_type {accelerator_type!r}: {size} is not a valid size")
    hosts = 1 if chips <= single_vm_max else -(-chips // per_vm)
    return TpuTopology(accelerator_type, generation, chips, hosts, chips * devices_per_chip,
                       runtime)


@dataclasses.dataclass(frozen=True)
class TpuPodJob:
    """A run on a Cloud TPU VM slice.

    Attributes:
      name, zone, accelerator_type: the TPU VM (`gcloud compute tpus tpu-vm ...`).
      project: gcloud --project (default: gcloud's configured project).
      runtime_version: for --create (default: the generation's base image).
      spot: create a Spot TPU VM.
      source: 'archive' (git archive of the local HEAD, copied with scp --worker=all) or a git
        URL to clone on every worker (at `git_ref`).
      remote_dir: the checkout on each worker.
      extras: pip extra installed after `./run setup` ('tpu' -> jax[tpu]).
      port: coordinator port on worker 0.
      env: extra variables on every worker.
      log_dir: where this machine collects the workers' logs.
    """

    name: str
    zone: str
    accelerator_type: str
    project: str | None = None
    runtime_version: str | None = None
    spot: bool = False
    source: str = "archive"
    git_ref: str = "main"
    remote_dir: str = "mt3x"
    extras: str = "tpu"
    port: int = DEFAULT_TPU_PORT
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    log_dir: str = "logs/tpu"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", self.name):
            raise LaunchError(f"--name {self.name!r}: expected lowercase letters, digits and "
                              "hyphens, starting with a letter")
        tpu_topology(self.accelerator_type)
        if not re.fullmatch(r"[A-Za-z0-9_.\-/~]+", self.remote_dir):
            raise LaunchError(f"--remote_dir {self.remote_dir!r}: expected a plain path")


@dataclasses.dataclass(frozen=True)
class Step:
    """One command the TPU launcher runs here (with a title for the dry run)."""

    title: str
    argv: list[str]


def _gcloud(job: TpuPodJob, *args: str) -> list[str]:
    argv = ["gcloud", "compute", "tpus", "tpu-vm", *args, f"--zone={job.zone}"]
    return argv + ([f"--project={job.project}"] if job.project else [])


def tpu_worker_script(job: TpuPodJob, command: Sequence[str]) -> str:
    """The bash every worker runs: the JAX process env from the VM metadata (this worker's
    number; worker 0's address and the worker count from worker-network-endpoints, the sources
    jax's GceTpuCluster reads), then the command with its output teed to a per-worker log."""
    argv = command_argv(command, python=".venv/bin/python")
    metadata = ("http://metadata.google.internal/computeMetadata/v1/instance/attributes")
    log = f"$HOME/mt3x-logs/{job.name}-worker$JAX_PROCESS_ID.log"
    lines = [
        "set -eo pipefail",
        f"cd {job.remote_dir}",
        f"md() {{ curl -sf -H Metadata-Flavor:Google {metadata}/$1; }}",
        "export JAX_PROCESS_ID=$(md agent-worker-number)",
        "ENDPOINTS=$(md worker-network-endpoints)",
        "export JAX_NUM_PROCESSES=$(echo \"$ENDPOINTS\" | tr , '\\n' | grep -c .)",
        "export JAX_COORDINATOR_ADDRESS=$(echo \"$ENDPOINTS\" | cut -d, -f1 | "
        f"awk -F: '{{print $NF}}'):{job.port}",
        *_exports(job.env),
        "mkdir -p $HOME/mt3x-logs",
        f"{shlex.join(argv)} 2>&1 | tee {log}",
    ]
    return "\n".join(lines)


def tpu_plan(job: TpuPodJob, command: Sequence[str], *, create: bool = False,
             steps: Sequence[str] = ("copy", "install", "run", "logs"),
             archive: str = "/tmp/mt3x-src.tar.gz", repo: str | os.PathLike = ".",
             git_url: str | None = None) -> list[Step]:
    """The gcloud commands of a run, in order (create?, copy, install, run, logs).

    Args:
      command: what every worker runs (`launch/train.py ...`, relative to the checkout).
      create: first create the TPU VM.
      steps: the subset of ('copy', 'install', 'run', 'logs') to do.
      archive: local path of the source archive (source 'archive').
      repo: the local checkout that is archived.
      git_url: clone this on every worker instead (source other than 'archive').
    """
    unknown = set(steps) - {"copy", "install", "run", "logs"}
    if unknown:
        raise LaunchError(f"--steps: unknown {sorted(unknown)}; expected copy, install, run, logs")
    topo = tpu_topology(job.accelerator_type)
    plan: list[Step] = []
    if create:
        argv = _gcloud(job, "create", job.name, f"--accelerator-type={job.accelerator_type}",
                       f"--version={job.runtime_version or topo.runtime_version}")
        plan.append(Step(f"create {job.name}: {job.accelerator_type}, {topo.hosts} worker(s)",
                         argv + (["--spot"] if job.spot else [])))
    ssh_all = ("ssh", job.name, "--worker=all")
    if "copy" in steps:
        if git_url is None:
            remote = f"~/{Path(archive).name}"
            plan.append(Step("archive the committed source (git HEAD)",
                             ["git", "-C", str(repo), "archive", "--format=tar.gz", "-o",
                              archive, "HEAD"]))
            plan.append(Step("copy it to every worker",
                             _gcloud(job, "scp", archive, f"{job.name}:{remote}",
                                     "--worker=all")))
            unpack = (f"mkdir -p {job.remote_dir} && tar -xzf {remote} -C {job.remote_dir}")
            plan.append(Step("unpack it on every worker",
                             _gcloud(job, *ssh_all, f"--command={unpack}")))
        else:
            clone = (f"(test -d {job.remote_dir}/.git || git clone {shlex.quote(git_url)} "
                     f"{job.remote_dir}) && git -C {job.remote_dir} fetch --all && "
                     f"git -C {job.remote_dir} checkout {shlex.quote(job.git_ref)}")
            plan.append(Step(f"clone {git_url} @ {job.git_ref} on every worker",
                             _gcloud(job, *ssh_all, f"--command={clone}")))
    if "install" in steps:
        extra = f" && .venv/bin/pip install -q -c requirements.lock -e '.[{job.extras}]'" \
            if job.extras else ""
        install = f"cd {job.remote_dir} && ./run setup{extra}"
        plan.append(Step("install on every worker", _gcloud(job, *ssh_all,
                                                            f"--command={install}")))
    if "run" in steps:
        plan.append(Step(f"run on all {topo.hosts} worker(s) ({topo.devices} devices; worker 0 "
                         f"coordinates on port {job.port})",
                         _gcloud(job, *ssh_all,
                                 f"--command={tpu_worker_script(job, command)}")))
    if "logs" in steps:
        plan.append(Step(f"collect the workers' logs into {job.log_dir}/",
                         _gcloud(job, "scp", f"{job.name}:~/mt3x-logs/{job.name}-worker*.log",
                                 f"{job.log_dir}/", "--worker=all")))
    return plan


def describe_plan(plan: Sequence[Step]) -> str:
    """The dry-run text: each step's title as a comment, then its command line."""
    lines = []
    for number, step in enumerate(plan, 1):
        lines += [f"# {number}. {step.title}", shlex.join(step.argv)]
    return "\n".join(lines)

"""A multi-node SLURM GPU job as an sbatch script (`SlurmJob`, `slurm_script`), and the
coordinator address the script derives from the allocation (`expand_nodelist`,
`slurm_coordinator`, checked against jax's SlurmCluster). Used by launch/slurm.py.

    >>> script = slurm_script(SlurmJob(nodes=2, gpus_per_node=8, partition='gpu',
    ...                                time='24:00:00'), ['launch/train.py'], repo='/repo')
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
from typing import Mapping, Sequence

from mt3x.cluster.common import LaunchError, command_argv, export_lines

SLURM_PORT_BASE = 65535 - 2**12 + 1  # jax's SlurmCluster: 61440 + SLURM_JOB_ID % 4096


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
             *export_lines(job.env),
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

"""A run on every worker of a Cloud TPU VM slice: the accelerator's topology (`tpu_topology`),
the script each worker runs (`tpu_worker_script`, its JAX process env read from the VM metadata as
jax's GceTpuCluster does) and the gcloud commands of a run (`tpu_plan`, `describe_plan`). Used by
launch/tpu_pod.py.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
from pathlib import Path
from typing import Mapping, Sequence

from mt3x.cluster.common import LaunchError, command_argv, export_lines

DEFAULT_TPU_PORT = 8476            # jax's default coordinator port on Cloud TPU


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
        *export_lines(job.env),
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

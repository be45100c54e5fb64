"""N JAX processes of one command on this machine: their command lines and environments
(`local_process_specs`, `describe_local` for --dry-run) and the supervisor that runs them
(`run_processes`). Used by launch/local_multiprocess.py.

    >>> specs = local_process_specs(['launch/train.py', '--workdir', 'runs/x'],
    ...                             num_processes=2, port=4321, devices_per_process=4)
    >>> specs[1].env['JAX_PROCESS_ID'], specs[1].env['JAX_COORDINATOR_ADDRESS']
    ('1', '127.0.0.1:4321')
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Mapping, Sequence, TextIO

from mt3x.cluster.common import LaunchError, command_argv

_DEVICE_COUNT_FLAG = re.compile(r"--xla_force_host_platform_device_count=\S*")


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

"""What every launcher shares: the error type, the `[flags] -- COMMAND` split, the command's argv,
`--env KEY=VALUE` parsing, shell exports and a free port.

Every target ends the same way: each JAX process runs the user's command (usually
`launch/train.py ...`) with `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID` (and
`JAX_LOCAL_DEVICE_IDS` on GPUs) in its environment. launch/common.py reads the first three as the
defaults of --coordinator_address / --num_processes / --process_id and calls
`jax.distributed.initialize`, which itself reads `JAX_LOCAL_DEVICE_IDS`. Nothing else in the
command changes, so the printed commands are the commands you would type by hand.
"""

from __future__ import annotations

import re
import shlex
import socket
import sys
from typing import Mapping, Sequence

from mt3x.errors import Mt3xError


class LaunchError(Mt3xError):
    """A launcher argument that cannot work (names the flag and what was expected)."""


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


def export_lines(env: Mapping[str, str]) -> list[str]:
    """Shell `export KEY=VALUE` lines (values quoted) for a script's environment."""
    return [f"export {k}={shlex.quote(v)}" for k, v in env.items()]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])

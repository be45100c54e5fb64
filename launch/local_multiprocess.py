"""Run N JAX processes of one command on this machine (127.0.0.1), for testing multi-host code.

    python launch/local_multiprocess.py --num_processes 2 --devices_per_process 4 -- \
        launch/train.py --gin_file=experiments/demo_cpu.gin --gin.DATASET_ROOT="'data/demo'" \
        --workdir=runs/mp

Each process gets JAX_COORDINATOR_ADDRESS=127.0.0.1:PORT, JAX_NUM_PROCESSES, JAX_PROCESS_ID
(launch/common.py reads them and calls jax.distributed.initialize), and on CPU JAX_PLATFORMS=cpu,
gloo collectives and JAX_NUM_CPU_DEVICES. Output lines are prefixed with [p<i>] and written to
<log_dir>/process_<i>.log; when one process fails the others are stopped and its exit code is
returned. --dry-run prints the processes instead of starting them.
"""

from __future__ import annotations

import argparse
import sys
import time

from mt3x.cluster.common import LaunchError, free_port, parse_env_assignments, split_command
from mt3x.cluster.local import describe_local, local_process_specs, run_processes


def main(argv: list[str] | None = None) -> int:
    own, command = split_command(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     usage="%(prog)s --num_processes N [options] -- COMMAND...")
    parser.add_argument("--num_processes", type=int, required=True)
    parser.add_argument("--devices_per_process", type=int, default=None,
                        help="CPU devices per process (default: JAX's, 1)")
    parser.add_argument("--port", default="auto", help="coordinator port, or 'auto' (free port)")
    parser.add_argument("--platform", default="cpu",
                        help="'cpu' (default) or '' to let JAX pick the machine's accelerators")
    parser.add_argument("--log_dir", default=None,
                        help="per-process logs (default logs/local/<date-time>)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment variable for every process; repeatable")
    parser.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true",
                        help="print the processes and exit")
    args = parser.parse_args(own)
    try:
        if args.port != "auto" and not args.port.isdigit():
            raise LaunchError(f"--port {args.port!r}: expected a port number or 'auto'")
        port = free_port() if args.port == "auto" else int(args.port)
        log_dir = args.log_dir or time.strftime("logs/local/%Y%m%d-%H%M%S")
        specs = local_process_specs(command, num_processes=args.num_processes, port=port,
                                    devices_per_process=args.devices_per_process,
                                    platform=args.platform, log_dir=log_dir,
                                    extra_env=parse_env_assignments(args.env))
    except LaunchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(describe_local(specs, args.devices_per_process), flush=True)
    if args.dry_run:
        return 0
    try:
        code = run_processes(specs)
    except LaunchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"[launcher] exit code {code}; logs in {log_dir}/", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())

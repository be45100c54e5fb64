"""Run a command on every worker of a Cloud TPU VM slice with gcloud: create (optional), copy the
repository, install, run, collect the logs.

    python launch/tpu_pod.py --name mt3-pod --zone us-central2-b --accelerator_type v4-32 \
        --create -- launch/train.py --gin_file=experiments/mt3_slakh.gin \
        --gin.DATASET_ROOT="'/mnt/data/slakh2100'" --workdir=/mnt/runs/mt3

Every worker runs the same command; its JAX process id, the worker count and worker 0's address
(the coordinator) come from the VM metadata. Paths in the command are on the workers; the work
directory must be shared by all of them (e.g. a Filestore NFS mount or gcsfuse). --steps picks a
subset of copy,install,run,logs; --dry-run prints the gcloud commands only.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from mt3x.cluster.common import LaunchError, parse_env_assignments, split_command
from mt3x.cluster.tpu_pod import DEFAULT_TPU_PORT, TpuPodJob, describe_plan, tpu_plan

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    own, command = split_command(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     usage="%(prog)s --name NAME --zone Z --accelerator_type T "
                                           "[options] -- COMMAND...")
    parser.add_argument("--name", required=True, help="TPU VM name")
    parser.add_argument("--zone", required=True)
    parser.add_argument("--accelerator_type", required=True, help="e.g. v4-32, v5litepod-16")
    parser.add_argument("--project", default=None)
    parser.add_argument("--create", action="store_true", help="create the TPU VM first")
    parser.add_argument("--runtime_version", default=None,
                        help="TPU software version for --create (default per generation)")
    parser.add_argument("--spot", action="store_true", help="create a Spot TPU VM")
    parser.add_argument("--git_url", default=None,
                        help="clone this on the workers instead of copying git HEAD from here")
    parser.add_argument("--git_ref", default="main")
    parser.add_argument("--remote_dir", default="mt3x", help="checkout on each worker (~/...)")
    parser.add_argument("--extras", default="tpu", help="pip extra to install ('' for none)")
    parser.add_argument("--port", type=int, default=DEFAULT_TPU_PORT, help="coordinator port on worker 0")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment variable on every worker; repeatable")
    parser.add_argument("--steps", default="copy,install,run,logs",
                        help="comma-separated subset of copy,install,run,logs")
    parser.add_argument("--log_dir", default="logs/tpu", help="where the logs are collected")
    parser.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true",
                        help="print the gcloud commands; run nothing")
    args = parser.parse_args(own)
    steps = [s for s in args.steps.split(",") if s]
    try:
        job = TpuPodJob(name=args.name, zone=args.zone, accelerator_type=args.accelerator_type,
                        project=args.project, runtime_version=args.runtime_version,
                        spot=args.spot, source="git" if args.git_url else "archive",
                        git_ref=args.git_ref, remote_dir=args.remote_dir, extras=args.extras,
                        port=args.port, env=parse_env_assignments(args.env),
                        log_dir=args.log_dir)
        if "run" in steps and not command:
            raise LaunchError("no command given; put it after `--`")
        plan = tpu_plan(job, command or ["true"], create=args.create, steps=steps, repo=REPO,
                        git_url=args.git_url)
    except LaunchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(describe_plan(plan), flush=True)
    if args.dry_run:
        return 0
    if not args.git_url and "copy" in steps:
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True).stdout
        if dirty.strip():
            print("warning: uncommitted changes are not copied (git archive HEAD)",
                  file=sys.stderr)
    if "logs" in steps:
        Path(args.log_dir).mkdir(parents=True, exist_ok=True)
    for number, step in enumerate(plan, 1):
        print(f"[tpu_pod] {number}/{len(plan)} {step.title}", flush=True)
        try:
            code = subprocess.run(step.argv, check=False).returncode
        except FileNotFoundError:
            print(f"error: {step.argv[0]} not found (install the Google Cloud SDK)",
                  file=sys.stderr)
            return 2
        if code != 0:
            print(f"[tpu_pod] step {number} failed with exit code {code}", file=sys.stderr)
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())

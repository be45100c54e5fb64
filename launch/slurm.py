"""Submit a multi-node JAX job to a SLURM GPU cluster: writes an sbatch script, runs `sbatch`.

    python launch/slurm.py --nodes 2 --gpus_per_node 8 --partition gpu --time 24:00:00 -- \
        launch/train.py --gin_file=experiments/mt3_slakh.gin \
        --gin.DATASET_ROOT="'/shared/slakh2100'" --workdir=/shared/runs/mt3

--one_process_per gpu (default) starts nodes x gpus_per_node processes with one GPU each;
--one_process_per node starts one process per node driving all its GPUs. The coordinator is the
first node of the allocation. Run it from the repository on a filesystem the nodes share; the
work directory must be shared too. --dry-run prints the script and the sbatch command only.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

from mt3x.util.files import atomic_path
from mt3x.cluster.common import LaunchError, parse_env_assignments, split_command
from mt3x.cluster.slurm import SlurmJob, slurm_script

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    own, command = split_command(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     usage="%(prog)s --nodes N --gpus_per_node G --partition P "
                                           "--time T [options] -- COMMAND...")
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--gpus_per_node", type=int, required=True)
    parser.add_argument("--partition", required=True)
    parser.add_argument("--time", required=True, help="wall-clock limit, [D-]HH:MM:SS")
    parser.add_argument("--one_process_per", choices=("gpu", "node"), default="gpu")
    parser.add_argument("--job_name", default="mt3x")
    parser.add_argument("--account", default=None)
    parser.add_argument("--cpus_per_task", type=int, default=None)
    parser.add_argument("--mem", default=None, help="memory per node, e.g. 200G")
    parser.add_argument("--output", default="logs/slurm/%x-%j.out",
                        help="job log (relative to the repository)")
    parser.add_argument("--port", type=int, default=None,
                        help="coordinator port (default: derived from the job id)")
    parser.add_argument("--sbatch", action="append", default=[], metavar="OPTION",
                        help="another #SBATCH option, e.g. --sbatch=--exclusive; repeatable")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="exported before srun (e.g. NCCL_DEBUG=WARN); repeatable")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter on the nodes (default: this one)")
    parser.add_argument("--script", default=None,
                        help="where to write the script (default logs/slurm/<job>-<time>.sbatch)")
    parser.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true",
                        help="print the script and the sbatch command; submit nothing")
    args = parser.parse_args(own)
    try:
        job = SlurmJob(nodes=args.nodes, gpus_per_node=args.gpus_per_node,
                       partition=args.partition, time=args.time,
                       one_process_per=args.one_process_per, job_name=args.job_name,
                       account=args.account, cpus_per_task=args.cpus_per_task, mem=args.mem,
                       output=args.output, port=args.port, env=parse_env_assignments(args.env),
                       extra_sbatch=args.sbatch)
        script = slurm_script(job, command, repo=REPO, python=args.python)
    except LaunchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    path = Path(args.script or REPO / time.strftime(f"logs/slurm/{job.job_name}-%Y%m%d-%H%M%S"
                                                    ".sbatch"))
    submit = ["sbatch", str(path)]
    if args.dry_run:
        print(f"# would write {path}:")
        print(script, end="")
        print(f"# then run:\n{shlex.join(submit)}")
        return 0
    with atomic_path(path) as tmp:
        tmp.write_text(script)
    log_parent = (REPO / job.output).parent
    if "%" not in str(log_parent):
        log_parent.mkdir(parents=True, exist_ok=True)  # sbatch does not create it
    print(f"wrote {path}\n{shlex.join(submit)}", flush=True)
    try:
        return subprocess.run(submit, check=False).returncode
    except FileNotFoundError:
        print("error: sbatch not found; run this on a SLURM login node (or use --dry-run)",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

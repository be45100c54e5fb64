"""mt3x.cluster: what the launchers in launch/ do, as plain data and one process supervisor.

- `common`: `LaunchError`, `split_command`, `command_argv`, `parse_env_assignments`, `free_port`.
- `local`: N processes on this machine (`local_process_specs`, `run_processes`).
- `slurm`: a SLURM GPU job (`SlurmJob`, `slurm_script`, `slurm_coordinator`).
- `tpu_pod`: a Cloud TPU VM slice (`TpuPodJob`, `tpu_topology`, `tpu_plan`).
"""

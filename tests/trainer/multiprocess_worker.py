"""One process of the 2-process training test (started by test_multiprocess.py).

Usage: python multiprocess_worker.py PROCESS_ID NUM_PROCESSES PORT WORKDIR
Trains the toy model on 4 local CPU devices per process (gloo collectives), checkpointing to the
shared WORKDIR, then resumes from that checkpoint for two more steps. Prints one JSON line:
{"process": id, "devices": n, "losses": {...}, "resumed_losses": {...}}.
"""

from __future__ import annotations

import functools
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["CUDA_VISIBLE_DEVICES"] = ""

import jax  # noqa: E402

LOCAL_DEVICES = 4
PER_HOST_BATCH = 8


def host_batches(seed: int, *, process_id: int):
    """This host's share: the toy stream of seed 100 * seed + process_id."""
    import trainer_toy as toy

    return toy.batches(100 * seed + process_id, PER_HOST_BATCH)


def main(argv: list[str]) -> int:
    process_id, num_processes, port, workdir = int(argv[0]), int(argv[1]), int(argv[2]), argv[3]
    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_num_cpu_devices", LOCAL_DEVICES)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}",
                               num_processes=num_processes, process_id=process_id)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import trainer_toy as toy
    from mt3x.trainer import CheckpointOptions, Partitioner, adamw, train

    kwargs = dict(model=toy.ToyRegressor(), workdir=workdir, seed=1,
                  train_data=functools.partial(host_batches, process_id=process_id),
                  batch_size=PER_HOST_BATCH * num_processes,
                  optimizer=adamw(1e-2, weight_decay=0.0),
                  partitioner=Partitioner(num_partitions=2), eval_data=toy.eval_batches(),
                  checkpoint=CheckpointOptions(save_every_steps=2), show_progress=False,
                  log_every_steps=1, tensorboard=False)
    first = train(num_steps=4, **kwargs)
    resumed = train(num_steps=6, **kwargs)
    print(json.dumps({
        "process": jax.process_index(), "devices": jax.device_count(),
        "local_devices": jax.local_device_count(),
        "losses": first.losses, "resumed_losses": resumed.losses,
        "eval_loss": first.eval_history[4]["eval/loss"]}), flush=True)
    jax.distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

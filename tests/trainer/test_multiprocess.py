"""Two local JAX processes (gloo collectives on 127.0.0.1), 4 CPU devices each, train the toy
model with a multi-host Orbax checkpoint in a shared directory and resume from it; the losses
equal a single-process run on the same global batches."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import trainer_toy as toy
from mt3x.trainer import Checkpointer, CheckpointOptions, Partitioner, adamw, train

WORKER = Path(__file__).with_name("multiprocess_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _global_batches(seed: int):
    """What the two hosts feed together: host 0's batch then host 1's, concatenated."""
    streams = [toy.batches(100 * seed + p, 8) for p in (0, 1)]
    for parts in zip(*streams):
        yield {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


@pytest.mark.multiprocess
def test_two_processes_train_checkpoint_and_resume(tmp_path):
    port = _free_port()
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(WORKER.parent)] + paths))
    workdir = tmp_path / "shared"
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(i), "2", str(port), str(workdir)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i in range(2)]
    outputs = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=240)
            assert proc.returncode == 0, f"worker failed:\n{err[-4000:]}"
            outputs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert sorted(o["process"] for o in outputs) == [0, 1]
    assert all(o["devices"] == 8 and o["local_devices"] == 4 for o in outputs)
    # The loss is global: both processes see the same values.
    assert outputs[0]["losses"] == outputs[1]["losses"]
    assert sorted(map(int, outputs[0]["resumed_losses"])) == [5, 6]
    checkpointer = Checkpointer(workdir / "checkpoints", read_only=True)
    assert checkpointer.all_steps() == [6]
    checkpointer.close()

    # One process, 8 devices, the same global batches: the same losses.
    reference = train(model=toy.ToyRegressor(), workdir=tmp_path / "single", seed=1,
                      train_data=_global_batches, num_steps=6,
                      optimizer=adamw(1e-2, weight_decay=0.0),
                      partitioner=Partitioner(num_partitions=2),
                      checkpoint=CheckpointOptions(save_every_steps=100), show_progress=False,
                      tensorboard=False)
    multi = {**outputs[0]["losses"], **outputs[0]["resumed_losses"]}
    np.testing.assert_allclose([multi[str(s)] for s in range(1, 7)],
                               [reference.losses[s] for s in range(1, 7)], rtol=1e-5)

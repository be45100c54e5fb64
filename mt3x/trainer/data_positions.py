"""Every process's data position in one checkpoint item.

A checkpoint's `data` item is written by process 0 (Orbax JSON item). With several processes
each host reads its own shard of the data, so its position differs (e.g. Grain's iterator state
per host shard). `gather_data_states` collects every process's position before a save, and
`own_data_state` picks this process's one on resume:

    saved = {**position_of_process_0, "per_process": [position_0, position_1, ...]}

The top level stays process 0's position, so single-process checkpoints and readers that only
look at the top level are unchanged.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import jax
import numpy as np
from jax.experimental import multihost_utils

from mt3x.trainer.errors import CheckpointError

#: Key of the list of per-process positions in a saved data item.
PER_PROCESS = "per_process"


def gather_data_states(state: Mapping[str, Any]) -> dict[str, Any]:
    """This process's JSON-able data position -> the item to save (a collective: every process
    calls it at the same step). With one process, `state` itself."""
    if jax.process_count() == 1:
        return dict(state)
    text = np.frombuffer(json.dumps(dict(state), sort_keys=True).encode(), np.uint8)
    lengths = np.asarray(multihost_utils.process_allgather(np.array([text.size], np.int32)))
    padded = np.zeros([int(lengths.max())], np.uint8)
    padded[:text.size] = text
    rows = np.asarray(multihost_utils.process_allgather(padded))     # uint8[processes, width]
    states = [json.loads(rows[i, :int(lengths.reshape(-1)[i])].tobytes().decode())
              for i in range(jax.process_count())]
    return {**states[0], PER_PROCESS: states}


def own_data_state(saved: Mapping[str, Any]) -> dict[str, Any]:
    """The saved data item -> this process's position (the item itself when it holds one)."""
    if PER_PROCESS not in saved:
        return dict(saved)
    states = saved[PER_PROCESS]
    if len(states) != jax.process_count():
        raise CheckpointError(
            f"the checkpoint's data positions were saved by {len(states)} processes; this run "
            f"has {jax.process_count()}: resume with the same number of processes")
    return dict(states[jax.process_index()])

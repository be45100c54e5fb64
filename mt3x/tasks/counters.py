"""Counts of data the MT3 input pipelines drop instead of crashing (thread-safe, no TF or JAX).

Both drivers over `mt3x.tasks.examples` (seqio/tf.data in `mt3x.tasks.preprocessors`, and a Grain
driver) count into the same table, keyed by (task or pipeline name, counter name).

Counter names: `examples_too_long` (targets over the target length, skipped), `examples_seen`
(examples that reached the length check), `tracks_failed` (tracks that could not be tokenized,
skipped).
"""

from __future__ import annotations

import collections
import threading

#: The counters both drivers keep; `pipeline_scalars` reports them even while they are 0.
COUNTER_NAMES: tuple[str, ...] = ("examples_too_long", "examples_seen", "tracks_failed")

_COUNTS: collections.Counter = collections.Counter()
_COUNTS_LOCK = threading.Lock()


def count_event(key: str, name: str, n: int = 1) -> None:
    """Adds n to the pipeline counter `name` of task/key `key` (thread-safe)."""
    with _COUNTS_LOCK:
        _COUNTS[(key, name)] += n


def pipeline_counters(key: str | None = None) -> dict[str, int] | dict[tuple[str, str], int]:
    """Counts of dropped data since the last reset.

    With `key` (a task name) returns {name: count} for that task, else {(task, name): count}.
    """
    with _COUNTS_LOCK:
        if key is None:
            return dict(_COUNTS)
        return {name: n for (k, name), n in _COUNTS.items() if k == key}


def pipeline_scalars(prefix: str = "data/") -> dict[str, float]:
    """Every counter summed over tasks/pipelines, as scalars for a run's report:
    {'data/examples_too_long': n, 'data/examples_seen': n, ...} (the trainer writes them with
    its train scalars; see `mt3x.trainer.train(train_scalars=...)`); the `COUNTER_NAMES` are
    always present, 0 until counted."""
    totals: collections.Counter = collections.Counter({name: 0 for name in COUNTER_NAMES})
    with _COUNTS_LOCK:
        for (_, name), n in _COUNTS.items():
            totals[name] += n
    return {f"{prefix}{name}": float(n) for name, n in sorted(totals.items())}


def reset_pipeline_counters() -> None:
    """Sets every pipeline counter back to zero."""
    with _COUNTS_LOCK:
        _COUNTS.clear()

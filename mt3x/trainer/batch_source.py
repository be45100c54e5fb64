"""Training data with a resumable position.

The trainer consumes an iterable of per-host numpy batch dicts. To resume a run at exactly the
batch where it stopped, the data source has a JSON-able state saved in every checkpoint:
`BatchSource.get_state()` / `set_state()`. The default, `ReplayBatchSource`, rebuilds its
iterator from a seed and skips the batches already consumed: exact for any deterministic
pipeline, at the cost of re-reading the skipped batches.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol, runtime_checkable

import numpy as np

from mt3x.trainer.errors import TrainerError

Batch = Mapping[str, np.ndarray]


@runtime_checkable
class BatchSource(Protocol):
    """An iterable of per-host batches whose position can be saved and restored."""

    def __iter__(self) -> Iterator[Batch]:
        """Yields batches from the current position on."""
        ...

    def get_state(self) -> dict[str, Any]:
        """The position after the last batch yielded, as a JSON-able dict."""
        ...

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Moves to a position given by `get_state()` (before the next `__iter__`)."""
        ...


class ReplayBatchSource:
    """Resumes by replaying `make_iterable(seed)` and skipping the consumed batches.

    Args:
      make_iterable: seed (int) -> iterable of batches; must give the same batches for the same
        seed (a deterministic pipeline). A re-iterable (list, dataset object) without a seed is
        accepted via `as_batch_source`.
      seed: passed to `make_iterable`.
    """

    def __init__(self, make_iterable: Callable[[int], Iterable[Batch]], *, seed: int = 0) -> None:
        self._make_iterable = make_iterable
        self.seed = int(seed)
        self.consumed = 0

    def get_state(self) -> dict[str, Any]:
        return {"kind": "replay", "seed": self.seed, "consumed": self.consumed}

    def set_state(self, state: Mapping[str, Any]) -> None:
        if not state:  # no position saved (e.g. an imported checkpoint): start of the data
            return
        if state.get("kind", "replay") != "replay":
            raise TrainerError(
                f"data position {dict(state)} was not written by a ReplayBatchSource")
        try:
            self.seed = int(state["seed"])
            self.consumed = int(state["consumed"])
        except (KeyError, TypeError, ValueError) as err:
            raise TrainerError(f"data position {dict(state)}: missing or malformed field "
                               f"{err}; expected 'seed' and 'consumed' integers") from None

    def __iter__(self) -> Iterator[Batch]:
        iterator = iter(self._make_iterable(self.seed))
        skipped = sum(1 for _ in itertools.islice(iterator, self.consumed))
        if skipped < self.consumed:
            raise TrainerError(
                f"cannot resume the data position: the data ran out after {skipped} batches "
                f"while skipping {self.consumed} already-consumed ones (seed {self.seed})")
        for batch in iterator:
            self.consumed += 1
            yield batch


class _OneShotSource(ReplayBatchSource):
    """A plain iterator (e.g. a generator): usable from the start only."""

    def __init__(self, iterator: Iterator[Batch]) -> None:
        super().__init__(lambda seed: iterator, seed=0)
        self._started = False

    def __iter__(self) -> Iterator[Batch]:
        if self.consumed and not self._started:
            raise TrainerError(
                f"cannot resume at batch {self.consumed}: the training data is a one-shot "
                "iterator; pass a BatchSource, a re-iterable, or a function seed -> iterable")
        self._started = True
        return super().__iter__()


def as_batch_source(data: Any, *, seed: int = 0) -> BatchSource:
    """Wraps training data into a BatchSource.

    Args:
      data: a BatchSource (used as is), a callable seed -> iterable (replayed from `seed`), a
        re-iterable such as a list (replayed), or a one-shot iterator (cannot resume).
      seed: the seed a callable receives.
    """
    if isinstance(data, BatchSource):
        return data
    if callable(data) and not hasattr(data, "__iter__"):
        return ReplayBatchSource(data, seed=seed)
    if hasattr(data, "__iter__"):
        if iter(data) is data:
            return _OneShotSource(data)
        return ReplayBatchSource(lambda _seed: data, seed=seed)
    raise TrainerError(
        f"training data must be a BatchSource, a callable seed -> iterable, or an iterable of "
        f"batch dicts; got {type(data).__name__}")

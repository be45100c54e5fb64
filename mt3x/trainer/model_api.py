"""The Model protocol: what the trainer needs from any model (MT3, the separators, a test toy).

The trainer knows nothing of music; it drives an object with these three methods.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol, runtime_checkable

import jax
import numpy as np

Batch = Mapping[str, np.ndarray | jax.Array]
"""A dict of arrays whose leading axis is the batch (per host as numpy, global on device)."""

PyTree = Any


@runtime_checkable
class Model(Protocol):
    """A model the trainer can initialise, train and evaluate.

    `init` returns flax params whose leaves may be boxed with `nn.with_logical_partitioning`
    (logical axis names such as 'embed', 'mlp'); unboxed leaves are replicated. `loss` and
    `predict` receive the params unboxed. All three are traced under `jax.jit`, so they must be
    pure functions of their arguments.
    """

    def init(self, rng: jax.Array, batch: Batch) -> PyTree:
        """Returns the (possibly boxed) params for a batch of this structure (values unused)."""
        ...

    def loss(self, params: PyTree, batch: Batch,
             rng: jax.Array | None) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Returns (scalar float32 loss, dict of scalar metrics) for one global batch.

        `rng` is a PRNG key during training (dropout etc.) and None in evaluation, where the
        loss must be deterministic.
        """
        ...

    def predict(self, params: PyTree, batch: Batch) -> PyTree:
        """Returns the model's outputs (a pytree of arrays) for one batch."""
        ...

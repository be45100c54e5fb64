"""A toy Model (Flax MLP regression) and deterministic data that drive the trainer in tests.

Batches: {'inputs': f32[B, features], 'targets': f32[B, 1]} with targets = a fixed linear teacher
of the inputs plus a little noise, so the loss can fall well below its starting value.
"""

from __future__ import annotations

from typing import Any, Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


class _MLP(nn.Module):
    hidden: int
    dropout: float

    @nn.compact
    def __call__(self, x: jax.Array, *, deterministic: bool) -> jax.Array:
        part = nn.with_logical_partitioning
        h = nn.Dense(self.hidden, name="wi",
                     kernel_init=part(nn.initializers.lecun_normal(), ("embed", "mlp")),
                     bias_init=part(nn.initializers.zeros, ("mlp",)))(x)
        h = nn.with_logical_constraint(nn.gelu(h), ("batch", "mlp"))
        h = nn.Dropout(self.dropout)(h, deterministic=deterministic)
        h = nn.Dense(x.shape[-1], name="wo",
                     kernel_init=part(nn.initializers.lecun_normal(), ("mlp", "embed")))(h)
        return nn.Dense(1, name="head")(h)  # unannotated: replicated


class ToyRegressor:
    """Implements the trainer's Model protocol (init / loss / predict)."""

    def __init__(self, *, hidden: int = 32, dropout: float = 0.0) -> None:
        self.net = _MLP(hidden=hidden, dropout=dropout)

    def init(self, rng: jax.Array, batch: dict[str, jax.Array]) -> Any:
        return self.net.init(rng, batch["inputs"], deterministic=True)

    def predict(self, params: Any, batch: dict[str, jax.Array]) -> jax.Array:
        return self.net.apply(params, batch["inputs"], deterministic=True)

    def loss(self, params: Any, batch: dict[str, jax.Array], rng: jax.Array | None):
        deterministic = rng is None
        out = self.net.apply(params, batch["inputs"], deterministic=deterministic,
                             rngs=None if deterministic else {"dropout": rng})
        err = out - batch["targets"]
        return jnp.mean(err ** 2), {"mae": jnp.mean(jnp.abs(err))}


FEATURES = 8


def make_batch(rng: np.random.Generator, batch_size: int) -> dict[str, np.ndarray]:
    teacher = np.linspace(-1.0, 1.0, FEATURES, dtype=np.float32)[:, None]
    x = rng.standard_normal((batch_size, FEATURES)).astype(np.float32)
    y = np.tanh(x @ teacher) + 0.01 * rng.standard_normal((batch_size, 1)).astype(np.float32)
    return {"inputs": x, "targets": y.astype(np.float32)}


def batches(seed: int, batch_size: int = 8) -> Iterator[dict[str, np.ndarray]]:
    """An endless deterministic stream of batches for a seed."""
    rng = np.random.default_rng(seed)
    while True:
        yield make_batch(rng, batch_size)


def eval_batches(batch_size: int = 8, count: int = 2) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(12345)
    return [make_batch(rng, batch_size) for _ in range(count)]

"""Shared, compiled-once fixtures for the model tests (tiny config, 8 sequences)."""

import flax.linen as nn
import jax
import numpy as np
import pytest

from mt3x.models import Mt3Model, get_config

BATCH, FRAMES, LENGTH = 8, 12, 10


def _make_batch(depth: int = 512, seed: int = 0) -> dict[str, np.ndarray]:
    """Random log-mel frames and EOS-terminated, zero-padded targets of varied lengths."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(3, 60, size=(BATCH, LENGTH)).astype(np.int32)
    for row, n in enumerate(rng.integers(3, LENGTH, size=BATCH)):
        targets[row, n - 1] = 1  # EOS
        targets[row, n:] = 0
    return {"encoder_input_tokens": rng.normal(size=(BATCH, FRAMES, depth)).astype(np.float32),
            "decoder_input_tokens": np.pad(targets[:, :-1], ((0, 0), (1, 0))),
            "decoder_target_tokens": targets,
            "decoder_loss_weights": (targets > 0).astype(np.float32)}


@pytest.fixture(scope="session")
def make_batch():
    """`make_batch(depth=512, seed=0)` -> a training batch of BATCH sequences."""
    return _make_batch


@pytest.fixture(scope="session")
def tiny():
    """(model, params, batch, jitted loss) for the `tiny` config with dropout 0.1."""
    model = Mt3Model(get_config("tiny"), inputs="log_mel")
    batch = _make_batch()
    params = nn.unbox(jax.jit(model.init)(jax.random.key(0), batch))
    return model, params, batch, jax.jit(model.loss)

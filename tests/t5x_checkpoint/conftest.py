"""Fixtures: t5x checkpoints written the way t5x writes them, independent of mt3x's writer.

The msgpack is produced by `flax.serialization.msgpack_serialize` (the encoder t5x uses) and
zarr folders by TensorStore directly, with the spec dicts t5x stores in the msgpack.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import ml_dtypes
import numpy as np
import pytest
import tensorstore as ts
from flax import serialization

from mt3x.models import Mt3Model, get_config
from mt3x.t5x_checkpoint.mapping import flatten_params, unflatten_params

BATCH, FRAMES, LENGTH = 8, 6, 7
#: Arrays the fixture stores in special ways (dotted names without 'target.').
INLINE = "decoder.decoder_norm.scale"
MULTI_CHUNK = "decoder.logits_dense.kernel"        # [32, 1536] in 4 x 3 chunks of [8, 512]
BF16 = "decoder.token_embedder.embedding"          # stored as bfloat16
MULTI_CHUNK_SHAPE = (8, 512)


def write_zarr_ts(folder: Path, array: np.ndarray, chunks: tuple[int, ...] | None = None,
                  ) -> dict[str, Any]:
    """Writes a gzip zarr v2 array with TensorStore; returns the spec 'metadata'."""
    metadata = {"chunks": list(chunks or array.shape), "compressor": {"id": "gzip"},
                "shape": list(array.shape)}
    spec = {"driver": "zarr", "dtype": array.dtype.name,
            "kvstore": {"driver": "file", "path": str(folder) + "/"}, "metadata": metadata}
    store = ts.open(spec, create=True, open=True).result()
    store.write(array).result()
    return metadata


def write_t5x_fixture(directory: Path, params: Any, *, step: int = 1234,
                      drop: tuple[str, ...] = (), replace: dict[str, np.ndarray] | None = None,
                      driver: str = "file") -> dict[str, np.ndarray]:
    """Writes `params` as a legacy t5x checkpoint; returns the arrays as stored (by name).

    INLINE is an inline msgpack array, MULTI_CHUNK a 12-chunk zarr array, BF16 a bfloat16 zarr
    array, everything else a single-chunk gzip zarr array; Adafactor-like state under
    state.param_states (inline and zarr) and an int32 state.step.
    """
    directory.mkdir(parents=True, exist_ok=True)
    flat = {n: np.asarray(a) for n, a in flatten_params(params).items() if n not in drop}
    flat.update(replace or {})
    stored, target = {}, {}
    for name, array in flat.items():
        dotted = f"target.{name}"
        if name == BF16:
            array = array.astype(ml_dtypes.bfloat16)
        stored[name] = array
        if name == INLINE:
            target[name] = array
            continue
        chunks = MULTI_CHUNK_SHAPE if name == MULTI_CHUNK else None
        metadata = write_zarr_ts(directory / dotted, array, chunks)
        target[name] = {"driver": "zarr", "dtype": array.dtype.name,
                        "kvstore": {"driver": driver, "path": dotted}, "metadata": metadata}
    kernel = "encoder.layers_0.mlp.wo.kernel"
    v_row = np.linspace(0, 1, 64, dtype=np.float32)
    v_meta = write_zarr_ts(directory / f"state.param_states.{kernel}.v_col",
                           np.ones(32, np.float32))
    param_states = unflatten_params({
        f"{kernel}.v_row": v_row,
        f"{kernel}.v_col": {"driver": "zarr", "dtype": "float32",
                            "kvstore": {"driver": driver,
                                        "path": f"state.param_states.{kernel}.v_col"},
                            "metadata": v_meta},
        f"{INLINE}.v": np.full(32, 0.5, np.float32)})
    tree = {"version": 3, "optimizer": {"target": unflatten_params(target),
                                        "state": {"step": np.int32(step),
                                                  "param_states": param_states}}}
    (directory / "checkpoint").write_bytes(serialization.msgpack_serialize(tree))
    return stored


@pytest.fixture(scope="session")
def tiny_setup():
    """(model, float32 numpy params, batch, jitted deterministic loss) of the `tiny` config."""
    model = Mt3Model(get_config("tiny", dropout_rate=0.0), inputs="log_mel")
    rng = np.random.default_rng(0)
    targets = rng.integers(3, 60, size=(BATCH, LENGTH)).astype(np.int32)
    targets[:, -1] = 1
    batch = {"encoder_input_tokens": rng.normal(size=(BATCH, FRAMES, 512)).astype(np.float32),
             "decoder_input_tokens": np.pad(targets[:, :-1], ((0, 0), (1, 0))),
             "decoder_target_tokens": targets,
             "decoder_loss_weights": np.ones((BATCH, LENGTH), np.float32)}
    params = jax.tree.map(np.asarray, nn.unbox(jax.jit(model.init)(jax.random.key(3), batch)))
    loss = jax.jit(lambda p, b: model.loss(p, b, None, deterministic=True)[0])
    return model, params, batch, loss


@pytest.fixture()
def legacy_ckpt(tmp_path, tiny_setup):
    """(directory, stored arrays by name) of a legacy t5x checkpoint of the tiny params."""
    directory = tmp_path / "t5x" / "checkpoint_1234"
    return directory, write_t5x_fixture(directory, tiny_setup[1])

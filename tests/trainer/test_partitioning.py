"""Partitioner: mesh, rules, abstract-first init, optimizer-state shardings, global batches."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

import trainer_toy as toy
from mt3x.errors import Mt3xError
from mt3x.trainer import Partitioner, ShardingError
from mt3x.trainer.train_state import abstract_train_state, create_train_state


def test_mesh_axes_and_param_shardings_follow_the_rules():
    part = Partitioner(num_partitions=2)
    assert dict(part.mesh.shape) == {"data": 4, "model": 2}
    batch = toy.make_batch(np.random.default_rng(0), 8)
    params, shardings = part.init_params(toy.ToyRegressor().init, jax.random.key(0), batch)
    specs = jax.tree.map(lambda a: a.sharding.spec, params)["params"]
    assert specs["wi"]["kernel"] == P(None, "model")      # ('embed', 'mlp')
    assert specs["wo"]["kernel"] == P("model", None)      # ('mlp', 'embed')
    assert specs["head"]["kernel"] == P()                 # unannotated: replicated
    # The jitted init gives the same values as an unsharded init.
    reference = nn.unbox(toy.ToyRegressor().init(jax.random.key(0), batch))
    np.testing.assert_array_equal(np.asarray(params["params"]["wi"]["kernel"]),
                                  np.asarray(reference["params"]["wi"]["kernel"]))
    # Each device holds half of wi's 'mlp' axis (model axis of size 2).
    shard = params["params"]["wi"]["kernel"].addressable_shards[0]
    assert shard.data.shape == (toy.FEATURES, 16)


def test_unknown_logical_axis_name_is_a_clear_error():
    class Odd(nn.Module):
        @nn.compact
        def __call__(self, x):
            init = nn.with_logical_partitioning(nn.initializers.ones, ("embed", "widgets"))
            return x @ self.param("w", init, (x.shape[-1], 4))

    part = Partitioner()
    with pytest.raises(ShardingError, match=r"\['widgets'\]"):
        part.init_params(lambda rng, b: Odd().init(rng, b["x"]), jax.random.key(0),
                         {"x": np.zeros((8, 3), np.float32)})


def test_device_count_not_dividing_batch_or_partitions_raises():
    with pytest.raises(ShardingError, match="num_partitions=3"):
        Partitioner(num_partitions=3)
    part = Partitioner()  # 8 data shards
    with pytest.raises(Mt3xError, match="batch size 6 .* 8 data-parallel shards"):
        part.make_global_batch({"x": np.zeros((6, 2), np.float32)})
    with pytest.raises(ShardingError, match="leading"):
        part.make_global_batch({"x": np.zeros((8, 2)), "y": np.zeros((4, 2))})


def test_global_batch_is_split_over_data_axis():
    part = Partitioner(num_partitions=2)
    x = np.arange(16 * 3, dtype=np.float32).reshape(16, 3)
    batch = part.make_global_batch({"x": x})
    np.testing.assert_array_equal(np.asarray(batch["x"]), x)
    assert batch["x"].sharding.spec == P("data")
    assert {s.data.shape for s in batch["x"].addressable_shards} == {(4, 3)}


class _Wide(nn.Module):
    """One factored-size kernel ('embed', 'mlp') so Adafactor keeps row/column statistics."""

    @nn.compact
    def __call__(self, x):
        init = nn.with_logical_partitioning(nn.initializers.lecun_normal(), ("embed", "mlp"))
        return x @ self.param("kernel", init, (128, 256))


class _WideModel:
    def init(self, rng, batch):
        return _Wide().init(rng, batch["x"])

    def loss(self, params, batch, rng):
        return jnp.mean(_Wide().apply(params, batch["x"]) ** 2), {}

    def predict(self, params, batch):
        return _Wide().apply(params, batch["x"])


def test_factored_adafactor_state_follows_param_sharding():
    part = Partitioner(num_partitions=2)
    batch = {"x": np.ones((8, 128), np.float32)}
    tx = optax.adafactor(1e-3, min_dim_size_to_factor=128)
    abstract = abstract_train_state(model=_WideModel(), optimizer=tx, partitioner=part, batch=batch)
    state = create_train_state(model=_WideModel(), optimizer=tx, partitioner=part, batch=batch,
                               seed=0)
    factored = [leaf for leaf in jax.tree.leaves(state.opt_state) if leaf.ndim == 1
                and leaf.shape[0] in (128, 256)]
    by_shape = {leaf.shape: leaf.sharding.spec for leaf in factored}
    assert by_shape[(128,)] == P(None)       # row statistic: the 'embed' axis (replicated)
    assert by_shape[(256,)] == P("model")    # column statistic: the 'mlp' axis
    # The created state lives exactly on the abstract state's shardings.
    for real, want in zip(jax.tree.leaves(state), jax.tree.leaves(abstract)):
        assert real.shape == want.shape
        assert real.sharding.is_equivalent_to(want.sharding, real.ndim)

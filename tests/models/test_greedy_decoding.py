"""Greedy decoding: cached == t5x-like == uncached reference, token for token."""

import flax.linen as nn
import jax
import numpy as np
import pytest

from mt3x.models import Mt3Model, get_config, greedy_decode
from mt3x.models.decoding import decoded_lengths

MAX_LEN = 32


@pytest.fixture(scope="module")
def setup():
    # Random tiny model; a large logit scale makes argmax decisive and outputs varied.
    model = Mt3Model(get_config("tiny", dropout_rate=0.0, num_encoder_layers=2,
                                            num_decoder_layers=2), inputs="log_mel",
                     max_decode_length=MAX_LEN)
    batch = {"encoder_input_tokens":
             np.random.default_rng(0).normal(size=(3, 16, 512)).astype(np.float32)}
    params = nn.unbox(jax.jit(model.init)(jax.random.key(0), batch))
    params["decoder"]["logits_dense"]["kernel"] = params["decoder"]["logits_dense"]["kernel"] * 20

    def decode_with_steps(params, batch, decoder):
        return greedy_decode(model.network, params, model.encode(params, batch), MAX_LEN,
                             decoder=decoder, return_num_steps=True)

    decode = jax.jit(decode_with_steps, static_argnames="decoder")
    results = {name: decode(params, batch, decoder=name) for name in ("self_cache", "uncached")}
    results["cached"] = (jax.jit(model.predict)(params, batch), None)  # the Model's default
    return model, params, batch, decode, results


def test_cached_decoding_equals_uncached_token_for_token(setup):
    *_, results = setup
    cached = np.asarray(results["cached"][0])
    steps = int(results["uncached"][1])
    for name in ("self_cache", "uncached"):
        np.testing.assert_array_equal(cached, np.asarray(results[name][0]), err_msg=name)
    assert int(results["self_cache"][1]) == steps
    # Non-trivial outputs: many distinct ids; one row ends with EOS, then PAD only.
    assert cached.shape == (3, MAX_LEN) and cached.dtype == np.int32
    assert len(np.unique(cached)) >= 8
    lengths = np.asarray(decoded_lengths(cached))
    ended = [row for row in range(3) if lengths[row] < MAX_LEN]
    assert ended and any(lengths[row] == MAX_LEN for row in range(3))
    for row in ended:
        assert cached[row, lengths[row] - 1] == 1
        assert np.all(cached[row, lengths[row]:] == 0)
    assert int(steps) == MAX_LEN  # some row never emitted EOS


def test_decoding_stops_when_every_sequence_has_ended(setup):
    _, params, batch, decode, results = setup
    cached = np.asarray(results["cached"][0])
    row = int(np.argmin(np.asarray(decoded_lengths(cached))))
    one = {"encoder_input_tokens": batch["encoder_input_tokens"][row:row + 1]}
    tokens, steps = decode(params, one, decoder="cached")
    np.testing.assert_array_equal(np.asarray(tokens)[0], cached[row])
    assert int(steps) == int(decoded_lengths(cached)[row]) < MAX_LEN


def test_teacher_forced_logits_reproduce_greedy_tokens(setup):
    model, params, batch, _, results = setup
    tokens = np.asarray(results["cached"][0])
    lengths = np.asarray(decoded_lengths(tokens))
    targets = tokens
    inputs = np.pad(tokens[:, :-1], ((0, 0), (1, 0)))
    logits = jax.jit(model.logits)(params, {**batch, "decoder_input_tokens": inputs,
                                            "decoder_target_tokens": targets})
    argmax = np.asarray(logits).argmax(-1)
    for row in range(3):
        np.testing.assert_array_equal(argmax[row, :lengths[row]], tokens[row, :lengths[row]])


def test_sharded_predict_matches_one_device(setup):
    # In CI (no longer marked slow): past the module's shared setup it costs ~5 s on 2 cores.
    from jax.sharding import AxisType, NamedSharding
    from jax.sharding import PartitionSpec as P

    model, params, batch, _, results = setup
    rules = (("batch", "data"), ("vocab", "model"), ("mlp", "model"), ("joined_kv", "model"),
             ("heads", "model"), ("embed", None), ("kv", None), ("length", None))
    sharded_model = Mt3Model(model.config, inputs="log_mel", max_decode_length=MAX_LEN,
                             logical_axis_rules=rules)
    mesh = jax.make_mesh((2, 2), ("data", "model"), axis_types=(AxisType.Auto,) * 2,
                         devices=jax.devices()[:4])
    boxed = jax.eval_shape(sharded_model.init, jax.random.key(0), batch)
    shardings = nn.unbox(nn.logical_to_mesh_sharding(nn.get_partition_spec(boxed), mesh, rules))
    # The parameters really are split over 'model' (else the mesh would test data parallelism
    # only).
    assert sum("model" in tuple(s.spec) for s in jax.tree.leaves(shardings)) >= 10
    even = {"encoder_input_tokens": np.concatenate([batch["encoder_input_tokens"]] * 2)[:4]}
    with jax.set_mesh(mesh):
        tokens = jax.jit(sharded_model.predict)(
            jax.device_put(params, shardings),
            jax.device_put(even, NamedSharding(mesh, P("data"))))
    assert tokens.sharding.spec == P("data")
    np.testing.assert_array_equal(np.asarray(tokens)[:3], np.asarray(results["cached"][0]))


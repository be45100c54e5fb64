"""The MT3 Model object: loss, training signal, dtypes, sharding and batch checks."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import mt3x.audio
from mt3x.errors import Mt3xError
from mt3x.models import BatchError, Mt3Model, get_config
from mt3x.models.losses import weighted_loss_and_metrics

B, FRAMES = 8, 12  # as in conftest.make_batch


def test_loss_is_t5x_loss_of_the_logits(tiny):
    model, params, batch, loss_fn = tiny
    loss, metrics = loss_fn(params, batch, None)
    logits = jax.jit(model.logits)(params, batch)
    expected, _ = weighted_loss_and_metrics(logits, batch["decoder_target_tokens"],
                                            batch["decoder_loss_weights"], z_loss=1e-4)
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    assert float(metrics["num_tokens"]) == batch["decoder_loss_weights"].sum()
    # Summed (MT3), so about num_tokens * log(vocab) for a random model.
    assert 0.5 < float(loss) / (float(metrics["num_tokens"]) * np.log(1536)) < 2.0


def test_dropout_follows_rng(tiny):
    _, params, batch, loss_fn = tiny
    eval_loss = float(loss_fn(params, batch, None)[0])
    a = float(loss_fn(params, batch, jax.random.key(1))[0])
    b = float(loss_fn(params, batch, jax.random.key(2))[0])
    assert a != eval_loss and a != b
    assert float(loss_fn(params, batch, jax.random.key(1))[0]) == a


def test_a_few_sgd_steps_reduce_the_loss(make_batch):
    model = Mt3Model(get_config("tiny", dropout_rate=0.0), inputs="log_mel",
                     loss_normalization="mean")
    batch = make_batch(seed=1)
    params = nn.unbox(jax.jit(model.init)(jax.random.key(0), batch))

    @jax.jit
    def step(params):
        (loss, _), grads = jax.value_and_grad(model.loss, has_aux=True)(params, batch, None)
        return jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads), loss

    losses = []
    for _ in range(8):
        params, loss = step(params)
        losses.append(float(loss))
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.8 * losses[0], losses


def test_bfloat16_activations(tiny):
    _, params, batch, loss_fn = tiny
    model16 = Mt3Model(get_config("tiny", dtype="bfloat16"), inputs="log_mel",
                       max_decode_length=4)
    encoded = jax.eval_shape(model16.encode, params, batch)
    assert encoded.dtype == jnp.bfloat16
    loss16, _ = jax.jit(model16.loss)(params, batch, None)
    loss32, _ = loss_fn(params, batch, None)
    assert np.isfinite(float(loss16))
    assert float(loss16) == pytest.approx(float(loss32), rel=0.02)
    tokens = jax.jit(model16.predict)(params, batch)
    assert tokens.shape == (B, 4) and tokens.dtype == jnp.int32
    boxed = jax.eval_shape(model16.init, jax.random.key(0), batch)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(nn.unbox(boxed)))


def test_sharded_init_and_loss_match_one_device(tiny):
    single, ref_params, batch, loss_fn = tiny  # initialised with key(0) on one device
    ref_loss, ref_metrics = loss_fn(ref_params, batch, jax.random.key(1))  # with dropout
    rules = (("batch", "data"), ("vocab", "model"), ("mlp", "model"), ("joined_kv", "model"),
             ("heads", "model"), ("embed", None), ("kv", None), ("length", None))
    mesh = jax.make_mesh((4, 2), ("data", "model"), axis_types=(AxisType.Auto,) * 2)
    model = Mt3Model(single.config, inputs="log_mel", logical_axis_rules=rules)
    abstract = jax.eval_shape(model.init, jax.random.key(0), batch)
    shardings = nn.logical_to_mesh_sharding(nn.get_partition_spec(abstract), mesh, rules)
    with jax.set_mesh(mesh):
        params = nn.unbox(jax.jit(model.init, out_shardings=shardings)(jax.random.key(0), batch))
        sharded_batch = jax.device_put(batch, NamedSharding(mesh, P("data")))
        loss, metrics = jax.jit(model.loss)(params, sharded_batch, jax.random.key(1))
    kernel = params["decoder"]["logits_dense"]["kernel"]
    assert kernel.sharding.spec == P(None, "model") and len(kernel.sharding.device_set) == 8
    jax.tree_util.tree_map(np.testing.assert_array_equal, params, ref_params)
    assert float(loss) == pytest.approx(float(ref_loss), rel=1e-5)
    assert float(metrics["accuracy"]) == pytest.approx(float(ref_metrics["accuracy"]))


def test_audio_inputs_go_through_the_log_mel_front_end(tiny):
    """Audio mode = spectrogram mode fed with mt3x.audio.mt3_log_mel of the same frames."""
    _, params, batch, _ = tiny
    frames = 0.1 * np.random.default_rng(3).normal(size=(B, FRAMES, 128)).astype(np.float32)
    audio_model = Mt3Model(get_config("tiny"), inputs="frames")
    spec_model = Mt3Model(get_config("tiny"), inputs="log_mel")
    audio_batch = {**batch, "encoder_input_tokens": frames}
    shapes = jax.eval_shape(audio_model.init, jax.random.key(0), audio_batch)
    assert shapes["encoder"]["continuous_inputs_projection"]["kernel"].value.shape == (512, 32)
    audio_params = nn.unbox(audio_model.init(jax.random.key(0), audio_batch))
    log_mel = np.asarray(jax.jit(mt3x.audio.mt3_log_mel)(frames))
    assert log_mel.shape == (B, FRAMES, 512)
    spec_batch = {**batch, "encoder_input_tokens": log_mel}
    audio_loss, _ = jax.jit(audio_model.loss)(audio_params, audio_batch, None)
    spec_loss, _ = jax.jit(spec_model.loss)(audio_params, spec_batch, None)
    assert float(audio_loss) == pytest.approx(float(spec_loss), rel=1e-6)


def test_short_segments_get_mt3s_log_mel_with_zero_rows(tiny):
    """With encoder_input_lengths a short (last) segment is encoded as MT3 encodes it: the log-mel
    of its own samples, then 0.0 rows (not the log-mel of the zero padding)."""
    _, params, batch, _ = tiny
    frames = 0.1 * np.random.default_rng(4).normal(size=(B, FRAMES, 128)).astype(np.float32)
    lengths = np.full(B, FRAMES, np.int32)
    lengths[1], lengths[2] = 5, 1
    for i in (1, 2):
        frames[i, lengths[i]:] = 0.0                    # a zero-padded last segment
    audio_model = Mt3Model(get_config("tiny"), inputs="frames")
    spec_model = Mt3Model(get_config("tiny"), inputs="log_mel")
    features = np.asarray(jax.jit(audio_model.encoder_features)(frames, lengths))
    log_mel = jax.jit(mt3x.audio.mt3_log_mel)
    for i in range(B):
        own = np.asarray(log_mel(frames[i:i + 1, :lengths[i]]))[0]   # its samples only
        np.testing.assert_allclose(features[i, :lengths[i]], own, atol=1e-5)
        assert not features[i, lengths[i]:].any()
    assert np.asarray(log_mel(frames[1:2]))[0, 5:].min() < -5     # what padding alone gives
    audio_params = nn.unbox(audio_model.init(jax.random.key(0), {**batch,
                                                                 "encoder_input_tokens": frames}))
    with_lengths = {**batch, "encoder_input_tokens": frames, "encoder_input_lengths": lengths}
    encoded = np.asarray(jax.jit(audio_model.encode)(audio_params, with_lengths))
    spec_encoded = np.asarray(jax.jit(spec_model.encode)(
        audio_params, {**batch, "encoder_input_tokens": features}))
    np.testing.assert_allclose(encoded, spec_encoded, atol=1e-5)
    without = np.asarray(jax.jit(audio_model.encode)(
        audio_params, {**batch, "encoder_input_tokens": frames}))
    assert np.abs(without[1] - encoded[1]).max() > 1e-3 and np.allclose(without[0], encoded[0])
    with pytest.raises(BatchError, match="encoder_input_lengths"):
        audio_model.encode(audio_params, {**with_lengths, "encoder_input_lengths": lengths[:3]})


def test_bad_batches_name_the_field(tiny):
    model, params, batch, _ = tiny
    with pytest.raises(BatchError, match="decoder_loss_weights"):
        model.loss(params, {k: v for k, v in batch.items() if k != "decoder_loss_weights"})
    with pytest.raises(BatchError, match=r"encoder_input_tokens.*128"):
        Mt3Model(get_config("tiny"), inputs="frames").predict(params, batch)
    with pytest.raises(BatchError, match="decoder_target_tokens"):
        model.loss(params, {**batch, "decoder_target_tokens": batch["decoder_target_tokens"][:2]})


def test_input_modes_have_one_name_set_and_old_checkpoint_names_still_load():
    """'frames' / 'log_mel' everywhere; mt3x_model.json files saved with 'audio' /
    'spectrogram' still build the same model."""
    assert mt3x.audio.INPUT_MODES == ("frames", "log_mel")
    assert Mt3Model(get_config("tiny"), inputs="audio").inputs == "frames"
    assert Mt3Model(get_config("tiny"), inputs="spectrogram").inputs == "log_mel"
    assert Mt3Model(get_config("tiny")).inputs == "frames"
    with pytest.raises(Mt3xError, match=r"Mt3Model.inputs: expected one of \('frames', 'log_mel'\)"):
        Mt3Model(get_config("tiny"), inputs="mel")

"""mt3x's opt-in encoder-input options (`T5Config.encoder_input_norm`,
`encoder_position_scale`): off by default (MT3's encoder input, MT3's parameter tree), and when
on they change the input of the first encoder layer exactly as documented."""

import flax.linen as nn
import jax
import numpy as np
import pytest

from mt3x.models import ModelConfigError, T5Config, Transformer, get_config
from mt3x.models.layers import sinusoid_position_table
from mt3x.models.network import EncoderLayer

FRAMES = 12


def _first_layer_input(config: T5Config, features: np.ndarray):
    """(params, float32[batch, frames, emb] input of encoder layers_0) for `features`."""
    net = Transformer(config)
    params = net.init(jax.random.key(0), features, np.zeros((1, 3), np.int32),
                      np.zeros((1, 3), np.int32), enable_dropout=False)["params"]
    seen = []

    def record(next_fun, args, kwargs, context):
        if (isinstance(context.module, EncoderLayer) and context.module.name == "layers_0"
                and context.method_name == "__call__"):
            seen.append(np.asarray(args[0]))
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        net.apply({"params": params}, features, method=Transformer.encode)
    return nn.unbox(params), seen[0]


def _features(scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (scale * rng.normal(size=(2, FRAMES, 512))).astype(np.float32)


def test_default_is_mt3():
    config = get_config("tiny")
    assert config.encoder_input_norm == "none" and config.encoder_position_scale == 1.0
    for name in ("mt3", "ismir2021", "base", "small_cpu"):
        assert get_config(name).encoder_input_norm == "none"
        assert get_config(name).encoder_position_scale == 1.0
    params, x = _first_layer_input(config, _features())
    assert "input_norm" not in params["encoder"]
    kernel = np.asarray(params["encoder"]["continuous_inputs_projection"]["kernel"])
    expected = (_features() @ kernel + sinusoid_position_table(FRAMES, config.emb_dim))
    np.testing.assert_allclose(x, expected, rtol=1e-5, atol=1e-5)


def test_rms_input_norm_gives_unit_rms_audio_part():
    config = get_config("tiny", encoder_input_norm="rms")
    params, x = _first_layer_input(config, _features())
    assert params["encoder"]["input_norm"]["scale"].shape == (config.emb_dim,)
    audio = x - sinusoid_position_table(FRAMES, config.emb_dim)
    np.testing.assert_allclose(np.sqrt((audio ** 2).mean(-1)), 1.0, rtol=1e-4)
    # Loudness-invariant: 10x the log-mel gives the same encoder input.
    _, louder = _first_layer_input(config, _features(10.0))
    np.testing.assert_allclose(louder, x, rtol=1e-4, atol=1e-5)


def test_position_scale_multiplies_encoder_sinusoids_only():
    config = get_config("tiny", encoder_position_scale=2.5)
    _, x = _first_layer_input(config, np.zeros((1, FRAMES, 512), np.float32))
    np.testing.assert_allclose(x[0], 2.5 * sinusoid_position_table(FRAMES, config.emb_dim),
                               rtol=1e-6)


def test_invalid_values_are_refused():
    with pytest.raises(ModelConfigError, match="encoder_input_norm"):
        get_config("tiny", encoder_input_norm="layer")
    with pytest.raises(ModelConfigError, match="encoder_position_scale"):
        get_config("tiny", encoder_position_scale=0.0)

"""Attention implementations: `jax.nn.dot_product_attention` ('xla') == the reference einsum."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mt3x.models import ModelConfigError, Transformer, get_config, greedy_decode
from mt3x.models.layers import (AttentionMask, attention_mask, causal_mask,
                                fused_dot_product_attention, resolve_attention_impl)
from mt3x.models.losses import weighted_loss_and_metrics
from mt3x.models.network import init_decoder_cache

DECODE_LEN = 12


def _config(impl: str, dtype: str = "float32"):
    return get_config("tiny", dropout_rate=0.0, num_encoder_layers=2, num_decoder_layers=2,
                      attention_impl=impl, dtype=dtype)


@pytest.fixture(scope="module")
def setup(make_batch):
    batch = make_batch()  # padded targets of varied lengths
    ref = Transformer(_config("reference"))
    params = nn.unbox(jax.jit(lambda rng: ref.init(
        rng, batch["encoder_input_tokens"], batch["decoder_input_tokens"],
        batch["decoder_target_tokens"], enable_dropout=False))(jax.random.key(0)))["params"]
    # Larger logits make the greedy choice decisive, so equal tokens are a real check.
    params["decoder"]["logits_dense"]["kernel"] = params["decoder"]["logits_dense"]["kernel"] * 20
    return batch, params


def _loss_and_grads(impl: str, dtype: str, params, batch):
    module = Transformer(_config(impl, dtype))

    def loss_fn(params):
        logits = module.apply({"params": params}, batch["encoder_input_tokens"],
                              batch["decoder_input_tokens"], batch["decoder_target_tokens"],
                              enable_dropout=False)
        loss, _ = weighted_loss_and_metrics(logits, batch["decoder_target_tokens"],
                                            batch["decoder_loss_weights"], z_loss=1e-4)
        return loss, logits

    (loss, logits), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params)
    return loss, logits, grads


def test_xla_matches_reference_logits_and_gradients(setup):
    batch, params = setup
    loss_ref, logits_ref, grads_ref = _loss_and_grads("reference", "float32", params, batch)
    loss_xla, logits_xla, grads_xla = _loss_and_grads("xla", "float32", params, batch)
    assert logits_xla.dtype == jnp.float32
    valid = batch["decoder_target_tokens"] > 0
    assert 0 < valid.sum() < valid.size  # the batch has padding, so the masks matter
    np.testing.assert_allclose(np.asarray(logits_xla)[valid], np.asarray(logits_ref)[valid],
                               rtol=1e-5, atol=1e-5 * float(np.abs(logits_ref).max()))
    assert float(loss_xla) == pytest.approx(float(loss_ref), rel=1e-5)
    flat_ref = jax.tree_util.tree_leaves_with_path(grads_ref)
    flat_xla = jax.tree_util.tree_leaves(grads_xla)
    for (path, g_ref), g_xla in zip(flat_ref, flat_xla):
        scale = float(np.abs(g_ref).max())
        assert scale > 0, path
        np.testing.assert_allclose(np.asarray(g_xla), np.asarray(g_ref), rtol=1e-5,
                                   atol=1e-5 * scale, err_msg=jax.tree_util.keystr(path))


def test_xla_matches_reference_in_the_decoding_cache_path(setup):
    batch, params = setup
    features = batch["encoder_input_tokens"]
    outputs = {}
    for impl in ("reference", "xla"):
        module = Transformer(_config(impl))

        def run(params, features, module=module):
            encoded = module.apply({"params": params}, features, method=Transformer.encode)
            cross_kv = module.apply({"params": params}, encoded,
                                    method=Transformer.cross_key_values)
            cache = init_decoder_cache(module.config, features.shape[0], DECODE_LEN)
            step_logits = []
            tokens = jnp.full((features.shape[0],), 5, jnp.int32)
            for position in range(3):  # three cached steps: the cache mask grows
                logits, cache = module.apply({"params": params}, tokens, jnp.int32(position),
                                             cache, cross_kv, method=Transformer.decode_step)
                step_logits.append(logits)
                tokens = jnp.argmax(logits, -1).astype(jnp.int32)
            decoded = greedy_decode(module, params, encoded, DECODE_LEN, eos_id=-1)
            return jnp.stack(step_logits), decoded

        outputs[impl] = jax.jit(run)(params, features)
    logits_ref, tokens_ref = outputs["reference"]
    logits_xla, tokens_xla = outputs["xla"]
    np.testing.assert_allclose(np.asarray(logits_xla), np.asarray(logits_ref), rtol=1e-5,
                               atol=1e-5 * float(np.abs(logits_ref).max()))
    assert len(np.unique(np.asarray(tokens_ref))) > 2  # varied output, not one repeated id
    np.testing.assert_array_equal(np.asarray(tokens_xla), np.asarray(tokens_ref))


def test_bfloat16_xla_is_close_to_float32_and_logits_stay_float32(setup):
    batch, params = setup
    loss32, _, _ = _loss_and_grads("reference", "float32", params, batch)
    loss16, logits16, grads16 = _loss_and_grads("xla", "bfloat16", params, batch)
    assert logits16.dtype == jnp.float32
    assert all(g.dtype == jnp.float32 for g in jax.tree_util.tree_leaves(grads16))
    assert np.isfinite(float(loss16))
    assert float(loss16) == pytest.approx(float(loss32), rel=0.02)


def test_attention_mask_dense_equals_mt3_masks():
    rng = np.random.default_rng(1)
    valid = jnp.asarray(rng.random((3, 7)) > 0.3)
    mask = AttentionMask(query_valid=valid, key_valid=valid, causal=True).dense(7)
    expected = causal_mask(7) & attention_mask(valid, valid)
    np.testing.assert_array_equal(np.broadcast_to(mask, expected.shape), expected)
    cross = AttentionMask(query_valid=valid).dense(7)
    expected = attention_mask(valid, jnp.ones((3, 5), bool))
    np.testing.assert_array_equal(np.broadcast_to(cross, expected.shape), expected)
    assert AttentionMask().dense(7) is None


def test_fused_attention_is_unscaled_and_masks_keys():
    rng = np.random.default_rng(2)
    q, k, v = (jnp.asarray(rng.normal(size=(2, 4, 3, 8)), jnp.float32) for _ in range(3))
    key_valid = jnp.asarray([[1, 1, 0, 0], [1, 1, 1, 1]], bool)
    out = fused_dot_product_attention(q, k, v, AttentionMask(key_valid=key_valid),
                                      implementation="xla")
    logits = np.einsum("bqhd,bkhd->bhqk", q, k)  # no 1/sqrt(d): T5 folds it into the kernel
    logits = np.where(np.asarray(key_valid)[:, None, None, :], logits, -np.inf)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    np.testing.assert_allclose(out, np.einsum("bhqk,bkhd->bqhd", weights, v), rtol=1e-5,
                               atol=1e-6)
    heads_first = fused_dot_product_attention(q, jnp.swapaxes(k, 1, 2), jnp.swapaxes(v, 1, 2),
                                              AttentionMask(key_valid=key_valid),
                                              implementation="xla", kv_heads_first=True)
    np.testing.assert_allclose(heads_first, out, rtol=1e-6, atol=1e-6)


def test_attention_impl_config_and_resolution():
    assert get_config("mt3").attention_impl == "reference"
    with pytest.raises(ModelConfigError, match="attention_impl"):
        get_config("tiny", attention_impl="flash")
    with pytest.raises(ModelConfigError, match="bfloat16"):
        get_config("tiny", attention_impl="cudnn")
    assert get_config("tiny", attention_impl="cudnn", dtype="bfloat16").attention_impl == "cudnn"
    # No GPU in the tests: 'auto' is the reference path, whatever the dtype.
    assert resolve_attention_impl("auto", jnp.bfloat16) == "reference"
    assert resolve_attention_impl("auto", jnp.float32) == "reference"
    assert resolve_attention_impl("xla", jnp.float32) == "xla"

"""MT3's parameter tree: exact paths, shapes, count and logical-axis annotations."""

import math
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from mt3x.models import LOGICAL_AXIS_NAMES, ModelConfigError, Mt3Model, T5Config, get_config
from mt3x.models.layers import MultiHeadAttention, RMSNorm, TokenEmbed


def _abstract_params(config: T5Config):
    model = Mt3Model(config, inputs="log_mel")
    batch = {"encoder_input_tokens": jax.ShapeDtypeStruct((1, 256, 512), jnp.float32),
             "decoder_input_tokens": jax.ShapeDtypeStruct((1, 1024), jnp.int32)}
    return jax.eval_shape(model.init, jax.random.key(0), batch)


def _flat(tree):
    leaves = jax.tree_util.tree_leaves_with_path(
        tree, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
    return {"/".join(k.key for k in path): leaf for path, leaf in leaves}


def _expected_mt3_tree(vocab: int) -> dict[str, tuple[tuple[int, ...], tuple[str, ...]]]:
    """MT3_SPEC.md's tree, written out independently of the code."""
    emb, joined, mlp = 512, 384, 1024
    tree = {"encoder/continuous_inputs_projection/kernel": ((512, emb), ("vocab", "embed")),
            "encoder/encoder_norm/scale": ((emb,), ("embed",)),
            "decoder/decoder_norm/scale": ((emb,), ("embed",)),
            "decoder/token_embedder/embedding": ((vocab, emb), ("vocab", "embed")),
            "decoder/logits_dense/kernel": ((emb, vocab), ("embed", "vocab"))}
    attn = {f"{n}/kernel": ((emb, joined), ("embed", "joined_kv"))
            for n in ("query", "key", "value")}
    attn["out/kernel"] = ((joined, emb), ("joined_kv", "embed"))
    mlp_tree = {"mlp/wi_0/kernel": ((emb, mlp), ("embed", "mlp")),
                "mlp/wi_1/kernel": ((emb, mlp), ("embed", "mlp")),
                "mlp/wo/kernel": ((mlp, emb), ("mlp", "embed"))}
    for i in range(8):
        enc = f"encoder/layers_{i}/"
        dec = f"decoder/layers_{i}/"
        for norm in ("pre_attention_layer_norm", "pre_mlp_layer_norm"):
            tree[enc + norm + "/scale"] = ((emb,), ("embed",))
        for norm in ("pre_self_attention_layer_norm", "pre_cross_attention_layer_norm",
                     "pre_mlp_layer_norm"):
            tree[dec + norm + "/scale"] = ((emb,), ("embed",))
        for k, v in attn.items():
            tree[enc + "attention/" + k] = v
            tree[dec + "self_attention/" + k] = v
            tree[dec + "encoder_decoder_attention/" + k] = v
        for k, v in mlp_tree.items():
            tree[enc + k] = v
            tree[dec + k] = v
    return tree


@pytest.mark.parametrize("name,vocab,count", [("mt3", 1536, 45_896_704),
                                              ("ismir2021", 1664, 46_027_776)])
def test_mt3_tree_paths_shapes_axes_and_count(name, vocab, count):
    flat = _flat(_abstract_params(get_config(name)))
    expected = _expected_mt3_tree(vocab)
    assert sorted(flat) == sorted(expected)
    for path, leaf in flat.items():
        assert isinstance(leaf, nn.LogicallyPartitioned), path
        assert (leaf.value.shape, tuple(leaf.names)) == expected[path], path
        assert leaf.value.dtype == jnp.float32, path
    assert sum(math.prod(leaf.value.shape) for leaf in flat.values()) == count


def test_every_parameter_has_a_logical_partition_spec():
    boxed = _abstract_params(get_config("tiny"))
    specs = jax.tree_util.tree_leaves(nn.get_partition_spec(boxed),
                                      is_leaf=lambda x: isinstance(x, P))
    assert len(specs) == len(_flat(boxed)) == 2 + (2 + 4 + 3) + 3 + (3 + 8 + 3)
    for spec in specs:
        assert isinstance(spec, P) and len(spec) >= 1
        assert all(axis in LOGICAL_AXIS_NAMES for axis in spec)


def test_base_and_small_configs_have_expected_sizes():
    base = _flat(_abstract_params(get_config("base")))
    assert base["decoder/layers_11/mlp/wi_0/kernel"].value.shape == (768, 2048)
    assert base["encoder/layers_11/attention/query/kernel"].value.shape == (768, 768)
    small = _flat(_abstract_params(get_config("small_cpu")))
    assert not any(re.search(r"layers_2/", path) for path in small)
    assert small["decoder/logits_dense/kernel"].value.shape == (256, 1536)


def test_initialisers_fold_attention_scaling_into_the_query():
    x = jnp.zeros((1, 2, 256))
    attn = MultiHeadAttention(num_heads=4, head_dim=64, out_features=256)
    params = nn.unbox(attn.init(jax.random.key(3), x, x, deterministic=True))["params"]
    # variance_scaling(1, fan_in, normal): std 1/sqrt(256); the query's also / sqrt(64).
    assert float(jnp.std(params["key"]["kernel"])) == pytest.approx(1 / 16, rel=0.03)
    assert float(jnp.std(params["query"]["kernel"])) == pytest.approx(1 / 16 / 8, rel=0.03)
    assert float(jnp.std(params["out"]["kernel"])) == pytest.approx(1 / 16, rel=0.03)
    embed = TokenEmbed(1536, 64).init(jax.random.key(4), jnp.zeros((1,), jnp.int32))
    assert float(jnp.std(nn.unbox(embed)["params"]["embedding"])) == pytest.approx(1.0, rel=0.03)
    norm = RMSNorm().init(jax.random.key(5), x)
    np.testing.assert_array_equal(nn.unbox(norm)["params"]["scale"], np.ones(256, np.float32))


def test_config_errors_name_the_field():
    with pytest.raises(ModelConfigError, match="unknown"):
        get_config("mt4")
    with pytest.raises(ModelConfigError, match="emb_dims"):
        get_config("mt3", emb_dims=3)
    with pytest.raises(ModelConfigError, match="dtype"):
        get_config("mt3", dtype="float16")
    assert get_config("mt3", dtype="bfloat16").activation_dtype == jnp.bfloat16

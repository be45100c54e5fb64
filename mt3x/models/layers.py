"""Building blocks of MT3's T5.1.1 network: math as pure functions, parameters in small modules.

Numerics follow magenta/mt3 `layers.py` (the facts, not the code): bias-free dense layers whose
kernels are stored flattened to 2-D, RMSNorm in float32 with eps 1e-6, no 1/sqrt(head_dim) at run
time (it is folded into the query initialiser), masks turned into a -1e10 additive bias, dropout
broadcast along the length axis, fixed sinusoid position tables with denominator d/2 - 1.

Attention runs either through the reference einsum path above (`dot_product_attention`, the
default and the one that matches MT3 bit for bit in float32) or through
`jax.nn.dot_product_attention` ('xla', or cuDNN's fused kernel with 'cudnn'); see
`ATTENTION_IMPLS` and `AttentionMask`.

Every parameter carries t5x logical axis names (`nn.with_logical_partitioning`), and activations
carry `nn.with_logical_constraint` annotations (a no-op unless logical-axis rules are active).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Initializer = Callable[..., Array]

#: Additive attention bias of a masked-out key (MT3 uses -1e10, in the activation dtype).
MASKED_BIAS = -1e10
#: Attention implementations (`T5Config.attention_impl`): 'reference' = the einsum path below
#: (MT3's numerics), 'xla' / 'cudnn' = `jax.nn.dot_product_attention` with that implementation,
#: 'auto' = 'cudnn' on a GPU backend with bfloat16 activations, else 'reference'.
ATTENTION_IMPLS = ("reference", "xla", "cudnn", "auto")

# Initialisers of t5x/MT3 (variance scaling on the flattened 2-D kernel).
ATTENTION_KERNEL_INIT = nn.initializers.variance_scaling(1.0, "fan_in", "normal")
MLP_KERNEL_INIT = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")
DENSE_KERNEL_INIT = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")
INPUT_PROJECTION_INIT = nn.initializers.lecun_normal()
TOKEN_EMBEDDING_INIT = nn.initializers.normal(stddev=1.0)

# Logical names of activation axes.
BATCH_LENGTH_EMBED = ("batch", "length", "embed")
BATCH_LENGTH_HEADS_KV = ("batch", "length", "heads", "kv")
BATCH_LENGTH_MLP = ("batch", "length", "mlp")
BATCH_LENGTH_VOCAB = ("batch", "length", "vocab")


# --------------------------------------------------------------------------------------------
# Pure functions
# --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def sinusoid_position_table(max_length: int, features: int, min_scale: float = 1.0,
                            max_scale: float = 10000.0) -> np.ndarray:
    """Fixed sinusoid position embeddings as used by MT3.

    Row p is `[sin(p * w_0), ..., sin(p * w_{h-1}), cos(p * w_0), ..., cos(p * w_{h-1})]` with
    h = features // 2 and `w_i = min_scale * (max_scale / min_scale) ** (-i / (h - 1))`, i.e.
    the timescale denominator is d/2 - 1 (255 for d = 512), not d/2. Computed in float64 and
    rounded to float32. A trailing odd column (odd `features`) stays zero.

    Returns:
      float32[max_length, features] (read-only numpy array, cached).
    """
    half = features // 2
    if half < 2:
        raise ValueError(f"sinusoid_position_table: features must be >= 4, got {features}")
    position = np.arange(max_length, dtype=np.float64)[:, None]
    log_increment = -np.log(max_scale / min_scale) / (half - 1)
    frequencies = min_scale * np.exp(np.arange(half, dtype=np.float64) * log_increment)
    table = np.zeros((max_length, features), dtype=np.float32)
    table[:, :half] = np.sin(position * frequencies)
    table[:, half:2 * half] = np.cos(position * frequencies)
    table.setflags(write=False)
    return table


def rms_norm(x: Array, scale: Array, *, epsilon: float = 1e-6, dtype: Any = jnp.float32) -> Array:
    """T5 layer norm: no mean subtraction, no bias; statistics in float32.

    Args:
      x: [..., features] any float dtype.
      scale: float32[features].
      epsilon: added to the mean square.
      dtype: output dtype.

    Returns:
      `dtype`[..., features] = (x / sqrt(mean(x^2) + eps)) cast to dtype, times scale cast to
      dtype.
    """
    x = jnp.asarray(x, jnp.float32)
    mean_square = jnp.mean(jnp.square(x), axis=-1, keepdims=True)
    y = jnp.asarray(x * jax.lax.rsqrt(mean_square + epsilon), dtype)
    return y * jnp.asarray(scale, dtype)


def activation_fn(name: str) -> Callable[[Array], Array]:
    """Maps an activation name of `T5Config.mlp_activations` to a function."""
    if name == "linear":
        return lambda x: x
    if name == "gelu":  # tanh approximation, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        return functools.partial(jax.nn.gelu, approximate=True)
    if name == "relu":
        return jax.nn.relu
    raise ValueError(f"unknown activation {name!r}")


def mask_to_bias(mask: Array | None, dtype: Any) -> Array | None:
    """Boolean/0-1 mask (1 = may attend) -> additive bias (0 or -1e10) in `dtype`."""
    if mask is None:
        return None
    return jnp.where(mask > 0, jnp.asarray(0.0, dtype), jnp.asarray(MASKED_BIAS, dtype))


def attention_mask(query_valid: Array, key_valid: Array) -> Array:
    """[batch, q_len] x [batch, k_len] validity -> bool[batch, 1, q_len, k_len]."""
    return (query_valid[:, None, :, None] > 0) & (key_valid[:, None, None, :] > 0)


def causal_mask(length: int) -> Array:
    """bool[1, 1, length, length], True where key position <= query position."""
    idx = jnp.arange(length)
    return (idx[None, :] <= idx[:, None])[None, None]


def dot_product_attention(query: Array, key: Array, value: Array, bias: Array | None = None, *,
                          dtype: Any = jnp.float32, float32_logits: bool = False,
                          dropout_rate: float = 0.0, dropout_rng: Array | None = None,
                          kv_heads_first: bool = False) -> Array:
    """Unscaled dot-product attention (T5: 1/sqrt(d) lives in the query kernel).

    Args:
      query: [batch, q_len, heads, head_dim].
      key, value: [batch, kv_len, heads, head_dim].
      bias: additive, broadcastable to [batch, heads, q_len, kv_len], or None.
      dtype: dtype of the attention weights after softmax (the softmax itself runs in float32).
      float32_logits: compute q.k in float32 too.
      dropout_rate, dropout_rng: attention-weight dropout (mask shared over query positions);
        applied only when both are given and rate > 0.
      kv_heads_first: key and value are laid out [batch, heads, kv_len, head_dim] (the decoding
        caches' layout, which spares a transpose of the whole cache at every step).

    Returns:
      [batch, q_len, heads, head_dim].
    """
    if float32_logits:
        query = query.astype(jnp.float32)
        key = key.astype(jnp.float32)
    kv_spec = "bhkd" if kv_heads_first else "bkhd"
    weights = jnp.einsum(f"bqhd,{kv_spec}->bhqk", query, key)
    # Softmax statistics in float32 (a no-op for float32 logits, so MT3's float32 path is
    # unchanged; the bfloat16 weights after the softmax are as precise as before).
    weights = weights.astype(jnp.float32)
    if bias is not None:
        weights = weights + bias.astype(weights.dtype)
    weights = jax.nn.softmax(weights).astype(dtype)
    if dropout_rng is not None and dropout_rate > 0.0:
        keep_prob = 1.0 - dropout_rate
        shape = list(weights.shape)
        shape[-2] = 1  # one mask for all query positions
        keep = jax.random.bernoulli(dropout_rng, keep_prob, shape)
        weights = weights * (keep.astype(dtype) / jnp.asarray(keep_prob, dtype))
    return jnp.einsum(f"bhqk,{kv_spec}->bqhd", weights, value)


class AttentionMask(NamedTuple):
    """Which keys each query may attend to, kept factored so that fused kernels need no dense
    [batch, q_len, kv_len] mask.

    Attributes:
      query_valid: bool/0-1 [batch, q_len]: rows that attend at all (a padded query row's
        output is unused; the reference path gives it a uniform average, cuDNN zeros).
      key_valid: bool/0-1 [batch or 1, kv_len]: keys that may be attended to.
      causal: key position <= query position (self-attention, q_len == kv_len).
    """

    query_valid: Array | None = None
    key_valid: Array | None = None
    causal: bool = False

    def dense(self, q_len: int) -> Array | None:
        """bool[batch or 1, 1, q_len or 1, kv_len or 1] (None when nothing is masked)."""
        mask = causal_mask(q_len) if self.causal else None
        for part in (None if self.query_valid is None else self.query_valid[:, None, :, None] > 0,
                     None if self.key_valid is None else self.key_valid[:, None, None, :] > 0):
            if part is not None:
                mask = part if mask is None else mask & part
        return mask


def resolve_attention_impl(impl: str, dtype: Any) -> str:
    """`T5Config.attention_impl` -> 'reference', 'xla' or 'cudnn' for the current backend."""
    if impl not in ATTENTION_IMPLS:
        raise ValueError(f"attention_impl: expected one of {ATTENTION_IMPLS}, got {impl!r}")
    if impl != "auto":
        return impl
    on_gpu = jax.default_backend() == "gpu"
    return "cudnn" if on_gpu and jnp.dtype(dtype) == jnp.bfloat16 else "reference"


def fused_dot_product_attention(query: Array, key: Array, value: Array,
                                mask: AttentionMask | None, *, implementation: str,
                                kv_heads_first: bool = False) -> Array:
    """Unscaled attention through `jax.nn.dot_product_attention` (no attention dropout).

    Args:
      query: [batch, q_len, heads, head_dim].
      key, value: [batch, kv_len, heads, head_dim] (or heads first with `kv_heads_first`),
        the same dtype as `query`.
      mask: the factored mask, or None.
      implementation: 'xla' (logits and softmax in float32, dense boolean mask) or 'cudnn'
        (fused kernel; bfloat16/float16 only; padding given as lengths, i.e. valid positions
        must be a prefix, which holds for MT3's targets; the decoding-cache layout and a key
        mask shared over the batch fall back to 'xla').

    Returns:
      [batch, q_len, heads, head_dim] in the dtype of `query`.
    """
    if kv_heads_first:
        key, value = jnp.swapaxes(key, 1, 2), jnp.swapaxes(value, 1, 2)
    mask = mask or AttentionMask()
    batch = query.shape[0]
    per_example_keys = mask.key_valid is None or mask.key_valid.shape[0] == batch
    if implementation == "cudnn" and not kv_heads_first and per_example_keys:
        def lengths(valid: Array | None) -> Array | None:
            return None if valid is None else jnp.sum(valid > 0, axis=-1, dtype=jnp.int32)
        return jax.nn.dot_product_attention(
            query, key, value, scale=1.0, is_causal=mask.causal,
            query_seq_lengths=lengths(mask.query_valid),
            key_value_seq_lengths=lengths(mask.key_valid), implementation="cudnn")
    if implementation not in ("xla", "cudnn"):
        raise ValueError(f"fused_dot_product_attention: implementation must be 'xla' or "
                         f"'cudnn', got {implementation!r}")
    return jax.nn.dot_product_attention(query, key, value, mask=mask.dense(query.shape[1]),
                                        scale=1.0, implementation="xla")


# --------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------
def _as_tuple(x: int | Sequence[int]) -> tuple[int, ...]:
    return tuple(x) if isinstance(x, Sequence) else (x,)


class DenseGeneral(nn.Module):
    """Bias-free linear map over the trailing `num_input_axes` axes.

    The kernel is stored as float32[prod(input dims), prod(features)] (the t5x layout, so that
    checkpoints load as is) and reshaped at run time; inputs and kernel are cast to `dtype`.
    """

    features: int | tuple[int, ...]
    kernel_axes: tuple[str, str]
    num_input_axes: int = 1
    dtype: Any = jnp.float32
    kernel_init: Initializer = DENSE_KERNEL_INIT
    output_dtype: Any = None

    @nn.compact
    def __call__(self, inputs: Array) -> Array:
        """[..., *in_dims] -> `output_dtype` (default `dtype`)[..., *features].

        With an `output_dtype` wider than `dtype` (bfloat16 inputs, float32 logits) the
        products accumulate and come out in `output_dtype`."""
        features = _as_tuple(self.features)
        in_dims = inputs.shape[inputs.ndim - self.num_input_axes:]
        kernel = self.param(
            "kernel", nn.with_logical_partitioning(self.kernel_init, self.kernel_axes),
            (int(np.prod(in_dims)), int(np.prod(features))), jnp.float32)
        inputs = jnp.asarray(inputs, self.dtype)
        kernel = jnp.reshape(jnp.asarray(kernel, self.dtype), in_dims + features)
        contract_x = tuple(range(inputs.ndim - self.num_input_axes, inputs.ndim))
        contract_k = tuple(range(self.num_input_axes))
        dims = ((contract_x, contract_k), ((), ()))
        if self.output_dtype is None or jnp.dtype(self.output_dtype) == jnp.dtype(self.dtype):
            return jax.lax.dot_general(inputs, kernel, dims)
        return jax.lax.dot_general(inputs, kernel, dims,
                                   preferred_element_type=jnp.dtype(self.output_dtype))


class RMSNorm(nn.Module):
    """T5 layer norm with a learned float32 `scale` (logical axis 'embed')."""

    epsilon: float = 1e-6
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """[..., features] -> `dtype`[..., features]."""
        scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
                           (x.shape[-1],), jnp.float32)
        return rms_norm(x, scale, epsilon=self.epsilon, dtype=self.dtype)


class TokenEmbed(nn.Module):
    """Token embedding table float32[num_embeddings, features] ('vocab', 'embed')."""

    num_embeddings: int
    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, tokens: Array) -> Array:
        """int[...] -> `dtype`[..., features]. Equal to MT3's one-hot matmul (exact in float)."""
        if not jnp.issubdtype(tokens.dtype, jnp.integer):
            raise ValueError(f"TokenEmbed: expected integer token ids, got {tokens.dtype}")
        table = self.param(
            "embedding", nn.with_logical_partitioning(TOKEN_EMBEDDING_INIT, ("vocab", "embed")),
            (self.num_embeddings, self.features), jnp.float32)
        return jnp.take(jnp.asarray(table, self.dtype), tokens, axis=0)


class MlpBlock(nn.Module):
    """Gated MLP: prod_i act_i(x @ wi_i) -> dropout -> @ wo (T5.1.1: gelu(x wi_0) * (x wi_1))."""

    intermediate_dim: int
    activations: tuple[str, ...] = ("gelu", "linear")
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, inputs: Array, *, deterministic: bool) -> Array:
        """[batch, length, embed] -> `dtype`[batch, length, embed]."""
        hidden = None
        for idx, name in enumerate(self.activations):
            dense_name = "wi" if len(self.activations) == 1 else f"wi_{idx}"
            h = DenseGeneral(self.intermediate_dim, ("embed", "mlp"), dtype=self.dtype,
                             kernel_init=MLP_KERNEL_INIT, name=dense_name)(inputs)
            h = activation_fn(name)(h)
            hidden = h if hidden is None else hidden * h
        hidden = nn.Dropout(self.dropout_rate, broadcast_dims=(-2,))(
            hidden, deterministic=deterministic)
        hidden = nn.with_logical_constraint(hidden, BATCH_LENGTH_MLP)
        return DenseGeneral(inputs.shape[-1], ("mlp", "embed"), dtype=self.dtype,
                            kernel_init=MLP_KERNEL_INIT, name="wo")(hidden)


def _query_kernel_init(head_dim: int) -> Initializer:
    """Attention kernel init divided by sqrt(head_dim): T5's folded attention scaling."""
    depth_scaling = np.float32(np.sqrt(head_dim))

    def init(key: Array, shape: Sequence[int], dtype: Any = jnp.float32) -> Array:
        return ATTENTION_KERNEL_INIT(key, shape, dtype) / depth_scaling

    return init


class MultiHeadAttention(nn.Module):
    """Multi-head dot-product attention with kernels `query`, `key`, `value`, `out`.

    Methods are split so that decoding can project keys/values once (cross-attention) or one
    position at a time (self-attention cache) and reuse `attend`.
    """

    num_heads: int
    head_dim: int
    out_features: int
    dtype: Any = jnp.float32
    dropout_rate: float = 0.0
    float32_logits: bool = False
    attention_impl: str = "reference"

    def setup(self) -> None:
        projection = functools.partial(
            DenseGeneral, features=(self.num_heads, self.head_dim),
            kernel_axes=("embed", "joined_kv"), dtype=self.dtype)
        self.query = projection(kernel_init=_query_kernel_init(self.head_dim))
        self.key = projection(kernel_init=ATTENTION_KERNEL_INIT)
        self.value = projection(kernel_init=ATTENTION_KERNEL_INIT)
        self.out = DenseGeneral(self.out_features, ("joined_kv", "embed"), num_input_axes=2,
                                dtype=self.dtype, kernel_init=ATTENTION_KERNEL_INIT)

    def project_query(self, inputs_q: Array) -> Array:
        """[batch, q_len, embed] -> `dtype`[batch, q_len, heads, head_dim]."""
        return nn.with_logical_constraint(self.query(inputs_q), BATCH_LENGTH_HEADS_KV)

    def project_key_value(self, inputs_kv: Array) -> tuple[Array, Array]:
        """[batch, kv_len, embed] -> (key, value), each `dtype`[batch, kv_len, heads, head_dim]."""
        key = nn.with_logical_constraint(self.key(inputs_kv), BATCH_LENGTH_HEADS_KV)
        value = nn.with_logical_constraint(self.value(inputs_kv), BATCH_LENGTH_HEADS_KV)
        return key, value

    def attend(self, query: Array, key: Array, value: Array, mask: AttentionMask | None, *,
               deterministic: bool, kv_heads_first: bool = False) -> Array:
        """Projected heads -> `dtype`[batch, q_len, embed] (attention then `out`).

        `key`/`value` are [batch, kv_len, heads, head_dim], or [batch, heads, kv_len, head_dim]
        with `kv_heads_first` (decoding caches). The reference implementation turns `mask` into
        MT3's additive -1e10 bias; the fused ones ('xla', 'cudnn') apply no dropout to the
        attention weights (the other dropouts stay).
        """
        impl = resolve_attention_impl(self.attention_impl, self.dtype)
        if impl != "reference":
            x = fused_dot_product_attention(query, key, value, mask, implementation=impl,
                                            kv_heads_first=kv_heads_first)
            return self.out(x)
        dropout_rng = None
        if not deterministic and self.dropout_rate > 0.0:
            dropout_rng = self.make_rng("dropout")
        bias = None if mask is None else mask_to_bias(mask.dense(query.shape[1]), self.dtype)
        x = dot_product_attention(query, key, value, bias, dtype=self.dtype,
                                  float32_logits=self.float32_logits,
                                  dropout_rate=self.dropout_rate, dropout_rng=dropout_rng,
                                  kv_heads_first=kv_heads_first)
        return self.out(x)

    def __call__(self, inputs_q: Array, inputs_kv: Array, mask: AttentionMask | None = None, *,
                 deterministic: bool) -> Array:
        """[batch, q_len, embed], [batch, kv_len, embed] -> `dtype`[batch, q_len, embed]."""
        key, value = self.project_key_value(inputs_kv)
        return self.attend(self.project_query(inputs_q), key, value, mask,
                           deterministic=deterministic)

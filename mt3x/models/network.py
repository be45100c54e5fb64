"""MT3's T5.1.1 encoder-decoder as a Flax linen module with MT3's exact parameter tree.

```
encoder/continuous_inputs_projection/kernel          [input_depth, emb]     ('vocab', 'embed')
encoder/layers_i/{pre_attention_layer_norm,pre_mlp_layer_norm}/scale  [emb]  ('embed',)
encoder/layers_i/attention/{query,key,value}/kernel  [emb, heads*head_dim]  ('embed', 'joined_kv')
encoder/layers_i/attention/out/kernel                [heads*head_dim, emb]  ('joined_kv', 'embed')
encoder/layers_i/mlp/{wi_0,wi_1}/kernel, wo/kernel   [emb, mlp], [mlp, emb] ('embed','mlp') ...
encoder/encoder_norm/scale
decoder/token_embedder/embedding                     [vocab, emb]           ('vocab', 'embed')
decoder/layers_i/{pre_self_attention_layer_norm,pre_cross_attention_layer_norm,
                  pre_mlp_layer_norm}/scale
decoder/layers_i/{self_attention,encoder_decoder_attention}/{query,key,value,out}/kernel
decoder/layers_i/mlp/{wi_0,wi_1,wo}/kernel
decoder/decoder_norm/scale
decoder/logits_dense/kernel                          [emb, vocab]           ('embed', 'vocab')
```

Besides the training forward pass (`__call__`), the module exposes the pieces that incremental
decoding needs (`encode`, `cross_key_values`, `decode_step`); see `mt3x.models.decoding`.
Differences from MT3, none of which changes a float32 result: embeddings use a gather instead of
a one-hot matmul (bit-identical), all-ones encoder masks add no bias (adding 0 is exact), and the
logits stay float32 for bfloat16 activations (MT3 casts them to the activation dtype). With
`T5Config.attention_impl` other than 'reference', attention runs through
`jax.nn.dot_product_attention` (see `mt3x.models.layers.fused_dot_product_attention`).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from mt3x.models.config import T5Config
from mt3x.models.layers import (BATCH_LENGTH_EMBED, BATCH_LENGTH_VOCAB, INPUT_PROJECTION_INIT,
                                AttentionMask, DenseGeneral, MlpBlock, MultiHeadAttention, RMSNorm,
                                TokenEmbed, sinusoid_position_table)

Array = jax.Array
#: Decoding cache of one decoder layer: (keys, values), each `dtype`[batch, heads, length,
#: head_dim] (heads first, so attention needs no per-step transpose of the cache).
LayerCache = tuple[Array, Array]


def _attention(cfg: T5Config) -> MultiHeadAttention:
    return MultiHeadAttention(num_heads=cfg.num_heads, head_dim=cfg.head_dim,
                              out_features=cfg.emb_dim, dtype=cfg.activation_dtype,
                              dropout_rate=cfg.dropout_rate,
                              float32_logits=cfg.float32_attention_logits,
                              attention_impl=cfg.attention_impl)


def _mlp(cfg: T5Config) -> MlpBlock:
    return MlpBlock(intermediate_dim=cfg.mlp_dim, activations=cfg.mlp_activations,
                    dropout_rate=cfg.dropout_rate, dtype=cfg.activation_dtype)


def _positions(cfg: T5Config, length: int) -> Array:
    """float32[length, emb_dim] sinusoid rows 0..length-1."""
    if length > cfg.max_length:
        raise ValueError(f"sequence length {length} exceeds T5Config.max_length={cfg.max_length}")
    return jnp.asarray(sinusoid_position_table(cfg.max_length, cfg.emb_dim)[:length])


class EncoderLayer(nn.Module):
    """Pre-norm self-attention block and gated-MLP block, each with a dropped-out residual."""

    config: T5Config

    def setup(self) -> None:
        cfg = self.config
        self.pre_attention_layer_norm = RMSNorm(dtype=cfg.activation_dtype)
        self.attention = _attention(cfg)
        self.pre_mlp_layer_norm = RMSNorm(dtype=cfg.activation_dtype)
        self.mlp = _mlp(cfg)
        self.residual_dropout = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))

    def __call__(self, inputs: Array, *, deterministic: bool) -> Array:
        """`dtype`[batch, frames, emb] -> same."""
        x = self.pre_attention_layer_norm(inputs)
        x = self.attention(x, x, None, deterministic=deterministic)
        x = self.residual_dropout(x, deterministic=deterministic) + inputs
        y = self.pre_mlp_layer_norm(x)
        y = self.mlp(y, deterministic=deterministic)
        y = self.residual_dropout(y, deterministic=deterministic) + x
        return nn.with_logical_constraint(y, BATCH_LENGTH_EMBED)


class DecoderLayer(nn.Module):
    """Self-attention, encoder-decoder attention and gated MLP, each pre-norm with residual."""

    config: T5Config

    def setup(self) -> None:
        cfg = self.config
        dtype = cfg.activation_dtype
        self.pre_self_attention_layer_norm = RMSNorm(dtype=dtype)
        self.self_attention = _attention(cfg)
        self.pre_cross_attention_layer_norm = RMSNorm(dtype=dtype)
        self.encoder_decoder_attention = _attention(cfg)
        self.pre_mlp_layer_norm = RMSNorm(dtype=dtype)
        self.mlp = _mlp(cfg)
        self.residual_dropout = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))

    def _cross_and_mlp(self, x: Array, cross_key: Array, cross_value: Array,
                       cross_mask: AttentionMask | None, deterministic: bool,
                       kv_heads_first: bool = False) -> Array:
        y = self.pre_cross_attention_layer_norm(x)
        y = self.encoder_decoder_attention.attend(
            self.encoder_decoder_attention.project_query(y), cross_key, cross_value, cross_mask,
            deterministic=deterministic, kv_heads_first=kv_heads_first)
        y = self.residual_dropout(y, deterministic=deterministic) + x
        z = self.pre_mlp_layer_norm(y)
        z = self.mlp(z, deterministic=deterministic)
        z = self.residual_dropout(z, deterministic=deterministic) + y
        return nn.with_logical_constraint(z, BATCH_LENGTH_EMBED)

    def __call__(self, inputs: Array, encoded: Array, self_mask: AttentionMask | None,
                 cross_mask: AttentionMask | None, *, deterministic: bool) -> Array:
        """`dtype`[batch, length, emb], `dtype`[batch, frames, emb] -> `dtype`[batch, length, emb].

        `self_mask` / `cross_mask`: which keys each decoder position may attend to.
        """
        x = self.pre_self_attention_layer_norm(inputs)
        x = self.self_attention(x, x, self_mask, deterministic=deterministic)
        x = self.residual_dropout(x, deterministic=deterministic) + inputs
        cross_key, cross_value = self.encoder_decoder_attention.project_key_value(encoded)
        return self._cross_and_mlp(x, cross_key, cross_value, cross_mask, deterministic)

    def cross_key_value(self, encoded: Array) -> LayerCache:
        """`dtype`[batch, frames, emb] -> encoder-decoder (keys, values), each `dtype`[batch,
        heads, frames, head_dim]."""
        key, value = self.encoder_decoder_attention.project_key_value(encoded)
        return jnp.swapaxes(key, 1, 2), jnp.swapaxes(value, 1, 2)

    def decode_step(self, inputs: Array, position: Array, cache: LayerCache,
                    cross_kv: LayerCache) -> tuple[Array, LayerCache]:
        """One position, deterministic.

        Args:
          inputs: `dtype`[batch, 1, emb] at decoder position `position` (int32 scalar).
          cache: this layer's self-attention (keys, values), `dtype`[batch, heads, max_len,
            head_dim]; entries at positions >= `position` are ignored (masked).
          cross_kv: encoder-decoder (keys, values) from `cross_key_value` (heads first).

        Returns:
          (`dtype`[batch, 1, emb], cache updated at `position`).
        """
        x = self.pre_self_attention_layer_norm(inputs)
        query = self.self_attention.project_query(x)
        key, value = self.self_attention.project_key_value(x)
        cached_key, cached_value = cache
        start = (0, 0, position, 0)
        cached_key = jax.lax.dynamic_update_slice(
            cached_key, jnp.swapaxes(key, 1, 2).astype(cached_key.dtype), start)
        cached_value = jax.lax.dynamic_update_slice(
            cached_value, jnp.swapaxes(value, 1, 2).astype(cached_value.dtype), start)
        visible = jnp.arange(cached_key.shape[2]) <= position
        x = self.self_attention.attend(query, cached_key, cached_value,
                                       AttentionMask(key_valid=visible[None, :]),
                                       deterministic=True, kv_heads_first=True)
        x = x + inputs
        y = self._cross_and_mlp(x, cross_kv[0], cross_kv[1], None, True, kv_heads_first=True)
        return y, (cached_key, cached_value)


class Encoder(nn.Module):
    """Continuous-input encoder: projection of the mel frames + sinusoids, then the stack.

    `T5Config.encoder_input_norm` / `encoder_position_scale` (mt3x's opt-ins, off by default)
    normalise the projected frames / scale the sinusoids before they are added."""

    config: T5Config

    @nn.compact
    def __call__(self, encoder_inputs: Array, *, deterministic: bool) -> Array:
        """float[batch, frames, input_depth] log-mel -> `dtype`[batch, frames, emb]."""
        cfg = self.config
        x = DenseGeneral(cfg.emb_dim, ("vocab", "embed"), dtype=cfg.activation_dtype,
                         kernel_init=INPUT_PROJECTION_INIT,
                         name="continuous_inputs_projection")(encoder_inputs)
        if cfg.encoder_input_norm == "rms":  # opt-in, not MT3 (see T5Config)
            x = RMSNorm(dtype=cfg.activation_dtype, name="input_norm")(x)
        positions = _positions(cfg, encoder_inputs.shape[-2])
        if cfg.encoder_position_scale != 1.0:  # opt-in, not MT3 (see T5Config)
            positions = positions * jnp.float32(cfg.encoder_position_scale)
        x = x + positions
        x = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(x, deterministic=deterministic)
        x = nn.with_logical_constraint(x.astype(cfg.activation_dtype), BATCH_LENGTH_EMBED)
        for idx in range(cfg.num_encoder_layers):
            x = EncoderLayer(cfg, name=f"layers_{idx}")(x, deterministic=deterministic)
        x = RMSNorm(dtype=cfg.activation_dtype, name="encoder_norm")(x)
        return nn.Dropout(cfg.dropout_rate)(x, deterministic=deterministic)


class Decoder(nn.Module):
    """Token embedding + sinusoids, the decoder stack, final norm and float32 logits."""

    config: T5Config

    def setup(self) -> None:
        cfg = self.config
        dtype = cfg.activation_dtype
        self.token_embedder = TokenEmbed(cfg.vocab_size, cfg.emb_dim, dtype=dtype)
        self.layers = [DecoderLayer(cfg) for _ in range(cfg.num_decoder_layers)]  # layers_i
        self.decoder_norm = RMSNorm(dtype=dtype)
        # bfloat16 inputs (when activations are), float32 products and logits.
        self.logits_dense = DenseGeneral(cfg.vocab_size, ("embed", "vocab"), dtype=dtype,
                                         output_dtype=jnp.float32)
        self.embed_dropout = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))

    def _embed(self, tokens: Array, positions: Array, deterministic: bool) -> Array:
        y = self.token_embedder(tokens.astype(jnp.int32)) + positions
        y = self.embed_dropout(y, deterministic=deterministic)
        return nn.with_logical_constraint(y.astype(self.config.activation_dtype),
                                          BATCH_LENGTH_EMBED)

    def _logits(self, y: Array, deterministic: bool) -> Array:
        y = self.decoder_norm(y)
        y = self.embed_dropout(y, deterministic=deterministic)
        return nn.with_logical_constraint(self.logits_dense(y), BATCH_LENGTH_VOCAB)

    def __call__(self, encoded: Array, decoder_input_tokens: Array,
                 self_mask: AttentionMask | None, cross_mask: AttentionMask | None, *,
                 deterministic: bool) -> Array:
        """Teacher-forced pass: int32[batch, length] -> float32[batch, length, vocab] logits."""
        length = decoder_input_tokens.shape[-1]
        y = self._embed(decoder_input_tokens, _positions(self.config, length), deterministic)
        for layer in self.layers:
            y = layer(y, encoded, self_mask, cross_mask, deterministic=deterministic)
        return self._logits(y, deterministic)

    def cross_key_values(self, encoded: Array) -> tuple[LayerCache, ...]:
        """Encoder-decoder (keys, values) for every layer, computed once per segment."""
        return tuple(layer.cross_key_value(encoded) for layer in self.layers)

    def decode_step(self, tokens: Array, position: Array, cache: tuple[LayerCache, ...],
                    cross_kv: tuple[LayerCache, ...]) -> tuple[Array, tuple[LayerCache, ...]]:
        """int32[batch] tokens at `position` -> (float32[batch, vocab] logits, updated cache)."""
        cfg = self.config
        table = jnp.asarray(sinusoid_position_table(cfg.max_length, cfg.emb_dim))
        row = jax.lax.dynamic_slice_in_dim(table, position, 1, axis=0)  # [1, emb]
        y = self._embed(tokens[:, None], row, True)
        new_cache = []
        for layer, layer_cache, layer_cross in zip(self.layers, cache, cross_kv):
            y, layer_cache = layer.decode_step(y, position, layer_cache, layer_cross)
            new_cache.append(layer_cache)
        return self._logits(y, True)[:, 0, :], tuple(new_cache)


class Transformer(nn.Module):
    """The MT3 encoder-decoder. Parameters live under `encoder/` and `decoder/`."""

    config: T5Config

    def setup(self) -> None:
        self.encoder = Encoder(self.config)
        self.decoder = Decoder(self.config)

    def encode(self, encoder_inputs: Array, *, enable_dropout: bool = False) -> Array:
        """float[batch, frames, input_depth] log-mel -> `dtype`[batch, frames, emb]."""
        if encoder_inputs.ndim != 3 or encoder_inputs.shape[-1] != self.config.input_depth:
            raise ValueError(f"encoder inputs: expected [batch, frames, {self.config.input_depth}]"
                             f", got shape {encoder_inputs.shape}")
        return self.encoder(encoder_inputs, deterministic=not enable_dropout)

    def decode(self, encoded: Array, decoder_input_tokens: Array,
               decoder_target_tokens: Array | None = None, *,
               enable_dropout: bool = False) -> Array:
        """Teacher-forced decoder -> float32[batch, length, vocab] logits.

        With `decoder_target_tokens` (training) the masks are MT3's: causal and target-padding
        self-attention, cross-attention masked for padded target rows. Without them (the
        uncached reference decoder), the self-attention mask is causal only.
        """
        if decoder_target_tokens is None:
            self_mask, cross_mask = AttentionMask(causal=True), None
        else:
            valid = decoder_target_tokens > 0
            self_mask = AttentionMask(query_valid=valid, key_valid=valid, causal=True)
            cross_mask = AttentionMask(query_valid=valid)  # every encoder frame is a key
        return self.decoder(encoded, decoder_input_tokens, self_mask, cross_mask,
                            deterministic=not enable_dropout)

    def __call__(self, encoder_inputs: Array, decoder_input_tokens: Array,
                 decoder_target_tokens: Array, *, enable_dropout: bool = True) -> Array:
        """Training forward pass -> float32[batch, length, vocab] logits."""
        encoded = self.encode(encoder_inputs, enable_dropout=enable_dropout)
        return self.decode(encoded, decoder_input_tokens, decoder_target_tokens,
                           enable_dropout=enable_dropout)

    def cross_key_values(self, encoded: Array) -> tuple[LayerCache, ...]:
        """Per-layer encoder-decoder (keys, values), `dtype`[batch, heads, frames, head_dim]."""
        return self.decoder.cross_key_values(encoded)

    def decode_step(self, tokens: Array, position: Array, cache: tuple[LayerCache, ...],
                    cross_kv: tuple[LayerCache, ...]) -> tuple[Array, tuple[LayerCache, ...]]:
        """One greedy-decoding step; see `Decoder.decode_step`."""
        return self.decoder.decode_step(tokens, position, cache, cross_kv)


def init_decoder_cache(config: T5Config, batch_size: int,
                       max_decode_length: int) -> tuple[LayerCache, ...]:
    """Zeroed self-attention cache: per layer (keys, values), `dtype`[batch, heads, max_len,
    head_dim]."""
    shape = (batch_size, config.num_heads, max_decode_length, config.head_dim)
    return tuple((jnp.zeros(shape, config.activation_dtype),
                  jnp.zeros(shape, config.activation_dtype))
                 for _ in range(config.num_decoder_layers))

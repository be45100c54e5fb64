"""Batched greedy decoding for the T5 network, with and without caches.

Three strategies, all returning the same tokens (tested):
- `cached` (default): cross-attention keys/values are projected ONCE per segment and the
  self-attention keys/values are cached, so each step processes one position.
- `self_cache`: self-attention cache but cross-attention keys/values recomputed at every step,
  which is what t5x/MT3 do; kept as a benchmark baseline.
- `uncached`: the reference; every step reruns the whole teacher-forced decoder on the tokens so
  far (cost grows with the square of the length).

Every strategy runs in a `lax.while_loop` that stops as soon as every sequence has emitted EOS
or `max_decode_length` tokens exist. Tokens after a sequence's EOS are 0 (PAD).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from mt3x.models.network import Transformer, init_decoder_cache

Array = jax.Array
EOS_ID = 1
PAD_ID = 0
DECODERS = ("cached", "self_cache", "uncached")


def _per_step(encoded: Array, step: Array) -> Array:
    """`encoded`, made opaque to XLA per step so that its loop-invariant code motion cannot hoist
    the cross-attention projections out of the loop (the baselines must recompute them)."""
    encoded, _ = jax.lax.optimization_barrier((encoded, step))
    return encoded


def greedy_decode(module: Transformer, params: Any, encoded: Array, max_decode_length: int, *,
                  decoder: str = "cached", eos_id: int = EOS_ID,
                  return_num_steps: bool = False) -> Array | tuple[Array, Array]:
    """Greedy (argmax) decoding from encoder outputs.

    Args:
      module: the `Transformer`.
      params: its unboxed parameters (the `params` collection, not wrapped in {'params': ...}).
      encoded: `dtype`[batch, frames, emb] from `Transformer.encode`.
      max_decode_length: number of output positions (<= config.max_length).
      decoder: 'cached', 'self_cache' or 'uncached' (see the module docstring).
      eos_id: the id that ends a sequence.
      return_num_steps: also return the number of decoder steps run (int32 scalar).

    Returns:
      int32[batch, max_decode_length]: generated ids, EOS included, 0 after EOS
      (and the step count if `return_num_steps`).
    """
    if decoder not in DECODERS:
        raise ValueError(f"decoder: expected one of {DECODERS}, got {decoder!r}")
    if not 0 < max_decode_length <= module.config.max_length:
        raise ValueError(f"max_decode_length: expected 1..{module.config.max_length}, "
                         f"got {max_decode_length}")
    variables = {"params": params}
    batch_size = encoded.shape[0]
    tokens = jnp.zeros((batch_size, max_decode_length), jnp.int32)
    done = jnp.zeros((batch_size,), bool)

    keep_going = _keep_going(max_decode_length)
    if decoder == "uncached":
        def uncached_body(state: tuple) -> tuple:
            step, tokens, done = state
            inputs = jnp.pad(tokens[:, :-1], ((0, 0), (1, 0)))  # shifted right, BOS = 0
            logits = module.apply(variables, _per_step(encoded, step), inputs,
                                  method=Transformer.decode)
            step_logits = jax.lax.dynamic_index_in_dim(logits, step, axis=1, keepdims=False)
            _, tokens, done = _choose(step, step_logits, tokens, done, eos_id)
            return step + 1, tokens, done

        steps, tokens, _ = jax.lax.while_loop(keep_going, uncached_body,
                                              (jnp.int32(0), tokens, done))
        return (tokens, steps) if return_num_steps else tokens

    if decoder == "cached":
        cross_kv = module.apply(variables, encoded, method=Transformer.cross_key_values)
        return cached_greedy_decode(module, params, cross_kv, max_decode_length, eos_id=eos_id,
                                    return_num_steps=return_num_steps)
    # 'self_cache', the t5x-like baseline: cross-attention keys/values recomputed every step.
    cache = init_decoder_cache(module.config, batch_size, max_decode_length)

    def body(state: tuple) -> tuple:
        step, previous, tokens, cache, done = state
        step_cross_kv = module.apply(variables, _per_step(encoded, step),
                                     method=Transformer.cross_key_values)
        logits, cache = module.apply(variables, previous, step, cache, step_cross_kv,
                                     method=Transformer.decode_step)
        previous, tokens, done = _choose(step, logits, tokens, done, eos_id)
        return step + 1, previous, tokens, cache, done

    start = (jnp.int32(0), jnp.zeros((batch_size,), jnp.int32), tokens, cache, done)
    steps, _, tokens, _, _ = jax.lax.while_loop(keep_going, body, start)
    return (tokens, steps) if return_num_steps else tokens


def cached_greedy_decode(module: Transformer, params: Any, cross_kv: Any, max_decode_length: int,
                         *, eos_id: int = EOS_ID, return_num_steps: bool = False
                         ) -> Array | tuple[Array, Array]:
    """Greedy decoding from precomputed cross-attention keys/values, with a self-attention cache.

    Args:
      module: the `Transformer`.
      params: its unboxed parameters.
      cross_kv: `Transformer.cross_key_values(encoded)`: per decoder layer (keys, values),
        `dtype`[batch, heads, frames, head_dim].
      max_decode_length: number of output positions (<= config.max_length).
      eos_id: the id that ends a sequence.
      return_num_steps: also return the number of decoder steps run (int32 scalar).

    Returns:
      int32[batch, max_decode_length] as `greedy_decode`. The batch size may be symbolic
      (`jax.export` shape polymorphism).
    """
    if not 0 < max_decode_length <= module.config.max_length:
        raise ValueError(f"max_decode_length: expected 1..{module.config.max_length}, "
                         f"got {max_decode_length}")
    variables = {"params": params}
    batch_size = cross_kv[0][0].shape[0]
    cache = init_decoder_cache(module.config, batch_size, max_decode_length)

    def body(state: tuple) -> tuple:
        step, previous, tokens, cache, done = state
        logits, cache = module.apply(variables, previous, step, cache, cross_kv,
                                     method=Transformer.decode_step)
        previous, tokens, done = _choose(step, logits, tokens, done, eos_id)
        return step + 1, previous, tokens, cache, done

    start = (jnp.int32(0), jnp.zeros((batch_size,), jnp.int32),
             jnp.zeros((batch_size, max_decode_length), jnp.int32), cache,
             jnp.zeros((batch_size,), bool))
    steps, _, tokens, _, _ = jax.lax.while_loop(_keep_going(max_decode_length), body, start)
    return (tokens, steps) if return_num_steps else tokens


def _keep_going(max_decode_length: int) -> Any:
    """The while-loop condition: steps remain and some sequence has not emitted EOS."""
    def keep_going(state: tuple) -> Array:
        step, done = state[0], state[-1]
        return (step < max_decode_length) & ~jnp.all(done)
    return keep_going


def _choose(step: Array, logits: Array, tokens: Array, done: Array, eos_id: int
            ) -> tuple[Array, Array, Array]:
    """Argmax of float32[batch, vocab] logits written at `step`; PAD after a sequence's EOS.
    Returns (next int32[batch], tokens, done)."""
    next_token = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    next_token = jnp.where(done, PAD_ID, next_token)
    tokens = jax.lax.dynamic_update_slice(tokens, next_token[:, None], (0, step))
    return next_token, tokens, done | (next_token == eos_id)


def decoded_lengths(tokens: Array, eos_id: int = EOS_ID) -> Array:
    """int32[batch]: tokens up to and including the first EOS (the full length if none)."""
    is_eos = tokens == eos_id
    first = jnp.argmax(is_eos, axis=-1)
    return jnp.where(jnp.any(is_eos, axis=-1), first + 1, tokens.shape[-1]).astype(jnp.int32)

"""Optimizers (optax): MT3's Adafactor, AdamW, learning-rate schedules, gradient accumulation,
and freezing parameters by name.

Everything returns plain `optax.GradientTransformation`s, so any optax transformation works with
the trainer too. Schedules map a step count (int) to a learning rate (float).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import optax

from mt3x.trainer.errors import TrainerError
from mt3x.trainer.partitioning import path_str

Schedule = Callable[[jax.Array | int], jax.Array | float]
LearningRate = float | Schedule


# ---- schedules -----------------------------------------------------------------------------
def constant_schedule(value: float) -> Schedule:
    """lr(step) = value (MT3: 1e-3)."""
    return optax.constant_schedule(value)


def warmup_rsqrt_schedule(peak_value: float, warmup_steps: int) -> Schedule:
    """Linear warm-up to `peak_value` over `warmup_steps`, then peak * sqrt(warmup / step).

    The t5x/T5 "rsqrt" decay, continuous at the end of warm-up.
    """
    if warmup_steps < 1:
        raise TrainerError(f"warmup_steps must be >= 1, got {warmup_steps}")

    def schedule(step: jax.Array | int) -> jax.Array:
        step = jnp.asarray(step, jnp.float32)
        warm = jnp.minimum(step / warmup_steps, 1.0)
        decay = jnp.sqrt(warmup_steps / jnp.maximum(step, warmup_steps))
        return peak_value * warm * decay

    return schedule


def warmup_cosine_schedule(peak_value: float, warmup_steps: int, decay_steps: int,
                           end_value: float = 0.0) -> Schedule:
    """Linear warm-up from 0 to `peak_value`, then cosine decay to `end_value` at `decay_steps`.

    `decay_steps` counts from step 0 (it includes the warm-up), as in optax.
    """
    if not 0 <= warmup_steps < decay_steps:
        raise TrainerError(
            f"need 0 <= warmup_steps < decay_steps, got warmup_steps={warmup_steps}, "
            f"decay_steps={decay_steps}")
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=peak_value, warmup_steps=warmup_steps,
        decay_steps=decay_steps, end_value=end_value)


# ---- base optimizers -----------------------------------------------------------------------
def adafactor_mt3(learning_rate: LearningRate = 1e-3) -> optax.GradientTransformation:
    """Adafactor with MT3's settings: decay rate 0.8, factored second moments (dims >= 128),
    update scaled by the parameter RMS, no momentum, update clipping at RMS 1.0; MT3 trains with
    a constant learning rate 1e-3."""
    return optax.adafactor(
        learning_rate=learning_rate, decay_rate=0.8, factored=True, min_dim_size_to_factor=128,
        multiply_by_parameter_scale=True, momentum=None, clipping_threshold=1.0)


def adamw(learning_rate: LearningRate = 1e-3, *, b1: float = 0.9, b2: float = 0.999,
          eps: float = 1e-8, weight_decay: float = 1e-4,
          max_grad_norm: float | None = None) -> optax.GradientTransformation:
    """AdamW (decoupled weight decay), optionally after clipping the global gradient norm."""
    tx = optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)
    if max_grad_norm is not None:
        tx = optax.chain(optax.clip_by_global_norm(max_grad_norm), tx)
    return tx


# ---- wrappers ------------------------------------------------------------------------------
def _param_name(path: Sequence[Any]) -> str:
    """'encoder/layers_0/kernel': the path inside the params (a leading 'params/' dropped)."""
    name = path_str(path)
    return name[len("params/"):] if name.startswith("params/") else name


def freeze_mask(params: Any, patterns: Sequence[str]) -> Any:
    """A tree of bools: True where a parameter's name matches any regex in `patterns`.

    Names are '/'-joined paths inside the params, e.g. 'encoder/layers_0/mlp/wi/kernel';
    patterns are searched (re.search), so '^encoder/' freezes the encoder and
    'layers_[0-3]/' the first four layers of each stack.

    Raises:
      TrainerError: a pattern is not a valid regex or matches no parameter (likely a typo).
    """
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as e:
            raise TrainerError(f"freeze pattern {pattern!r} is not a valid regex: {e}") from e
    names = [_param_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    for pattern, regex in zip(patterns, compiled):
        if not any(regex.search(n) for n in names):
            raise TrainerError(
                f"freeze pattern {pattern!r} matches no parameter; parameter names look like "
                f"{names[:5]}")
    return jax.tree_util.tree_map_with_path(
        lambda p, _: any(r.search(_param_name(p)) for r in compiled), params)


def freeze(tx: optax.GradientTransformation,
           patterns: Sequence[str]) -> optax.GradientTransformation:
    """Wraps `tx` so parameters whose name matches any of `patterns` get zero updates.

    Frozen parameters keep no optimizer state and never move (the update is exactly zero, also
    under weight decay). See `freeze_mask` for the naming.
    """
    if not patterns:
        return tx
    patterns = tuple(patterns)

    def labels(params: Any) -> Any:
        mask = freeze_mask(params, patterns)
        return jax.tree.map(lambda frozen: "frozen" if frozen else "trainable", mask)

    return optax.multi_transform({"trainable": tx, "frozen": optax.set_to_zero()}, labels)


def accumulate_gradients(tx: optax.GradientTransformation,
                         every_k_steps: int) -> optax.GradientTransformation:
    """Averages gradients over `every_k_steps` consecutive train steps, then applies `tx` once.

    The parameters change only on every k-th step (zero updates between); the effective batch is
    k times the step's batch.
    """
    if every_k_steps < 1:
        raise TrainerError(f"gradient accumulation steps must be >= 1, got {every_k_steps}")
    if every_k_steps == 1:
        return tx
    return optax.MultiSteps(tx, every_k_schedule=every_k_steps).gradient_transformation()


def make_optimizer(*, name: str = "adafactor", learning_rate: LearningRate = 1e-3,
                   freeze_patterns: Sequence[str] = (), grad_accum_steps: int = 1,
                   weight_decay: float = 1e-4,
                   max_grad_norm: float | None = None) -> optax.GradientTransformation:
    """One call for configs: 'adafactor' (MT3's settings) or 'adamw', then freezing, then
    gradient accumulation.

    Args:
      name: 'adafactor' or 'adamw'.
      learning_rate: a float or a schedule (step -> lr).
      freeze_patterns: regexes of parameter names that must not move (see `freeze_mask`).
      grad_accum_steps: average gradients over this many steps per update.
      weight_decay, max_grad_norm: AdamW only.
    """
    if name == "adafactor":
        tx = adafactor_mt3(learning_rate)
    elif name == "adamw":
        tx = adamw(learning_rate, weight_decay=weight_decay, max_grad_norm=max_grad_norm)
    else:
        raise TrainerError(f"optimizer name must be 'adafactor' or 'adamw', got {name!r}")
    return accumulate_gradients(freeze(tx, freeze_patterns), grad_accum_steps)

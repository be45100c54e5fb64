"""Token-level cross-entropy with z-loss and label smoothing (t5x semantics), in float32."""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array

LOSS_NORMALIZATIONS = ("sum", "mean")


def cross_entropy_with_z_loss(logits: Array, targets: Array, *, z_loss: float = 0.0,
                              label_smoothing: float = 0.0) -> tuple[Array, Array]:
    """Per-token loss as t5x `compute_weighted_cross_entropy` before weighting.

    loss = -sum_v q_v log softmax(logits)_v + z_loss * logsumexp(logits)^2 - H(q), where q puts
    1 - label_smoothing on the target and label_smoothing / (vocab - 1) on every other id, and
    H(q) is q's entropy (0 without smoothing), so a perfect prediction costs 0 (+ z-loss).

    Args:
      logits: float[..., vocab] (computed in float32).
      targets: int[...] target ids.
      z_loss: coefficient of the log-partition penalty (MT3: 1e-4).
      label_smoothing: in [0, 1).

    Returns:
      (total per-token loss including the z-loss term, the z-loss term), float32[...].
    """
    logits = logits.astype(jnp.float32)
    vocab_size = logits.shape[-1]
    confidence = 1.0 - label_smoothing
    low_confidence = label_smoothing / (vocab_size - 1)
    log_z = jax.nn.logsumexp(logits, axis=-1)
    log_probs = logits - log_z[..., None]
    target_log_prob = jnp.take_along_axis(log_probs, targets[..., None].astype(jnp.int32),
                                          axis=-1)[..., 0]
    if label_smoothing > 0.0:
        # q = low everywhere, + (confidence - low) on the target.
        cross_entropy = -(low_confidence * jnp.sum(log_probs, axis=-1)
                          + (confidence - low_confidence) * target_log_prob)
        entropy = -(confidence * jnp.log(confidence)
                    + (vocab_size - 1) * low_confidence * jnp.log(low_confidence + 1e-20))
        cross_entropy = cross_entropy - entropy
    else:
        cross_entropy = -target_log_prob
    z_term = z_loss * jnp.square(log_z)
    return cross_entropy + z_term, z_term


def weighted_loss_and_metrics(logits: Array, targets: Array, weights: Array, *,
                              z_loss: float = 0.0, label_smoothing: float = 0.0,
                              normalization: str = "sum") -> tuple[Array, dict[str, Array]]:
    """Scalar training loss and metrics.

    Args:
      logits: float[batch, length, vocab].
      targets: int[batch, length].
      weights: float[batch, length], 1 where a token counts.
      normalization: 'sum' (MT3: summed over target tokens) or 'mean' (divided by the sum of
        weights).

    Returns:
      (loss, {'loss', 'cross_entropy', 'z_loss', 'accuracy', 'num_tokens'}), float32 scalars;
      `z_loss` and `cross_entropy` use the same normalization as `loss` (loss = cross_entropy +
      z_loss); accuracy is the weighted fraction of argmax hits.
    """
    if normalization not in LOSS_NORMALIZATIONS:
        raise ValueError(f"loss normalization: expected one of {LOSS_NORMALIZATIONS}, "
                         f"got {normalization!r}")
    weights = weights.astype(jnp.float32)
    per_token, per_token_z = cross_entropy_with_z_loss(
        logits, targets, z_loss=z_loss, label_smoothing=label_smoothing)
    num_tokens = jnp.sum(weights)
    total = jnp.sum(per_token * weights)
    total_z = jnp.sum(per_token_z * weights)
    if normalization == "mean":
        denominator = jnp.maximum(num_tokens, 1e-8)
        total = total / denominator
        total_z = total_z / denominator
    correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
    accuracy = jnp.sum(correct * weights) / jnp.maximum(num_tokens, 1e-8)
    metrics = {"loss": total, "cross_entropy": total - total_z, "z_loss": total_z,
               "accuracy": accuracy, "num_tokens": num_tokens}
    return total, metrics

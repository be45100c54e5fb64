"""Hyperparameters of the T5 encoder-decoder and the named configurations.

`mt3` and `ismir2021` are MT3's T5.1.1 "small" networks (magenta/mt3 `gin/model.gin`): 8 + 8
layers, width 512, 6 heads of 64, gated-GELU MLP of 1024, dropout 0.1. They differ only in the
vocabulary (1536 vs 1664 ids). `base` is T5.1.1 base-sized (ismir2022 `base.gin`). `small_cpu`
and `tiny` are ours, for CPU demos and tests.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from mt3x.errors import Mt3xError
from mt3x.models.layers import ATTENTION_IMPLS

_ACTIVATION_DTYPES = ("float32", "bfloat16")
#: `T5Config.encoder_input_norm` values ('none' is MT3).
ENCODER_INPUT_NORMS = ("none", "rms")


class ModelConfigError(Mt3xError):
    """A model configuration name or field is not valid."""


@dataclasses.dataclass(frozen=True)
class T5Config:
    """Global hyperparameters of the encoder-decoder.

    Attributes:
      vocab_size: number of decoder token ids (embedding rows and logits); 1536 for MT3.
      dtype: activation dtype, 'float32' or 'bfloat16'. Parameters are always float32; RMSNorm
        statistics, the position table and the logits are always float32.
      emb_dim: model width d.
      num_heads: attention heads.
      head_dim: width of one head (query/key/value kernels are [emb_dim, num_heads * head_dim]).
      mlp_dim: hidden width of the gated MLP.
      num_encoder_layers, num_decoder_layers: stack depths.
      mlp_activations: one activation name per `wi_i` kernel, multiplied together
        ('gelu' = tanh-approximate GELU, 'linear' = identity, 'relu').
      dropout_rate: dropout after embeddings, attention weights, MLP hidden and every residual
        branch.
      input_depth: width of one encoder input frame (512 mel bins).
      max_length: rows of the fixed sinusoid position table (longest encoder/decoder sequence).
      float32_attention_logits: compute q.k in float32 even for bfloat16 activations (MT3:
        False; the softmax runs in float32 either way).
      attention_impl: 'reference' (default: einsum + softmax, MT3's numerics, bit-identical in
        float32), 'xla' (`jax.nn.dot_product_attention`, XLA), 'cudnn' (its cuDNN fused kernel;
        GPU and bfloat16 only) or 'auto' ('cudnn' on a GPU backend with bfloat16 activations,
        else 'reference'). The fused implementations ('xla', 'cudnn') apply no dropout to the
        attention weights; embedding, residual and MLP dropout are unchanged.
      encoder_input_norm: mt3x's opt-in, not MT3 (default 'none': MT3's encoder input, the
        projected log-mel plus the sinusoids). 'rms' applies an RMSNorm with a learned scale
        (parameter `encoder/input_norm/scale`, initialised to 1) to each projected log-mel frame
        BEFORE the sinusoids are added, so the audio part of every frame has RMS 1 (times the
        scale) whatever its loudness, against the sinusoids' RMS of 0.71; without it the
        projected log-mel has RMS ~1.9 at initialisation and 4-6 after a few hundred steps.
      encoder_position_scale: mt3x's opt-in, not MT3 (default 1.0: MT3). Multiplies the
        encoder's sinusoid position signal (the decoder's is unchanged).
    """

    vocab_size: int = 1536
    dtype: str = "float32"
    emb_dim: int = 512
    num_heads: int = 6
    head_dim: int = 64
    mlp_dim: int = 1024
    num_encoder_layers: int = 8
    num_decoder_layers: int = 8
    mlp_activations: tuple[str, ...] = ("gelu", "linear")
    dropout_rate: float = 0.1
    input_depth: int = 512
    max_length: int = 2048
    float32_attention_logits: bool = False
    attention_impl: str = "reference"
    encoder_input_norm: str = "none"
    encoder_position_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.dtype not in _ACTIVATION_DTYPES:
            raise ModelConfigError(
                f"T5Config.dtype: expected one of {_ACTIVATION_DTYPES}, got {self.dtype!r}")
        for field in ("vocab_size", "emb_dim", "num_heads", "head_dim", "mlp_dim",
                      "input_depth", "max_length"):
            if int(getattr(self, field)) <= 0:
                raise ModelConfigError(
                    f"T5Config.{field}: expected a positive integer, got {getattr(self, field)!r}")
        if self.attention_impl not in ATTENTION_IMPLS:
            raise ModelConfigError(
                f"T5Config.attention_impl: expected one of {ATTENTION_IMPLS}, "
                f"got {self.attention_impl!r}")
        if self.attention_impl == "cudnn" and self.dtype != "bfloat16":
            raise ModelConfigError(
                "T5Config.attention_impl: 'cudnn' needs dtype='bfloat16' (cuDNN fused attention "
                f"runs in 16-bit floats), got dtype={self.dtype!r}; use 'auto' or 'xla'")
        if self.encoder_input_norm not in ENCODER_INPUT_NORMS:
            raise ModelConfigError(
                f"T5Config.encoder_input_norm: expected one of {ENCODER_INPUT_NORMS}, "
                f"got {self.encoder_input_norm!r}")
        if not float(self.encoder_position_scale) > 0.0:
            raise ModelConfigError(
                f"T5Config.encoder_position_scale: expected a positive number, "
                f"got {self.encoder_position_scale!r}")
        if self.emb_dim % 2:
            raise ModelConfigError(
                f"T5Config.emb_dim: expected an even width (sin and cos halves), "
                f"got {self.emb_dim}")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ModelConfigError(
                f"T5Config.dropout_rate: expected 0 <= rate < 1, got {self.dropout_rate}")
        for act in self.mlp_activations:
            if act not in ("gelu", "linear", "relu"):
                raise ModelConfigError(
                    f"T5Config.mlp_activations: unknown activation {act!r} "
                    "(expected 'gelu', 'linear' or 'relu')")
        # Gin passes lists; keep the dataclass hashable.
        object.__setattr__(self, "mlp_activations", tuple(self.mlp_activations))

    @property
    def activation_dtype(self) -> Any:
        """The jnp dtype of activations."""
        return jnp.dtype(self.dtype)


CONFIGS: dict[str, T5Config] = {
    "mt3": T5Config(vocab_size=1536),
    "ismir2021": T5Config(vocab_size=1664),
    "base": T5Config(vocab_size=1536, emb_dim=768, num_heads=12, head_dim=64, mlp_dim=2048,
                     num_encoder_layers=12, num_decoder_layers=12),
    "small_cpu": T5Config(vocab_size=1536, emb_dim=256, num_heads=4, head_dim=64, mlp_dim=512,
                          num_encoder_layers=2, num_decoder_layers=2),
    "tiny": T5Config(vocab_size=1536, emb_dim=32, num_heads=2, head_dim=16, mlp_dim=64,
                     num_encoder_layers=1, num_decoder_layers=1),
}


def get_config(name: str, **overrides: Any) -> T5Config:
    """Returns the named configuration (`mt3`, `ismir2021`, `base`, `small_cpu`, `tiny`).

    Keyword overrides replace fields, e.g. `get_config('mt3', dtype='bfloat16')`.
    """
    if name not in CONFIGS:
        raise ModelConfigError(
            f"model config {name!r} is unknown; expected one of {sorted(CONFIGS)}")
    fields = {f.name for f in dataclasses.fields(T5Config)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ModelConfigError(
            f"model config {name!r}: unknown field(s) {unknown}; expected some of {sorted(fields)}")
    return dataclasses.replace(CONFIGS[name], **overrides)

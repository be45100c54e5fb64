"""A Demucs-inspired 2D convolutional U-Net on the magnitude STFT that predicts masks.

Layout: inputs are float32[batch, frames, bins] with bins = n_fft // 2 (the Nyquist bin is dropped
on the way in and gets the mask of the bin below it on the way out). Each encoder layer is a
convolution with kernel (3 frames, 8 bins), stride (1, 4) and padding (1, 2) (`FreqDown`, written
as patches x matrix because XLA:CPU differentiates strided convolutions slowly): the frequency axis
shrinks by exactly 4 per layer (2048 -> 512 -> 128 -> 32 -> 8 with the default four layers and
n_fft = 4096), the time axis is kept. Channels 48 -> 96 -> 192 -> 384 by default. A 1x1
convolution with a GLU follows each strided convolution (as in Demucs). The decoder mirrors it:
concatenate the skip, 1x1 convolution + GLU, then a transposed convolution (kernel (3, 8),
stride (1, 4)) back up; the last one outputs one map per instrument directly (plus one for the
residual with a softmax), as Demucs's last decoder layer does, turned into masks by a sigmoid or
a softmax across instruments.

Input compression: log1p(|X|), a fixed (not data-dependent) transform, so the network is local in
time and chunked separation matches one-piece separation away from chunk edges.
"""

from __future__ import annotations

from typing import Literal, Sequence

import flax.linen as nn
import jax.numpy as jnp

from mt3x.errors import Mt3xError

MaskKind = Literal["sigmoid", "softmax"]


def _conv_init(axes: tuple[str | None, ...]):
    return nn.with_logical_partitioning(nn.initializers.lecun_normal(), axes)


def _bias_init():
    return nn.with_logical_partitioning(nn.initializers.zeros_init(), ("channels",))


def _time_context(x: jnp.ndarray, kernel: int) -> jnp.ndarray:
    """[B, T, F, C] -> [B, T, F, kernel * C]: frames t - k//2 .. t + k//2 side by side (zeros
    beyond the ends)."""
    half = kernel // 2
    padded = jnp.pad(x, ((0, 0), (half, half), (0, 0), (0, 0)))
    frames = x.shape[1]
    return jnp.concatenate([padded[:, i:i + frames] for i in range(kernel)], axis=-1)


class FreqDown(nn.Module):
    """Convolution with kernel (time_kernel, 8), stride (1, 4), padding (time_kernel // 2, 2),
    written as patches x matrix: [B, T, F, C] -> [B, T, F / 4, features].

    Same function as `nn.Conv(features, (k, 8), strides=(1, 4), ...)`; the patch form keeps the
    backward pass to matmuls, which XLA's CPU backend runs ~10x faster than the gradient of a
    strided convolution."""
    features: int
    time_kernel: int = 3

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        b, t, f, _ = x.shape
        x = _time_context(x, self.time_kernel)
        x = jnp.pad(x, ((0, 0), (0, 0), (2, 2), (0, 0)))
        blocks = x.reshape(b, t, f // 4 + 1, -1)                     # 4 bins per block
        patches = jnp.concatenate([blocks[:, :, :-1], blocks[:, :, 1:]], axis=-1)
        return nn.Dense(self.features, kernel_init=_conv_init((None, "channels")),
                        bias_init=_bias_init(), name="proj")(patches)


class FreqUp(nn.Module):
    """Transposed convolution with kernel (time_kernel, 8), stride (1, 4) (the adjoint layout of
    `FreqDown`): [B, T, G, C] -> [B, T, 4 G, features], as matrix x overlap-add."""
    features: int
    time_kernel: int = 3

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        b, t, g, _ = x.shape
        x = _time_context(x, self.time_kernel)
        y = nn.Dense(8 * self.features, kernel_init=_conv_init((None, "channels")),
                     use_bias=False, name="proj")(x).reshape(b, t, g, 2, 4, self.features)
        first = jnp.pad(y[:, :, :, 0], ((0, 0), (0, 0), (0, 1), (0, 0), (0, 0)))
        second = jnp.pad(y[:, :, :, 1], ((0, 0), (0, 0), (1, 0), (0, 0), (0, 0)))
        out = (first + second).reshape(b, t, 4 * g + 4, self.features)[:, :, 2:-2]
        bias = self.param("bias", _bias_init(), (self.features,))
        return out + bias


def check_unet_bins(num_input_bins: int, num_layers: int) -> None:
    """Raises Mt3xError unless the bins divide by 4 ** num_layers."""
    if num_layers < 1 or num_input_bins % (4 ** num_layers):
        raise Mt3xError(f"U-Net: {num_input_bins} input bins (n_fft // 2) must be divisible by "
                        f"4 ** num_layers = {4 ** max(num_layers, 0)}; choose n_fft accordingly")


class SpectrogramUNet(nn.Module):
    """Mask-predicting U-Net.

    Attributes:
      num_instruments: output masks (targets).
      channels: encoder channels per layer (len = number of layers), e.g. (48, 96, 192, 384).
      mask: 'sigmoid' (independent masks in [0, 1]) or 'softmax' (across instruments + residual,
        masks sum to <= 1 per bin).
      time_kernel: kernel size along frames (odd).
    """
    num_instruments: int
    channels: Sequence[int] = (48, 96, 192, 384)
    mask: str = "sigmoid"
    time_kernel: int = 3

    @nn.compact
    def __call__(self, magnitude: jnp.ndarray) -> jnp.ndarray:
        """magnitude float32[batch, frames, bins] (bins = n_fft // 2 + 1)
        -> masks float32[batch, num_instruments, frames, bins] in [0, 1]."""
        if self.mask not in ("sigmoid", "softmax"):
            raise Mt3xError(f"U-Net mask {self.mask!r}: expected 'sigmoid' or 'softmax'")
        num_bins = magnitude.shape[-1] - 1
        check_unet_bins(num_bins, len(self.channels))
        tk = self.time_kernel
        x = jnp.log1p(magnitude[..., :num_bins])[..., None]       # [B, T, F, 1]
        skips = []
        for i, ch in enumerate(self.channels):
            x = FreqDown(ch, tk, name=f"enc_{i}")(x)
            x = nn.relu(x)
            x = nn.Conv(2 * ch, (1, 1), kernel_init=_conv_init((None, None, None, "channels")),
                        bias_init=_bias_init(), name=f"enc_{i}_glu")(x)
            x = nn.glu(x, axis=-1)
            skips.append(x)
        num_maps = self.num_instruments + (1 if self.mask == "softmax" else 0)
        for i in reversed(range(len(self.channels))):
            ch = self.channels[i]
            out_ch = self.channels[i - 1] if i > 0 else num_maps
            x = jnp.concatenate([x, skips[i]], axis=-1) if i < len(self.channels) - 1 else x
            x = nn.Conv(2 * ch, (1, 1), kernel_init=_conv_init((None, None, None, "channels")),
                        bias_init=_bias_init(), name=f"dec_{i}_glu")(x)
            x = nn.glu(x, axis=-1)
            x = FreqUp(out_ch, tk, name=f"dec_{i}")(x)
            if i > 0:
                x = nn.relu(x)
        logits = x                                                   # [B, T, F, maps]
        if self.mask == "sigmoid":
            masks = nn.sigmoid(logits)
        else:
            masks = nn.softmax(logits, axis=-1)[..., :self.num_instruments]
        masks = jnp.moveaxis(masks, -1, 1)                           # [B, I, T, F]
        return jnp.concatenate([masks, masks[..., -1:]], axis=-1)    # Nyquist bin

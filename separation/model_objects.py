"""Model objects for `mt3x.trainer`: the context DNN and the conv U-Net separators.

Both take raw waveform batches and compute their STFTs inside `loss` / `predict` (with
`mt3x.audio`), so the features are computed in the jitted step on device:
```
batch = {'mixture': float32[B, samples], 'sources': float32[B, n_inst, samples]}   # at sample_rate
predict(params, batch) -> {'sources': float32[B, n_inst, samples]}                 # 'sources' unused
```
Metrics of `loss` (scalars): 'loss', 'si_sdr' (mean SI-SDR of the waveform estimates over sources
whose reference is not silent), 'si_sdr_defined' (fraction of such sources) and per-model extras.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping

import jax
import jax.numpy as jnp

from mt3x.errors import Mt3xError
from separation import context as ctx
from separation.metrics import masked_mean, si_sdr_jax
from separation.models.dnn import ContextDNN, box_like
from separation.models.unet import SpectrogramUNet, check_unet_bins
from separation.spectral import StftConfig, apply_masks, magnitude, wiener_masks, with_phase_of

PyTree = Any
Batch = Mapping[str, jax.Array]


def _check_batch(batch: Batch, num_instruments: int, need_sources: bool) -> None:
    if "mixture" not in batch:
        raise Mt3xError(f"separator batch has keys {sorted(batch)}: expected 'mixture' "
                        "(float32[B, samples]) and 'sources' (float32[B, n_inst, samples])")
    if need_sources:
        shape = batch["sources"].shape
        if len(shape) != 3 or shape[1] != num_instruments:
            raise Mt3xError(f"batch 'sources' has shape {shape}: expected [B, {num_instruments}, "
                            "samples] (one stem per instrument of this model)")


def _waveform_metrics(estimates: jax.Array, sources: jax.Array) -> dict[str, jax.Array]:
    value, defined = si_sdr_jax(sources, estimates)
    return {"si_sdr": masked_mean(value, defined), "si_sdr_defined": jnp.mean(defined)}


@dataclasses.dataclass(frozen=True)
class DNNSeparator:
    """One linear-context DNN per instrument (Uhlich et al. 2015) as a trainer Model.

    Attributes:
      instruments: names of the target instruments (order of 'sources').
      sample_rate: Hz of the batches (16000 by default: 62.5 Hz bins at n_fft 256).
      n_fft, hop_length: STFT settings (bins = n_fft // 2 + 1 = network width).
      context: C (2C+1 frames stacked); frame_skip: distance between stacked frames.
      num_layers: K dense layers per instrument network.
      activation: 'relu' or 'linear'.
      loss_type: 'sse' (sum of squared errors per frame) or 'sae' (sum of absolute errors),
        on gamma-normalised magnitudes, averaged over frames, batch and instruments; or 'si_sdr':
        -SI-SDR (dB) of the reconstructed waveforms (Wiener masks as in predict), averaged over
        the sources whose reference is not silent: the evaluation metric itself, which the SSE
        the least-squares layers minimise is not.
      wiener: predict() applies single-channel Wiener masks across the instruments (+ residual)
        instead of magnitude estimate x mixture phase.
      wiener_power: exponent p of those masks, |S_j|^p / sum_k |S_k|^p: 2 is the Wiener (power
        ratio) mask, 1 the amplitude ratio. 1 is softer: where a network wrongly claims energy of
        another instrument (out of domain) the damage is smaller (see README, Source separation).
      initial_params: when set (e.g. the least-squares layers of `separation.training.grow_dnn`),
        `init` returns these (boxed with the network's logical axes) instead of random ones.
        Excluded from equality and hashing.
    Params: {instrument: {'layer_0': {'kernel', 'bias'}, ...}}.
    """
    instruments: tuple[str, ...] = ("bass", "drums", "guitar", "piano")
    sample_rate: int = 16000
    n_fft: int = 256
    hop_length: int = 128
    context: int = 3
    frame_skip: int = 1
    num_layers: int = 1
    activation: str = "relu"
    loss_type: str = "sse"
    wiener: bool = True
    wiener_power: float = 2.0
    initial_params: Any = dataclasses.field(default=None, compare=False, hash=False, repr=False)

    def __post_init__(self):
        if self.loss_type not in ("sse", "sae", "si_sdr"):
            raise Mt3xError(f"DNN loss_type {self.loss_type!r}: expected 'sse', 'sae' or "
                            "'si_sdr'")

    @property
    def stft_config(self) -> StftConfig:
        return StftConfig(self.n_fft, self.hop_length)

    @property
    def num_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def input_dim(self) -> int:
        return (2 * self.context + 1) * self.num_bins

    @property
    def network(self) -> ContextDNN:
        return ContextDNN(self.num_bins, self.num_layers, self.activation)

    # -- features -----------------------------------------------------------------------------
    def features(self, mixture: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """mixture float32[B, samples] -> (spec c64[B, T, F], inputs f32[B, T, D], gamma f32[B, T, 1])."""
        spec = self.stft_config.stft(mixture)
        inputs, gamma = ctx.normalized_context(magnitude(spec), self.context, self.frame_skip)
        return spec, inputs, gamma

    def normalized_targets(self, sources: jax.Array, gamma: jax.Array) -> jax.Array:
        """sources f32[B, I, samples] -> |S| / gamma: f32[B, I, T, F]."""
        mags = magnitude(self.stft_config.stft(sources))
        return mags / jnp.maximum(gamma, 1e-8)[:, None]

    def ls_pairs(self, batch: Mapping[str, Any], instrument: str) -> tuple[jax.Array, jax.Array]:
        """(inputs f32[B*T, D], normalised targets f32[B*T, F]) of one instrument, for
        `grow_by_least_squares`."""
        i = self.instruments.index(instrument)
        _, inputs, gamma = _jit_features(self, jnp.asarray(batch["mixture"]))
        targets = _jit_targets(self, jnp.asarray(batch["sources"])[:, i:i + 1], gamma)[:, 0]
        return inputs.reshape(-1, inputs.shape[-1]), targets.reshape(-1, targets.shape[-1])

    def magnitudes(self, params: PyTree, inputs: jax.Array, gamma: jax.Array) -> jax.Array:
        """Normalised outputs of every instrument network: f32[B, I, T, F] (multiply by gamma)."""
        net = self.network
        return jnp.stack([net.apply({"params": params[name]}, inputs)
                          for name in self.instruments], axis=1)

    # -- Model protocol ------------------------------------------------------------------------
    def init(self, rng: jax.Array, batch: Batch) -> PyTree:
        shape = batch["mixture"].shape
        frames = shape[-1] // self.hop_length + 1
        example = jnp.zeros((1, frames, self.input_dim), jnp.float32)
        if self.initial_params is not None:
            return {name: box_like(self.network, self.initial_params[name], example)
                    for name in self.instruments}
        keys = jax.random.split(rng, len(self.instruments))
        return {name: self.network.init(k, example)["params"]
                for name, k in zip(self.instruments, keys)}

    def loss(self, params: PyTree, batch: Batch, rng: jax.Array
             ) -> tuple[jax.Array, dict[str, jax.Array]]:
        del rng
        _check_batch(batch, len(self.instruments), need_sources=True)
        spec, inputs, gamma = self.features(batch["mixture"])
        targets = self.normalized_targets(batch["sources"], gamma)
        outputs = self.magnitudes(params, inputs, gamma)
        err = outputs - targets
        per_frame = jnp.sum(jnp.abs(err) if self.loss_type == "sae" else err * err, axis=-1)
        loss = jnp.mean(per_frame)
        centre = ctx.centre_frame(inputs, self.num_bins, self.context)[:, None]
        ident = centre - targets
        identity = jnp.mean(jnp.sum(jnp.abs(ident) if self.loss_type == "sae" else ident * ident,
                                    axis=-1))
        estimates = self._reconstruct(outputs * gamma[:, None], spec, batch["mixture"].shape[-1])
        metrics = {"loss_vs_identity": loss / jnp.maximum(identity, 1e-12),
                   **_waveform_metrics(estimates, batch["sources"])}
        for i, name in enumerate(self.instruments):
            metrics[f"loss/{name}"] = jnp.mean(per_frame[:, i])
        if self.loss_type == "si_sdr":
            metrics["magnitude_sse"] = loss
            loss = -metrics["si_sdr"]
        return loss, metrics

    def predict(self, params: PyTree, batch: Batch) -> dict[str, jax.Array]:
        _check_batch(batch, len(self.instruments), need_sources=False)
        spec, inputs, gamma = self.features(batch["mixture"])
        mags = self.magnitudes(params, inputs, gamma) * gamma[:, None]
        return {"sources": self._reconstruct(mags, spec, batch["mixture"].shape[-1])}

    def _reconstruct(self, mags: jax.Array, spec: jax.Array, length: int) -> jax.Array:
        if self.wiener:
            est = apply_masks(wiener_masks(mags, magnitude(spec), power=self.wiener_power), spec)
        else:
            est = with_phase_of(mags, spec)
        return self.stft_config.istft(est, length=length)


@functools.partial(jax.jit, static_argnums=0)
def _jit_features(model: DNNSeparator, mixture: jax.Array):
    return model.features(mixture)


@functools.partial(jax.jit, static_argnums=0)
def _jit_targets(model: DNNSeparator, sources: jax.Array, gamma: jax.Array):
    return model.normalized_targets(sources, gamma)


@dataclasses.dataclass(frozen=True)
class UNetSeparator:
    """The conv U-Net mask separator as a trainer Model.

    Attributes:
      instruments: target names (order of 'sources').
      sample_rate: Hz of the batches (44100 with n_fft 4096 -> 2048 bins of 10.8 Hz).
      n_fft, hop_length: STFT settings; n_fft // 2 must divide by 4 ** len(channels).
      channels: encoder channels per layer.
      mask: 'sigmoid' or 'softmax' (across instruments + residual).
      magnitude_loss_weight, waveform_loss_weight: weights of the magnitude loss (mean over bins,
        frames, instruments, batch of |masked STFT| - |target STFT|, see `magnitude_loss`) and of
        the L1 loss on the iSTFT waveforms (mean over samples, instruments, batch).
      magnitude_loss: 'l2' (squared error; its optimum is the conditional mean, an IRM-like mask)
        or 'l1' (absolute error; its optimum is the conditional median, which for sparse stems is
        a zero mask in most bins: with few training steps the masks collapse towards 0).
      si_sdr_loss_weight: weight of -SI-SDR (dB) of the iSTFT waveforms, averaged over the
        sources whose reference is not silent. Scale-invariant per source, so quiet groups count
        as much as loud ones (the magnitude losses are dominated by the loudest bins and sources);
        it is also the evaluation metric.
      wiener: predict() re-balances the masked magnitudes with Wiener masks across instruments.
    """
    instruments: tuple[str, ...] = ("bass", "drums", "guitar", "piano")
    sample_rate: int = 44100
    n_fft: int = 4096
    hop_length: int = 1024
    channels: tuple[int, ...] = (48, 96, 192, 384)
    mask: str = "softmax"
    magnitude_loss_weight: float = 1.0
    waveform_loss_weight: float = 0.0
    magnitude_loss: str = "l2"
    si_sdr_loss_weight: float = 0.0
    wiener: bool = False

    def __post_init__(self):
        if self.magnitude_loss not in ("l1", "l2"):
            raise Mt3xError(f"U-Net magnitude_loss {self.magnitude_loss!r}: expected 'l1' or 'l2'")
        check_unet_bins(self.n_fft // 2, len(self.channels))

    @property
    def stft_config(self) -> StftConfig:
        return StftConfig(self.n_fft, self.hop_length)

    @property
    def network(self) -> SpectrogramUNet:
        return SpectrogramUNet(len(self.instruments), tuple(self.channels), self.mask)

    def masks(self, params: PyTree, mixture: jax.Array) -> tuple[jax.Array, jax.Array]:
        """mixture f32[B, samples] -> (masks f32[B, I, T, F], mixture spec c64[B, T, F])."""
        spec = self.stft_config.stft(mixture)
        return self.network.apply({"params": params}, magnitude(spec)), spec

    def init(self, rng: jax.Array, batch: Batch) -> PyTree:
        shape = batch["mixture"].shape
        frames = shape[-1] // self.hop_length + 1
        example = jnp.zeros((1, frames, self.n_fft // 2 + 1), jnp.float32)
        return self.network.init(rng, example)["params"]

    def loss(self, params: PyTree, batch: Batch, rng: jax.Array
             ) -> tuple[jax.Array, dict[str, jax.Array]]:
        del rng
        _check_batch(batch, len(self.instruments), need_sources=True)
        masks, spec = self.masks(params, batch["mixture"])
        est_spec = apply_masks(masks, spec)
        target_spec = self.stft_config.stft(batch["sources"])
        mag_err = magnitude(est_spec) - magnitude(target_spec)
        mag_loss = jnp.mean(mag_err * mag_err if self.magnitude_loss == "l2" else jnp.abs(mag_err))
        estimates = self.stft_config.istft(est_spec, length=batch["mixture"].shape[-1])
        wave_loss = jnp.mean(jnp.abs(estimates - batch["sources"]))
        metrics = _waveform_metrics(estimates, batch["sources"])
        loss = (self.magnitude_loss_weight * mag_loss + self.waveform_loss_weight * wave_loss
                - self.si_sdr_loss_weight * metrics["si_sdr"])
        return loss, {f"magnitude_{self.magnitude_loss}": mag_loss, "waveform_l1": wave_loss,
                      **metrics}

    def predict(self, params: PyTree, batch: Batch) -> dict[str, jax.Array]:
        _check_batch(batch, len(self.instruments), need_sources=False)
        masks, spec = self.masks(params, batch["mixture"])
        if self.wiener:
            masks = wiener_masks(masks * magnitude(spec)[:, None], magnitude(spec))
        est = apply_masks(masks, spec)
        return {"sources": self.stft_config.istft(est, length=batch["mixture"].shape[-1])}

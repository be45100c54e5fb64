"""Spectral features of 1-second snippets, jitted and batched on the shared STFT (`mt3x.audio`).

For every snippet `f32[samples]` (mono, `FeatureConfig.sample_rate`) we take the STFT
(`mt3x.audio.spectrum`, periodic Hann, centred) and turn it into a one-sided power spectrum normalised
so that, by Parseval, the bins of a frame sum to the frame's mean square: a full-scale sine has a
power of 0.5 (-3 dB). From it, per frame:

- band energies on a log-frequency grid: `num_bands` triangular filters whose centres are
  log-spaced from `fmin_hz` to `fmax_hz` (about one third of an octave apart with the defaults);
  the filters are linear in log-frequency and sum to one at every frequency in [fmin, fmax], so the
  band energies of a frame add up to its power in that range. In dB (floored at `floor_db`).
- the spectral centroid (Hz), power-weighted, over [fmin, fmax];
- the band energy ratio: power below `split_hz` over power above it, in dB;
- the spectral flatness: geometric over arithmetic mean of the power in [fmin, fmax] (0..1; a pure
  tone is near 0, white noise near 1);
- the level: total power in [fmin, fmax], in dB.

Summaries over the snippet's frames give the features (`feature_names(config)`):

  band{b:02d}_{centre}Hz_{mean,std,max}_db   per band, the mean / std / max over frames (dB)
  centroid_hz, centroid_std_hz               energy-weighted mean / std over frames
  ber_db, ber_std_db                          ratio of the snippet's summed energies; frame std
  flatness, flatness_std                      energy-weighted mean / std over frames
  level_mean_db, level_max_db                 mean / max over frames of the level

Energy-weighted frame averages let silent frames (e.g. the zero padding of a final partial snippet)
count for nothing. The band centre frequency is in every band feature's name so importances can be
grouped by band (`band_of_feature`).
"""

from __future__ import annotations

import dataclasses
import functools
import re

import jax
import jax.numpy as jnp
import numpy as np

from mt3x import audio as mt3x_audio
from mt3x.errors import Mt3xError

__all__ = [
    "FeatureConfig",
    "FeatureConfigError",
    "band_centres_hz",
    "band_filterbank",
    "band_of_feature",
    "compute_features",
    "feature_names",
    "snippet_features",
]

_EPS = 1e-10


class FeatureConfigError(Mt3xError):
    """A feature configuration is inconsistent (bands outside the spectrum, empty bands, ...)."""


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """How snippets are analysed. Hashable: it is a static argument of the jitted kernel.

    Attributes:
      sample_rate: Hz of the snippets' audio.
      snippet_seconds: length of one snippet (s).
      n_fft: STFT size (samples); 2048 at 16 kHz gives 7.8 Hz bins, enough for 40 Hz bands.
      hop_length: STFT hop (samples).
      num_bands: log-frequency bands.
      fmin_hz, fmax_hz: centres of the lowest and highest band (Hz); the analysed range.
      split_hz: the low/high boundary of the band energy ratio (Hz).
      floor_db: dB floor for energies.
    """

    sample_rate: int = 16000
    snippet_seconds: float = 1.0
    n_fft: int = 2048
    hop_length: int = 512
    num_bands: int = 24
    fmin_hz: float = 40.0
    fmax_hz: float = 7600.0
    split_hz: float = 2000.0
    floor_db: float = -100.0

    @property
    def snippet_samples(self) -> int:
        return int(round(self.sample_rate * self.snippet_seconds))

    def validate(self) -> "FeatureConfig":
        """Returns self; raises FeatureConfigError naming the field that is out of range."""
        nyquist = self.sample_rate / 2
        if not 0 < self.fmin_hz < self.fmax_hz <= nyquist:
            raise FeatureConfigError(
                f"feature config: need 0 < fmin_hz ({self.fmin_hz}) < fmax_hz ({self.fmax_hz}) "
                f"<= Nyquist ({nyquist})")
        if not self.fmin_hz < self.split_hz < self.fmax_hz:
            raise FeatureConfigError(
                f"feature config: split_hz ({self.split_hz}) must lie inside "
                f"({self.fmin_hz}, {self.fmax_hz})")
        if self.num_bands < 2:
            raise FeatureConfigError(
                f"feature config: num_bands must be >= 2, got {self.num_bands}")
        if self.hop_length <= 0 or self.n_fft <= 0 or self.snippet_samples < self.n_fft // 2 + 1:
            raise FeatureConfigError(
                f"feature config: snippets of {self.snippet_samples} samples are too short for "
                f"n_fft={self.n_fft} (need > n_fft/2) or hop_length={self.hop_length} <= 0")
        band_filterbank(self)  # raises when a band gets no bin
        return self

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "FeatureConfig":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise FeatureConfigError(f"feature config: unknown fields {sorted(unknown)}")
        return cls(**data).validate()


def band_centres_hz(config: FeatureConfig) -> np.ndarray:
    """f64[num_bands]: log-spaced band centres from fmin_hz to fmax_hz (Hz)."""
    return np.geomspace(config.fmin_hz, config.fmax_hz, config.num_bands)


def bin_frequencies_hz(config: FeatureConfig) -> np.ndarray:
    """f64[n_fft // 2 + 1]: centre frequency of each STFT bin (Hz)."""
    return np.arange(config.n_fft // 2 + 1) * config.sample_rate / config.n_fft


@functools.lru_cache(maxsize=16)
def _filterbank_cached(config: FeatureConfig) -> np.ndarray:
    centres = np.log(band_centres_hz(config))
    freqs = bin_frequencies_hz(config)
    inside = (freqs >= config.fmin_hz) & (freqs <= config.fmax_hz)
    log_f = np.log(np.where(inside, freqs, config.fmin_hz))
    # Piecewise-linear interpolation of the identity between centres = triangles that sum to one.
    weights = np.zeros((freqs.size, config.num_bands))
    for b in range(config.num_bands):
        nodes = np.zeros(config.num_bands)
        nodes[b] = 1.0
        weights[:, b] = np.interp(log_f, centres, nodes)
    weights[~inside] = 0.0
    empty = np.flatnonzero(weights.sum(axis=0) <= 0)
    if empty.size:
        hz = band_centres_hz(config)[empty]
        raise FeatureConfigError(
            f"feature config: bands centred at {np.round(hz, 1).tolist()} Hz contain no STFT bin; "
            f"raise n_fft ({config.n_fft}), raise fmin_hz ({config.fmin_hz}) or use fewer bands")
    weights.setflags(write=False)
    return weights


def band_filterbank(config: FeatureConfig) -> np.ndarray:
    """f64[n_fft // 2 + 1, num_bands]: triangular log-frequency weights (partition of unity)."""
    return _filterbank_cached(config)


def _power_scale(config: FeatureConfig) -> np.ndarray:
    """f64[bins]: factor from |X|^2 to Parseval-normalised one-sided power (periodic Hann)."""
    n = config.n_fft
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)
    scale = np.full(n // 2 + 1, 2.0)
    scale[0] = 1.0
    if n % 2 == 0:
        scale[-1] = 1.0
    return scale / (n * np.sum(window ** 2))


def feature_names(config: FeatureConfig) -> list[str]:
    """Names of the columns of `snippet_features`, in order."""
    names = []
    for b, centre in enumerate(band_centres_hz(config)):
        for stat in ("mean", "std", "max"):
            names.append(f"band{b:02d}_{centre:.0f}Hz_{stat}_db")
    names += ["centroid_hz", "centroid_std_hz", "ber_db", "ber_std_db", "flatness", "flatness_std",
              "level_mean_db", "level_max_db"]
    return names


_BAND_NAME = re.compile(r"^band(\d+)_(\d+)Hz_")


def band_of_feature(name: str) -> tuple[int, float] | None:
    """(band index, centre Hz) for a band feature's name, None for the snippet-wide features."""
    match = _BAND_NAME.match(name)
    if match is None:
        return None
    return int(match.group(1)), float(match.group(2))


def _to_db(power: jax.Array, floor_db: float) -> jax.Array:
    return jnp.maximum(10.0 * jnp.log10(jnp.maximum(power, _EPS)), floor_db)


def _weighted_mean_std(values: jax.Array, weights: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean and std over the last axis of `values` [..., frames] under `weights` [..., frames]."""
    weights = weights + _EPS
    total = jnp.sum(weights, axis=-1)
    mean = jnp.sum(values * weights, axis=-1) / total
    var = jnp.sum(weights * (values - mean[..., None]) ** 2, axis=-1) / total
    return mean, jnp.sqrt(jnp.maximum(var, 0.0))


@functools.partial(jax.jit, static_argnames=("config",))
def snippet_features(snippets: jax.Array, config: FeatureConfig) -> jax.Array:
    """Features of a batch of snippets.

    Args:
      snippets: f32[batch, config.snippet_samples], mono at config.sample_rate, in [-1, 1].
      config: the analysis settings (static).

    Returns:
      f32[batch, len(feature_names(config))]: see the module docstring for units.
    """
    spec = mt3x_audio.stft(snippets.astype(jnp.float32), n_fft=config.n_fft,
                           hop_length=config.hop_length, window="hann",
                           center=True)                            # c64[batch, frames, bins]
    power = (jnp.real(spec) ** 2 + jnp.imag(spec) ** 2) * jnp.asarray(_power_scale(config),
                                                                       jnp.float32)
    weights = jnp.asarray(band_filterbank(config), jnp.float32)     # [bins, bands]
    bands = power @ weights                                         # [batch, frames, bands]
    bands_db = _to_db(bands, config.floor_db)
    band_stats = jnp.stack([bands_db.mean(axis=1), bands_db.std(axis=1), bands_db.max(axis=1)],
                           axis=-1).reshape(bands.shape[0], -1)     # [batch, bands * 3]

    freqs = bin_frequencies_hz(config)
    inside_np = (freqs >= config.fmin_hz) & (freqs <= config.fmax_hz)
    n_inside = float(inside_np.sum())
    inside = jnp.asarray(inside_np, jnp.float32)
    low = jnp.asarray(inside_np & (freqs < config.split_hz), jnp.float32)
    high = jnp.asarray(inside_np & (freqs >= config.split_hz), jnp.float32)
    freqs_j = jnp.asarray(freqs, jnp.float32)
    p_in = power * inside
    frame_energy = p_in.sum(axis=-1)                                # [batch, frames]
    centroid = (p_in @ freqs_j) / (frame_energy + _EPS)
    centroid_mean, centroid_std = _weighted_mean_std(centroid, frame_energy)

    e_low = power @ low
    e_high = power @ high
    ber_frames = _to_db(e_low, config.floor_db) - _to_db(e_high, config.floor_db)
    ber = _to_db(e_low.sum(axis=1), config.floor_db) - _to_db(e_high.sum(axis=1), config.floor_db)
    ber_std = ber_frames.std(axis=1)

    log_geo = (jnp.log(power + _EPS) * inside).sum(axis=-1) / n_inside
    flatness_frames = jnp.exp(log_geo) / (frame_energy / n_inside + _EPS)
    flatness_mean, flatness_std = _weighted_mean_std(flatness_frames, frame_energy)

    level_db = _to_db(frame_energy, config.floor_db)
    scalars = jnp.stack([centroid_mean, centroid_std, ber, ber_std, flatness_mean, flatness_std,
                         level_db.mean(axis=1), level_db.max(axis=1)], axis=-1)
    return jnp.concatenate([band_stats, scalars], axis=-1)


def compute_features(snippets: np.ndarray, config: FeatureConfig, *,
                     batch_size: int = 64) -> np.ndarray:
    """Host-side wrapper: features of any number of snippets with one compiled batch shape.

    Args:
      snippets: f32[n, config.snippet_samples].
      config: the analysis settings.
      batch_size: snippets per jitted call; the last batch is zero-padded so one shape compiles.

    Returns:
      f32[n, num_features] (numpy).
    """
    snippets = np.asarray(snippets, np.float32)
    if snippets.ndim != 2 or snippets.shape[1] != config.snippet_samples:
        raise FeatureConfigError(
            f"snippets: expected shape [n, {config.snippet_samples}], got {snippets.shape}")
    num = snippets.shape[0]
    out = np.empty((num, len(feature_names(config))), np.float32)
    if num == 0:
        return out
    for start in range(0, num, batch_size):
        chunk = snippets[start:start + batch_size]
        count = chunk.shape[0]
        if count < batch_size:
            chunk = np.concatenate([chunk, np.zeros((batch_size - count, chunk.shape[1]),
                                                    np.float32)])
        out[start:start + count] = np.asarray(snippet_features(chunk, config))[:count]
    return out

"""Separation scores: SI-SDR (numpy and jax.numpy), whole-signal SDR, BSSEval v4, what each
output is made of (`output_composition`) and summaries.

Conventions:
- Signals are batch-first: `reference, estimate: float[..., samples]` at any one sample rate.
- A reference whose mean power is at or below `silence_power` (default 1e-10, i.e. -100 dBFS) makes
  SI-SDR and SDR *undefined*: the per-signal functions return NaN there and `reference_is_silent`
  tells which; `summarize` turns a list of values into (median, mean, count defined, count
  undefined) with `None` for "no defined value", so tables never carry NaN.

SI-SDR follows Le Roux et al. (ICASSP 2019): both signals zero-mean, alpha = <s_hat, s> / ||s||^2,
SI-SDR = 10 log10(||alpha s||^2 / ||alpha s - s_hat||^2). SI-SDRi = SI-SDR(estimate) - SI-SDR(mixture).

BSSEval v4 is museval's: SDR/ISR/SIR/SAR on 1 s windows with time-invariant 512-tap distortion
filters, median over the windows whose reference is not silent. museval's `metrics` module is
loaded straight from its file because `import museval` pulls in musdb -> stempeg, which refuses to
import without an ffmpeg binary; the metrics themselves are numpy/scipy only.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import math
from types import ModuleType
from typing import Iterable, Sequence

import jax.numpy as jnp
import numpy as np

DEFAULT_SILENCE_POWER = 1e-10


# ----------------------------------------------------------------------------- numpy


def reference_is_silent(reference: np.ndarray, silence_power: float = DEFAULT_SILENCE_POWER
                        ) -> np.ndarray:
    """True where a reference carries no signal. `reference: float[..., samples]` -> bool[...]."""
    reference = np.asarray(reference, np.float64)
    centred = reference - reference.mean(axis=-1, keepdims=True)
    return np.mean(centred * centred, axis=-1) <= silence_power


def si_sdr(reference: np.ndarray, estimate: np.ndarray, *,
           silence_power: float = DEFAULT_SILENCE_POWER) -> np.ndarray:
    """Scale-invariant SDR in dB (numpy, float64).

    Args:
      reference: float[..., samples], the true source.
      estimate: float[..., samples], same shape.
      silence_power: mean power at or below which the reference counts as silent.

    Returns:
      float64[...]: SI-SDR in dB; NaN where the reference is silent (undefined); +inf is clipped
      to 300 dB when the estimate equals the reference exactly.
    """
    reference = np.asarray(reference, np.float64)
    estimate = np.asarray(estimate, np.float64)
    _check_same_shape(reference, estimate)
    s = reference - reference.mean(axis=-1, keepdims=True)
    e = estimate - estimate.mean(axis=-1, keepdims=True)
    s_energy = np.sum(s * s, axis=-1)
    silent = np.mean(s * s, axis=-1) <= silence_power
    alpha = np.sum(e * s, axis=-1) / np.where(silent, 1.0, s_energy)
    target = alpha[..., None] * s
    noise = target - e
    with np.errstate(divide="ignore", invalid="ignore"):
        value = 10.0 * np.log10(np.sum(target * target, axis=-1) / np.sum(noise * noise, axis=-1))
    value = np.clip(np.nan_to_num(value, nan=-300.0, posinf=300.0, neginf=-300.0), -300.0, 300.0)
    return np.where(silent, np.nan, value)


def sdr(reference: np.ndarray, estimate: np.ndarray, *,
        silence_power: float = DEFAULT_SILENCE_POWER) -> np.ndarray:
    """Plain whole-signal SDR in dB: 10 log10(||s||^2 / ||s - s_hat||^2), no projection, no mean removal.

    Shapes as `si_sdr`; NaN where the reference is silent; clipped to [-300, 300] dB.
    """
    reference = np.asarray(reference, np.float64)
    estimate = np.asarray(estimate, np.float64)
    _check_same_shape(reference, estimate)
    silent = np.mean(reference * reference, axis=-1) <= silence_power
    noise = reference - estimate
    with np.errstate(divide="ignore", invalid="ignore"):
        value = 10.0 * np.log10(np.sum(reference * reference, axis=-1) / np.sum(noise * noise, axis=-1))
    value = np.clip(np.nan_to_num(value, nan=-300.0, posinf=300.0, neginf=-300.0), -300.0, 300.0)
    return np.where(silent, np.nan, value)


def si_sdr_improvement(reference: np.ndarray, estimate: np.ndarray, mixture: np.ndarray, **kw
                       ) -> np.ndarray:
    """SI-SDRi in dB = SI-SDR(reference, estimate) - SI-SDR(reference, mixture); NaN if undefined.

    `mixture` broadcasts against `reference` (e.g. float[samples] against float[n_inst, samples]).
    """
    mixture = np.broadcast_to(np.asarray(mixture), np.shape(reference))
    return si_sdr(reference, estimate, **kw) - si_sdr(reference, mixture, **kw)


def output_composition(sources: np.ndarray, estimates: np.ndarray, mixture: np.ndarray, *,
                       silence_power: float = DEFAULT_SILENCE_POWER) -> np.ndarray:
    """What each output is made of: energy shares of every true source and of artifacts (numpy).

    Each (zero-mean) estimate is projected by least squares onto the span of the true sources and
    the residual (mixture - sum of sources, the instruments outside every group):
    `estimate_j = sum_k g_jk source_k + e_j`, e_j orthogonal to all of them (BSSEval's
    decomposition with time-invariant gains). The shares are `g_jk^2 ||source_k||^2` and
    `||e_j||^2`, divided by their sum, so a row sums to 1 (for uncorrelated sources the sum is
    `||estimate_j||^2`). Scale-invariant, like SI-SDR: perfect separation is 1 at the output's own
    source; the mixture as estimate gives every source its share of the mixture's energy.

    Args:
      sources: float[n_src, samples], the true group sources.
      estimates: float[n_out, samples], the separator's outputs.
      mixture: float[samples].
      silence_power: a source (or the residual) at or below this mean power gets share 0.

    Returns:
      float64[n_out, n_src + 2]: columns the n_src sources, the residual ('other'), artifacts;
      NaN rows for all-zero outputs.
    """
    sources = np.asarray(sources, np.float64)
    estimates = np.asarray(estimates, np.float64)
    mixture = np.asarray(mixture, np.float64)
    refs = np.concatenate([sources, (mixture - sources.sum(0))[None]])
    refs = refs - refs.mean(axis=-1, keepdims=True)
    outs = estimates - estimates.mean(axis=-1, keepdims=True)
    live = np.mean(refs * refs, axis=-1) > silence_power
    basis = refs[live]
    gains = np.linalg.lstsq(basis @ basis.T, basis @ outs.T, rcond=None)[0].T  # [n_out, n_live]
    error = outs - gains @ basis
    parts = np.zeros((outs.shape[0], refs.shape[0] + 1))
    parts[:, :-1][:, live] = gains ** 2 * np.sum(basis * basis, axis=-1)
    parts[:, -1] = np.sum(error * error, axis=-1)
    total = parts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, parts / total, np.nan)


def _check_same_shape(reference: np.ndarray, estimate: np.ndarray) -> None:
    if reference.shape != estimate.shape:
        from mt3x.errors import Mt3xError
        raise Mt3xError(f"reference shape {reference.shape} != estimate shape {estimate.shape}; "
                        "expected signals of equal length")


# ----------------------------------------------------------------------------- jax.numpy


def si_sdr_jax(reference: jnp.ndarray, estimate: jnp.ndarray, *, eps: float = 1e-8,
               silence_power: float = DEFAULT_SILENCE_POWER) -> tuple[jnp.ndarray, jnp.ndarray]:
    """SI-SDR in dB for jitted code (losses and training metrics).

    Args:
      reference, estimate: float32[..., samples].
      eps: keeps the ratio finite (added to both energies).

    Returns:
      (si_sdr: float32[...], defined: bool[...]); `si_sdr` is finite everywhere (0 where undefined)
      so it can be averaged with `defined` as weights (see `masked_mean`).
    """
    s = reference - jnp.mean(reference, axis=-1, keepdims=True)
    e = estimate - jnp.mean(estimate, axis=-1, keepdims=True)
    s_energy = jnp.sum(s * s, axis=-1)
    defined = jnp.mean(s * s, axis=-1) > silence_power
    alpha = jnp.sum(e * s, axis=-1) / (s_energy + eps)
    target = alpha[..., None] * s
    noise = target - e
    value = 10.0 * (jnp.log10(jnp.sum(target * target, axis=-1) + eps)
                    - jnp.log10(jnp.sum(noise * noise, axis=-1) + eps))
    return jnp.where(defined, value, 0.0), defined


def masked_mean(values: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
    """Mean of `values` where `mask` is true (0 when nothing is). Shapes equal; scalar out."""
    mask = mask.astype(values.dtype)
    return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


# ----------------------------------------------------------------------------- BSSEval v4


@functools.lru_cache(maxsize=1)
def _museval_metrics() -> ModuleType:
    spec = importlib.util.find_spec("museval")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("museval is not installed (pip install museval)")
    path = f"{list(spec.submodule_search_locations)[0]}/metrics.py"
    module_spec = importlib.util.spec_from_file_location("_mt3x_museval_metrics", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


@dataclasses.dataclass(frozen=True)
class BssEvalScores:
    """Median-over-windows BSSEval v4 scores for one source; None when no window is defined."""
    sdr: float | None
    sir: float | None
    sar: float | None
    isr: float | None
    windows_defined: int
    windows_total: int


def bss_eval_v4(references: np.ndarray, estimates: np.ndarray, sample_rate: int, *,
                window_seconds: float = 1.0) -> list[BssEvalScores]:
    """museval-style BSSEval v4 for mono sources (time-invariant filters, 1 s windows, no overlap).

    Args:
      references: float[n_sources, samples] true sources (all of them, so SIR is meaningful).
      estimates: float[n_sources, samples] estimates in the same order.
      sample_rate: Hz; sets the window length.

    Returns:
      one `BssEvalScores` per source (median over windows with a non-silent reference).
      A source that is silent everywhere gets all-None scores; museval's projection is run on the
      non-silent sources only (a silent reference makes its Gram matrix singular).
    """
    references = np.asarray(references, np.float64)
    estimates = np.asarray(estimates, np.float64)
    _check_same_shape(references, estimates)
    n_sources, n_samples = references.shape
    window = int(round(window_seconds * sample_rate))
    n_windows = max(1, math.ceil(n_samples / window))
    silent = reference_is_silent(references)
    results: list[BssEvalScores] = [BssEvalScores(None, None, None, None, 0, n_windows)] * n_sources
    active = np.flatnonzero(~silent)
    if active.size == 0:
        return results
    pad = n_windows * window - n_samples
    ref = np.pad(references[active], ((0, 0), (0, pad)))[..., None]
    est = np.pad(estimates[active], ((0, 0), (0, pad)))[..., None]
    metrics = _museval_metrics()
    sdr_w, isr_w, sir_w, sar_w, _ = metrics.bss_eval(
        ref, est, window=window, hop=window, compute_permutation=False, filters_len=512,
        framewise_filters=False, bsseval_sources_version=False)
    for row, j in enumerate(active):
        ok = np.isfinite(sdr_w[row])
        def med(x: np.ndarray) -> float | None:
            vals = x[np.isfinite(x)]
            return float(np.median(vals)) if vals.size else None
        results[j] = BssEvalScores(med(sdr_w[row]), med(sir_w[row]), med(sar_w[row]),
                                   med(isr_w[row]), int(ok.sum()), int(sdr_w.shape[1]))
    return results


def whole_signal_bss_eval(references: np.ndarray, estimates: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Whole-signal BSSEval (sources version, 512-tap filters, one window over everything).

    museval's implementation is used (fast_bss_eval 0.1.x's numpy backend breaks on NumPy 2's
    `linalg.solve` broadcasting rules). Args/shapes as `bss_eval_v4`; silent references must be
    removed by the caller. Returns (sdr, sir, sar): float64[n_sources] each.
    """
    references = np.asarray(references, np.float64)
    estimates = np.asarray(estimates, np.float64)
    _check_same_shape(references, estimates)
    n = references.shape[-1]
    sdr_w, _, sir_w, sar_w, _ = _museval_metrics().bss_eval(
        references[..., None], estimates[..., None], window=n, hop=n, compute_permutation=False,
        filters_len=512, framewise_filters=False, bsseval_sources_version=True)
    return sdr_w[:, 0], sir_w[:, 0], sar_w[:, 0]


# ----------------------------------------------------------------------------- summaries


@dataclasses.dataclass(frozen=True)
class Summary:
    """Aggregate of per-example scores: undefined values (NaN/None) are counted, not averaged."""
    median: float | None
    mean: float | None
    n_defined: int
    n_undefined: int

    def format(self, digits: int = 2) -> str:
        """'4.21' or 'n/a'; ' (k undefined)' appended when some were undefined."""
        text = "n/a" if self.median is None else f"{self.median:.{digits}f}"
        return text + (f" ({self.n_undefined} undef.)" if self.n_undefined else "")


def summarize(values: Iterable[float | None]) -> Summary:
    """Median and mean over the defined values (finite floats); None/NaN are counted as undefined."""
    defined: list[float] = []
    undefined = 0
    for v in values:
        if v is None or not np.isfinite(v):
            undefined += 1
        else:
            defined.append(float(v))
    if not defined:
        return Summary(None, None, 0, undefined)
    return Summary(float(np.median(defined)), float(np.mean(defined)), len(defined), undefined)


def as_optional(values: Sequence[float] | np.ndarray) -> list[float | None]:
    """Float array with NaN for undefined -> list with None for undefined (for JSON/CSV)."""
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(values, np.float64).ravel()]

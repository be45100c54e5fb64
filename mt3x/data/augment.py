"""Seeded augmentation applied to stems before mixing (so the mix stays the sum of the stems).

- Synthetic room impulse responses: a direct impulse, sparse early reflections in the first tens of
  milliseconds, and a late tail of Gaussian noise decaying exponentially to -60 dB at RT60
  ('hall' RT60 1.6-2.6 s, 'room' 0.2-0.5 s, 'random' 0.1-3.0 s). One IR per track (one room),
  convolved with every stem, output cut to the stem's length.
- Additive white Gaussian noise at a signal-to-noise ratio (dB) measured against each stem's power.
- Per-stem gain in dB.
- Per-stem variation: a random equaliser (a high-pass, a low-pass and a peaking band, each
  optional, drawn per stem) and, with `stem_ir_probability`, a room of the stem's own (a 'random'
  IR with its own wet level) instead of the track's.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import signal as scipy_signal

from mt3x.errors import Mt3xError

IR_KINDS = ("hall", "room", "random")
_RT60_RANGES = {"hall": (1.6, 2.6), "room": (0.2, 0.5), "random": (0.1, 3.0)}
_EARLY_MS = {"hall": (20.0, 80.0), "room": (2.0, 20.0), "random": (2.0, 80.0)}


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """What to apply to a track's stems.

    Attributes:
      ir: None, or an IR kind from IR_KINDS.
      ir_probability: chance (per track) that the IR is applied.
      wet: level of the reverberant part relative to the direct sound (linear, 0..1].
      noise_snr_db: None, or (low, high) dB; each stem gets noise at an SNR drawn uniformly.
      gain_db: None, or (low, high) dB; each stem's gain is drawn uniformly.
      eq: draw a random equaliser per stem (see `random_eq`).
      stem_ir_probability: chance (per stem) of a stem-specific 'random' IR (wet 0.1-0.6).
    """

    ir: str | None = None
    ir_probability: float = 1.0
    wet: float = 0.5
    noise_snr_db: tuple[float, float] | None = None
    gain_db: tuple[float, float] | None = None
    eq: bool = False
    stem_ir_probability: float = 0.0

    def __post_init__(self) -> None:
        if self.ir is not None and self.ir not in IR_KINDS:
            raise Mt3xError(f"augmentation ir: expected one of {IR_KINDS} or None, got {self.ir!r}")
        if not 0.0 <= self.stem_ir_probability <= 1.0:
            raise Mt3xError(f"augmentation stem_ir_probability: expected 0..1, got {self.stem_ir_probability}")
        if not 0.0 <= self.ir_probability <= 1.0:
            raise Mt3xError(f"augmentation ir_probability: expected 0..1, got {self.ir_probability}")
        for field in ("noise_snr_db", "gain_db"):
            value = getattr(self, field)
            if value is not None and (len(value) != 2 or value[0] > value[1]):
                raise Mt3xError(f"augmentation {field}: expected (low, high) with low <= high, got {value}")

    @property
    def active(self) -> bool:
        return (self.ir is not None or self.noise_snr_db is not None or self.gain_db is not None
                or self.eq or self.stem_ir_probability > 0.0)


def synthetic_ir(kind: str, sample_rate: int, rng: np.random.Generator, *, wet: float = 0.5
                 ) -> tuple[np.ndarray, dict]:
    """A synthetic room impulse response.

    Returns:
      (ir, info): `f32[taps]` with ir[0] = 1 (the direct sound), taps = RT60 seconds of samples;
      info = {'kind', 'rt60', 'early_reflections'} for the metadata.
    """
    if kind not in IR_KINDS:
        raise Mt3xError(f"ir kind: expected one of {IR_KINDS}, got {kind!r}")
    rt60 = float(rng.uniform(*_RT60_RANGES[kind]))
    taps = max(2, int(rt60 * sample_rate))
    t = np.arange(taps) / sample_rate
    envelope = 10.0 ** (-3.0 * t / rt60)  # -60 dB at rt60
    tail = rng.standard_normal(taps) * envelope
    # Darken the tail a little: a one-pole low-pass, as air and walls absorb highs.
    tail = scipy_signal.lfilter([0.4], [1.0, -0.6], tail)
    early_lo, early_hi = _EARLY_MS[kind]
    n_early = int(rng.integers(4, 10))
    early_delays = np.sort(rng.uniform(early_lo, early_hi, n_early)) / 1000.0
    onset = int(early_delays[0] * sample_rate)
    tail[:onset] = 0.0
    tail *= wet / max(np.sqrt(np.sum(tail**2)), 1e-12)
    ir = tail
    for delay in early_delays:
        k = min(taps - 1, max(1, int(round(delay * sample_rate))))
        ir[k] += wet * float(rng.uniform(0.2, 0.6)) * math.exp(-3.0 * delay / rt60) * float(rng.choice([-1, 1]))
    ir[0] = 1.0
    info = {"kind": kind, "rt60": round(rt60, 4), "early_reflections": n_early}
    return ir.astype(np.float32), info


def convolve(audio: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """`f32[samples]` convolved with `ir`, cut to the input's length (float64 FFT, deterministic)."""
    out = scipy_signal.fftconvolve(np.asarray(audio, np.float64), np.asarray(ir, np.float64))
    return out[: audio.shape[0]].astype(np.float32)


def _biquad(kind: str, freq: float, sample_rate: int, q: float = 0.707, gain_db: float = 0.0
            ) -> tuple[np.ndarray, np.ndarray]:
    """RBJ cookbook biquad (b, a) for 'highpass', 'lowpass' or 'peak' at `freq` Hz."""
    w0 = 2.0 * math.pi * freq / sample_rate
    alpha = math.sin(w0) / (2.0 * q)
    cos = math.cos(w0)
    if kind == "peak":
        amp = 10.0 ** (gain_db / 40.0)
        b = [1 + alpha * amp, -2 * cos, 1 - alpha * amp]
        a = [1 + alpha / amp, -2 * cos, 1 - alpha / amp]
    elif kind == "lowpass":
        b = [(1 - cos) / 2, 1 - cos, (1 - cos) / 2]
        a = [1 + alpha, -2 * cos, 1 - alpha]
    else:
        b = [(1 + cos) / 2, -(1 + cos), (1 + cos) / 2]
        a = [1 + alpha, -2 * cos, 1 - alpha]
    return np.asarray(b) / a[0], np.asarray(a) / a[0]


def random_eq(audio: np.ndarray, sample_rate: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A seeded equaliser on `f32[samples]`: high-pass 20-300 Hz (p 0.5), low-pass from 2 kHz to
    0.45 of the sample rate (p 0.5), a peaking band 100 Hz-5 kHz of -9..+9 dB, Q 0.5-3 (p 0.7).

    Returns (f32[samples], info for metadata)."""
    info: dict = {}
    out = np.asarray(audio, np.float64)
    nyquist = sample_rate / 2.0
    if rng.uniform() < 0.5:
        info["highpass_hz"] = round(float(np.exp(rng.uniform(np.log(20.0), np.log(300.0)))), 1)
        out = scipy_signal.lfilter(*_biquad("highpass", info["highpass_hz"], sample_rate), out)
    if rng.uniform() < 0.5:
        high = 0.45 * sample_rate
        info["lowpass_hz"] = round(float(np.exp(rng.uniform(np.log(min(2000.0, high)), np.log(high)))), 1)
        out = scipy_signal.lfilter(*_biquad("lowpass", info["lowpass_hz"], sample_rate), out)
    if rng.uniform() < 0.7:
        freq = float(np.exp(rng.uniform(np.log(100.0), np.log(min(5000.0, 0.4 * nyquist * 2)))))
        info["peak_hz"], info["peak_db"] = round(freq, 1), round(float(rng.uniform(-9.0, 9.0)), 2)
        info["peak_q"] = round(float(rng.uniform(0.5, 3.0)), 3)
        out = scipy_signal.lfilter(*_biquad("peak", info["peak_hz"], sample_rate, info["peak_q"],
                                            info["peak_db"]), out)
    return out.astype(np.float32), info


def add_white_noise(audio: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Adds white Gaussian noise so that 10 log10(P_signal / P_noise) = snr_db; silence is kept."""
    power = float(np.mean(np.asarray(audio, np.float64) ** 2))
    if power <= 0.0:
        return np.asarray(audio, np.float32).copy()
    noise = rng.standard_normal(audio.shape[0]) * math.sqrt(power / 10.0 ** (snr_db / 10.0))
    return (audio + noise).astype(np.float32)


def apply_gain_db(audio: np.ndarray, gain_db: float) -> np.ndarray:
    return (np.asarray(audio, np.float32) * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32)


def augment_stems(
    stems: list[np.ndarray], augmentation: Augmentation, sample_rate: int, seed: int
) -> tuple[list[np.ndarray], dict, list[dict]]:
    """Applies `augmentation` to a track's stems (`f32[samples]` each) with one seed.

    Order per stem: equaliser, room IR (the stem's own or the track's), gain, noise. Returns (stems, track_info, per_stem_info) where the
    infos are plain dicts for metadata.yaml.
    """
    rng = np.random.default_rng(seed)
    track_info: dict = {"seed": int(seed)}
    ir = None
    if augmentation.ir is not None and rng.uniform() < augmentation.ir_probability:
        ir, track_info["ir"] = synthetic_ir(augmentation.ir, sample_rate, rng, wet=augmentation.wet)
    else:
        track_info["ir"] = None
    out, stem_infos = [], []
    for stem in stems:
        info: dict = {}
        audio = np.asarray(stem, np.float32)
        if augmentation.eq:
            audio, info["eq"] = random_eq(audio, sample_rate, rng)
        if augmentation.stem_ir_probability > 0.0 and rng.uniform() < augmentation.stem_ir_probability:
            stem_ir, info["ir"] = synthetic_ir("random", sample_rate, rng, wet=float(rng.uniform(0.1, 0.6)))
            audio = convolve(audio, stem_ir)
        elif ir is not None:
            audio = convolve(audio, ir)
        if augmentation.gain_db is not None:
            info["gain_db"] = round(float(rng.uniform(*augmentation.gain_db)), 3)
            audio = apply_gain_db(audio, info["gain_db"])
        if augmentation.noise_snr_db is not None:
            info["noise_snr_db"] = round(float(rng.uniform(*augmentation.noise_snr_db)), 3)
            audio = add_white_noise(audio, info["noise_snr_db"], rng)
        out.append(audio)
        stem_infos.append(info)
    return out, track_info, stem_infos

"""Shared helpers for the spectral-kernel tests: synthetic audio and tf.signal references."""

from __future__ import annotations

import numpy as np


def harmonic_audio(num_samples: int, sample_rate: int, seed: int) -> np.ndarray:
    """"Musical" float32 audio: notes with 8 harmonics, attack/decay envelopes, random onsets.

    Each note is a MIDI pitch 36..96 with harmonic amplitudes 1/h (harmonics above Nyquist
    dropped), a 5-30 ms linear attack and an exponential decay, starting anywhere in the clip
    (the first samples may be silent). Peak-normalised to 0.8.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / sample_rate
    audio = np.zeros(num_samples)
    duration = num_samples / sample_rate
    for _ in range(12):
        pitch = rng.integers(36, 97)
        f0 = 440.0 * 2.0 ** ((pitch - 69) / 12)
        onset = rng.uniform(0.0, duration * 0.9)
        attack = rng.uniform(0.005, 0.03)
        decay = rng.uniform(0.1, 1.5)
        local = t - onset
        envelope = np.where(local < 0, 0.0,
                            np.where(local < attack, local / attack,
                                     np.exp(-(local - attack) / decay)))
        phase = rng.uniform(0, 2 * np.pi)
        note = np.zeros(num_samples)
        for h in range(1, 9):
            if h * f0 < sample_rate / 2:
                note += np.sin(2 * np.pi * h * f0 * t + h * phase) / h
        audio += rng.uniform(0.2, 1.0) * envelope * note
    return (0.8 * audio / np.abs(audio).max()).astype(np.float32)


def tf_mt3_log_mel(segments: np.ndarray) -> np.ndarray:
    """MT3's front end in TensorFlow, the way mt3/spectral_ops.py computes it.

    Args:
      segments: float32 `[batch, frames, 128]` sample frames; each segment is flattened and
        transformed on its own (mt3.preprocessors.compute_spectrograms).

    Returns:
      float32 `[batch, frames, 512]`.
    """
    import tensorflow as tf

    outputs = []
    for segment in segments:
        samples = tf.reshape(tf.convert_to_tensor(segment, tf.float32), [-1])
        spectrum = tf.signal.stft(samples, frame_length=2048, frame_step=int(2048 * (1 - 0.9375)),
                                  fft_length=None, pad_end=True)
        magnitude = tf.abs(spectrum)
        weights = tf.signal.linear_to_mel_weight_matrix(512, int(magnitude.shape[-1]), 16000,
                                                        20.0, 7600.0)
        mel = tf.tensordot(magnitude, weights, 1)
        outputs.append(tf.math.log(tf.where(mel <= 0.0, 1e-5, mel)).numpy())
    return np.stack(outputs)

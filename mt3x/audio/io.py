"""Audio file I/O on the host (numpy): read, mix down, resample, write.

Reading goes through libsndfile (python-soundfile): WAV, FLAC, OGG/Vorbis, AIFF and, where the
installed libsndfile has it (>= 1.1), MP3. Problems a user can cause (a missing, unreadable, empty
or truncated file; an unknown suffix) raise `AudioError` naming the file and the problem.

Conventions: float32 samples in [-1, 1]; mono audio is `f32[samples]`, multichannel audio is
channel-first `f32[channels, samples]`; sample rates in Hz.

16-bit PCM is quantised here (not by libsndfile) as `round(x * 32768)` clipped to int16, so that
`read_audio(write_audio(x))` returns `q / 32768` exactly and a mixture written from integer stems
reads back as the exact sum of the stems' readings.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import soundfile
from scipy import signal as scipy_signal

from mt3x.errors import Mt3xError
from mt3x.util.files import atomic_path

__all__ = [
    "AudioError",
    "audio_info",
    "read_audio",
    "resample",
    "write_audio",
    "quantize_pcm16",
    "SUFFIX_FORMATS",
]

# File suffix -> libsndfile major format.
SUFFIX_FORMATS: dict[str, str] = {
    ".wav": "WAV",
    ".flac": "FLAC",
    ".ogg": "OGG",
    ".oga": "OGG",
    ".aif": "AIFF",
    ".aiff": "AIFF",
    ".mp3": "MP3",
}

_PCM16_SCALE = 32768.0
# libsndfile command that turns off the PEAK chunk (it holds a timestamp) in float WAV/AIFF files.
_SFC_SET_ADD_PEAK_CHUNK = 0x1050
# "data : 32000 (should be 15978)": libsndfile's note that a WAV's data chunk is cut short.
_WAV_SHORT_DATA = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


class AudioError(Mt3xError):
    """An audio file is missing, unreadable, empty, truncated or cannot be written."""


def audio_info(path: str | os.PathLike) -> soundfile._SoundFileInfo:
    """Returns libsndfile's header information (frames, samplerate, channels, format) for `path`.

    Raises:
      AudioError: the file is missing or libsndfile cannot parse it.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: audio file not found")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: audio file is empty (0 bytes)")
    try:
        return soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioError(f"{path}: not a readable audio file ({err})") from err


def _truncation_problem(path: Path, info: soundfile._SoundFileInfo, frames_read: int) -> str | None:
    """Returns a description of how `path` is truncated, or None when it looks whole."""
    extra = info.extra_info or ""
    match = _WAV_SHORT_DATA.search(extra)
    if match is not None:
        declared, present = int(match.group(1)), int(match.group(2))
        block = max(1, info.channels) * 4  # tolerate padding of up to one 32-bit frame
        if present + block < declared:
            return f"truncated: the data chunk declares {declared} bytes but only {present} are present"
    if "File ended unexpectedly" in extra:
        return "truncated: the stream ends without an end-of-stream marker"
    if info.frames > 0 and frames_read < info.frames:
        return f"truncated: the header declares {info.frames} frames but only {frames_read} could be decoded"
    return None


def read_audio(
    path: str | os.PathLike, *, sample_rate: int | None = None, mono: bool = True
) -> tuple[np.ndarray, int]:
    """Reads an audio file as float32.

    Args:
      path: a .wav, .flac, .ogg, .aiff or (where libsndfile supports it) .mp3 file.
      sample_rate: resample to this rate in Hz (None keeps the file's rate).
      mono: average the channels into one.

    Returns:
      (audio, sr): `f32[samples]` when `mono`, else `f32[channels, samples]` (also for a one-channel
      file); `sr` is the rate of the returned audio in Hz.

    Raises:
      AudioError: the file is missing, unreadable, empty (no samples), truncated, or holds NaN or
        infinite samples.
    """
    path = Path(path)
    info = audio_info(path)
    try:
        data, file_sr = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError) as err:
        raise AudioError(f"{path}: cannot decode audio ({err}); the file may be truncated or corrupt") from err
    problem = _truncation_problem(path, info, data.shape[0])
    if problem is not None:
        raise AudioError(f"{path}: {problem}")
    if data.shape[0] == 0:
        raise AudioError(f"{path}: audio file has no samples")
    if not np.isfinite(data).all():  # float WAV/FLAC can store them; every model turns them to NaN
        bad = int(np.count_nonzero(~np.isfinite(data)))
        raise AudioError(f"{path}: audio contains {bad} NaN or infinite samples")
    audio = np.ascontiguousarray(data.T)  # [channels, samples]
    if mono:
        audio = audio.mean(axis=0, dtype=np.float32) if audio.shape[0] > 1 else audio[0]
    if sample_rate is not None and int(sample_rate) != int(file_sr):
        audio = resample(audio, int(file_sr), int(sample_rate))
        file_sr = int(sample_rate)
    return audio.astype(np.float32, copy=False), int(file_sr)


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited polyphase resampling along the last axis (deterministic numpy/scipy).

    Uses `scipy.signal.resample_poly` with the rate ratio reduced by its gcd (a Kaiser-windowed FIR
    anti-aliasing filter), computed in float64.

    Args:
      audio: `f32[..., samples]` at `orig_sr` Hz.
      orig_sr: input rate in Hz (> 0).
      target_sr: output rate in Hz (> 0).

    Returns:
      `f32[..., ceil(samples * target_sr / orig_sr)]` at `target_sr` Hz.
    """
    orig_sr, target_sr = int(orig_sr), int(target_sr)
    if orig_sr <= 0 or target_sr <= 0:
        raise AudioError(f"resample: sample rates must be positive, got {orig_sr} -> {target_sr}")
    audio = np.asarray(audio)
    if orig_sr == target_sr:
        return audio.astype(np.float32, copy=True)
    if audio.shape[-1] == 0:
        return np.zeros(audio.shape[:-1] + (0,), np.float32)
    g = math.gcd(orig_sr, target_sr)
    up, down = target_sr // g, orig_sr // g
    out = scipy_signal.resample_poly(audio.astype(np.float64), up, down, axis=-1)
    return out.astype(np.float32)


def quantize_pcm16(audio: np.ndarray) -> np.ndarray:
    """Quantises float audio in [-1, 1] to int16 as `clip(round(x * 32768), -32768, 32767)`.

    `quantize_pcm16(x) / 32768` is what `read_audio` returns for a 16-bit file holding `x`.
    """
    audio = np.asarray(audio)
    if not np.all(np.isfinite(audio)):
        raise AudioError("quantize_pcm16: audio contains NaN or infinite samples")
    return np.clip(np.round(audio.astype(np.float64) * _PCM16_SCALE), -32768, 32767).astype(np.int16)


def write_audio(
    path: str | os.PathLike,
    audio: np.ndarray,
    sample_rate: int,
    *,
    subtype: str | None = "PCM_16",
) -> Path:
    """Writes audio atomically (temporary file + rename); the format follows the suffix.

    Args:
      path: destination; .wav, .flac, .ogg, .aiff (and .mp3 where libsndfile can encode it).
      audio: `f32[samples]` or `f32[channels, samples]` in [-1, 1] (values outside are clipped),
        or `int16` of the same shapes, written verbatim as 16-bit PCM.
      sample_rate: in Hz.
      subtype: libsndfile subtype ('PCM_16', 'PCM_24', 'FLOAT', ...); None takes the format's
        default. Ignored for .ogg / .mp3. Int16 input requires 'PCM_16' (or None).

    Returns:
      the final path. Files are byte-reproducible: the same audio gives the same bytes (no
      timestamps; float WAV files carry no PEAK chunk).

    Raises:
      AudioError: unknown suffix, bad shape, non-finite samples, or libsndfile cannot write.
    """
    path = Path(path)
    fmt = SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise AudioError(f"{path}: cannot tell the audio format from suffix {path.suffix!r}; "
                         f"expected one of {sorted(SUFFIX_FORMATS)}")
    audio = np.asarray(audio)
    if audio.ndim not in (1, 2) or audio.shape[-1] == 0:
        raise AudioError(f"{path}: expected audio of shape [samples] or [channels, samples] with "
                         f"samples > 0, got {audio.shape}")
    if fmt in ("OGG", "MP3"):
        subtype = None
    if audio.dtype == np.int16:
        if subtype not in ("PCM_16", None) or fmt in ("OGG", "MP3"):
            raise AudioError(f"{path}: int16 audio can only be written as PCM_16, not {subtype!r}")
        subtype = "PCM_16"
        data = audio
    else:
        if not np.all(np.isfinite(audio)):
            raise AudioError(f"{path}: audio contains NaN or infinite samples")
        if subtype == "PCM_16":
            data = quantize_pcm16(audio)
        else:
            data = np.clip(audio.astype(np.float32), -1.0, 1.0)
    frames = data.T if data.ndim == 2 else data  # soundfile wants [samples, channels]
    channels = 1 if data.ndim == 1 else data.shape[0]
    try:
        with atomic_path(path) as tmp:
            with soundfile.SoundFile(str(tmp), "w", samplerate=int(sample_rate), channels=channels,
                                     format=fmt, subtype=subtype) as handle:
                if fmt in ("WAV", "AIFF"):
                    soundfile._snd.sf_command(handle._file, _SFC_SET_ADD_PEAK_CHUNK,
                                              soundfile._ffi.NULL, 0)
                handle.write(np.ascontiguousarray(frames))
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioError(f"{path}: cannot write {fmt} audio with subtype {subtype!r} ({err})") from err
    return path

"""The error of the transcription pipeline (every stage raises it; imports nothing heavy)."""

from __future__ import annotations

from mt3x.errors import Mt3xError


class TranscriptionError(Mt3xError):
    """Audio that cannot be transcribed (too short, silent) or an unusable checkpoint/model."""

"""The error a t5x checkpoint that cannot be read, mapped or written raises."""

from __future__ import annotations

from mt3x.errors import Mt3xError


class T5xCheckpointError(Mt3xError):
    """A t5x checkpoint is missing, damaged, of an unknown layout or does not fit the model.

    The message names the file or array (its dotted t5x name) and what was expected.
    """

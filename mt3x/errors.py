"""Errors that a user's input can cause.

Every such error names the file (or field) and what was expected, so a command line can print it
and exit non-zero without a traceback.
"""


class Mt3xError(ValueError):
    """Base class for user-facing errors (bad files, bad configs, bad arguments)."""

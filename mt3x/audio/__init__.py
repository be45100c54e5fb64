"""mt3x.audio."""

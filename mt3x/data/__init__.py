"""mt3x.data."""

"""mt3x.trainer."""

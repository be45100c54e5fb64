"""mt3x.codec."""

"""mt3x.models."""

"""mt3x.cli."""

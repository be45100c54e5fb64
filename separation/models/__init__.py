"""Separator networks."""

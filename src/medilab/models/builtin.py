"""Importing this module registers every built-in model."""

from medilab.models import mlp  # noqa: F401

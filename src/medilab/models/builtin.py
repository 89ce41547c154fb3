"""Importing this module registers every built-in model."""

from medilab.models import fcn8s, mlp, unet  # noqa: F401

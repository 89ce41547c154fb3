"""Importing this module registers every built-in model."""

from medilab.models import cnn3d, fcn8s, fusion, mlp, unet  # noqa: F401

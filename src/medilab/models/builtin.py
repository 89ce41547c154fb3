"""Importing this module registers every built-in model."""

from medilab.models import backbones, convnet, fcn8s, fusion_head, mlp, unet  # noqa: F401

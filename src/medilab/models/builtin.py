"""Importing this module registers every built-in model."""

from medilab.models import (  # noqa: F401
    backbones,
    cnn3d,
    convnet,
    detection,
    fcn8s,
    fusion,
    fusion_head,
    mlp,
    unet,
)

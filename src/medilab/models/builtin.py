"""Importing this module registers every built-in model."""

from medilab.models import (  # noqa: F401
    backbones,
    convnet,
    detection,
    fcn8s,
    fusion_head,
    mlp,
    unet,
)

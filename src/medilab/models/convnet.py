"""A plain CNN for small medical images (MedMNIST 28 px, 64 px X-rays) that trains in CPU
minutes from random initialisation: blocks of [conv 3×3 → BatchNorm → ReLU] × ``convs`` then
max-pool, global average pooling, and the shared covariate fusion head."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from medilab.models.fusion_head import FeatureClassifier
from medilab.models.registry import register_model


class ConvFeatures(nn.Module):
    """(N, C, H, W) → (N, widths[-1]) features."""

    def __init__(
        self, in_channels: int, widths: Sequence[int] = (32, 64, 128), convs: int = 2,
        spatial_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for width in widths:
            for _ in range(convs):
                layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False),
                           nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
                channels = width
            layers.append(nn.MaxPool2d(2))
            if spatial_dropout:
                layers.append(nn.Dropout2d(spatial_dropout))
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.num_features = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


@register_model("convnet")
def convnet(
    in_channels: int = 1,
    num_classes: int = 2,
    image_size: Any = None,
    num_covariates: int = 0,
    widths: Sequence[int] = (32, 64, 128),
    convs: int = 2,
    spatial_dropout: float = 0.0,
    hidden: int = 0,
    dropout: float = 0.3,
    covariate_scale: float = 1.0,
) -> FeatureClassifier:
    """``len(widths)`` blocks of ``convs`` convolutions (image size halves per block)."""
    backbone = ConvFeatures(in_channels, widths, convs, spatial_dropout)
    return FeatureClassifier(backbone, backbone.num_features, num_covariates, num_classes,
                             hidden=hidden, dropout=dropout, covariate_scale=covariate_scale)

"""Lab 1 models: a fully connected SimpleNN and a small CNN for small grey images."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from medilab.models.registry import register_model


class SimpleNN(nn.Module):
    """Flatten → [Linear → BatchNorm → ReLU → Dropout] × len(hidden_sizes) → Linear."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden_sizes: Sequence[int] = (512, 256),
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
            layers.append(nn.Dropout(dropout))
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SmallCNN(nn.Module):
    """Two conv blocks (conv-BN-ReLU ×2, max-pool) and a dropout + linear head."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        widths: Sequence[int] = (32, 64),
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        channels = in_channels
        for width in widths:
            blocks += [
                _conv_bn_relu(channels, width),
                _conv_bn_relu(width, width),
                nn.MaxPool2d(2, ceil_mode=True),
            ]
            channels = width
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(channels, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


@register_model("simple_nn")
def simple_nn(
    in_channels: int,
    image_size: Sequence[int],
    num_classes: int,
    hidden_sizes: Sequence[int] = (512, 256),
    dropout: float = 0.2,
) -> SimpleNN:
    """SimpleNN for images of ``in_channels × image_size`` pixels."""
    in_features = in_channels * int(torch.tensor(list(image_size)).prod())
    return SimpleNN(in_features, num_classes, hidden_sizes, dropout)


@register_model("small_cnn")
def small_cnn(
    in_channels: int,
    num_classes: int,
    image_size: Sequence[int] | None = None,
    widths: Sequence[int] = (32, 64),
    dropout: float = 0.3,
) -> SmallCNN:
    """Small CNN; ``image_size`` is accepted for a uniform call but not needed."""
    return SmallCNN(in_channels, num_classes, widths, dropout)

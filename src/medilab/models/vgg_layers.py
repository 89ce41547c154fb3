"""torchvision's VGG16 convolutional layers with VGG's initialisation, for any input channels
(FCN-8s' encoder and the VGG16 classification backbone)."""

from __future__ import annotations

from torch import nn
from torchvision.models.vgg import cfgs, make_layers


def vgg16_conv_layers(in_channels: int = 3, batch_norm: bool = False) -> nn.Sequential:
    """VGG16's (or VGG16-BN's) conv/pool layers, indexed as torchvision's ``features``, without
    building its 120M-weight classifier; the first conv takes ``in_channels``."""
    features = make_layers(cfgs["D"], batch_norm=batch_norm)
    if in_channels != 3:
        features[0] = nn.Conv2d(in_channels, 64, 3, padding=1)
    for layer in features.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(layer.bias)
    return features

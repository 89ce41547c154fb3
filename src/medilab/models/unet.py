"""U-Net (Ronneberger et al., 2015) for 2D or 3D images, with "same" convolutions.

Inputs of any size work: the image is padded to a multiple of ``2**depth`` (reflection where
possible) and the output cropped back, so 565×584 DRIVE images give 565×584 logits.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from medilab.errors import ConfigError
from medilab.models.registry import register_model

Norm = Literal["batch", "instance", "none"]


def _layers(spatial_dims: int) -> tuple[type[nn.Module], ...]:
    if spatial_dims == 2:
        return nn.Conv2d, nn.ConvTranspose2d, nn.MaxPool2d, nn.BatchNorm2d, nn.InstanceNorm2d
    if spatial_dims == 3:
        return nn.Conv3d, nn.ConvTranspose3d, nn.MaxPool3d, nn.BatchNorm3d, nn.InstanceNorm3d
    raise ConfigError(f"model.kwargs.spatial_dims: must be 2 or 3, got {spatial_dims}")


class ConvBlock(nn.Sequential):
    """Two (3×3 conv → norm → ReLU) layers."""

    def __init__(
        self, in_channels: int, out_channels: int, spatial_dims: int, norm: Norm,
        dropout: float = 0.0,
    ) -> None:
        conv, _, _, batch, instance = _layers(spatial_dims)
        layers: list[nn.Module] = []
        for k, (cin, cout) in enumerate(((in_channels, out_channels),
                                         (out_channels, out_channels))):
            layers.append(conv(cin, cout, 3, padding=1, bias=norm == "none"))
            if norm == "batch":
                layers.append(batch(cout))
            elif norm == "instance":
                layers.append(instance(cout, affine=True))
            layers.append(nn.ReLU(inplace=True))
            if dropout and k == 0:
                layers.append(nn.Dropout(dropout))
        super().__init__(*layers)


@register_model("unet")
class UNet(nn.Module):
    """Encoder of conv blocks + max pooling, decoder of transposed-conv upsampling with skip
    connections (concatenation), and a 1×1 conv to ``num_classes`` logits (2 for binary:
    background, foreground)."""

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        spatial_dims: int = 2,
        depth: int = 4,
        base_width: int = 64,
        norm: Norm = "batch",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ConfigError(f"model.kwargs.depth: must be at least 1, got {depth}")
        if norm not in ("batch", "instance", "none"):
            raise ConfigError(f"model.kwargs.norm: batch, instance or none, got {norm!r}")
        conv, up, pool, _, _ = _layers(spatial_dims)
        self.spatial_dims = spatial_dims
        self.depth = depth
        widths = [base_width * 2**k for k in range(depth + 1)]
        self.encoders = nn.ModuleList()
        cin = in_channels
        for width in widths[:-1]:
            self.encoders.append(ConvBlock(cin, width, spatial_dims, norm))
            cin = width
        self.pool = pool(2)
        self.bottleneck = ConvBlock(widths[-2], widths[-1], spatial_dims, norm, dropout)
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for k in range(depth, 0, -1):
            self.ups.append(up(widths[k], widths[k - 1], 2, stride=2))
            self.decoders.append(ConvBlock(2 * widths[k - 1], widths[k - 1], spatial_dims, norm))
        self.head = conv(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        x = pad_to_multiple(x, 2**self.depth)
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for up, decoder, skip in zip(self.ups, self.decoders, reversed(skips), strict=True):
            x = decoder(torch.cat([up(x), skip], dim=1))
        return crop_to(self.head(x), size)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad the spatial axes at their far end up to a multiple of ``multiple`` (reflection when
    the image is large enough, else zeros)."""
    extra = [(-s) % multiple for s in x.shape[2:]]
    if not any(extra):
        return x
    pads: list[int] = []
    for e in reversed(extra):
        pads += [0, e]
    reflect = all(e < s for e, s in zip(extra, x.shape[2:], strict=True))
    return F.pad(x, pads, mode="reflect" if reflect else "constant")


def crop_to(x: torch.Tensor, size: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """The leading ``size`` of the spatial axes."""
    return x[(..., *(slice(0, s) for s in size))]

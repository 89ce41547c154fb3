"""FCN-8s (Long, Shelhamer & Darrell, 2015) on torchvision's VGG16 convolutional encoder.

fc6/fc7 are convolutions (7×7 and 1×1); class scores from pool5, pool4 and pool3 are fused with
learnable transposed convolutions initialised to bilinear upsampling (2×, 2×, then 8×). The
input is padded to a multiple of 32 and the output cropped back to the input size (instead of
the paper's 100-pixel padding and offset crops). With ``pretrained=True`` the ImageNet VGG16
weights (``VGG16_Weights.IMAGENET1K_V1``) are read from the torch hub cache or ``weights_path``;
nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models import VGG16_BN_Weights, VGG16_Weights

from medilab.errors import WeightsUnavailableError
from medilab.models.registry import register_model
from medilab.models.unet import crop_to, pad_to_multiple
from medilab.models.vgg_layers import vgg16_conv_layers
from medilab.models.weights import pretrained_state_dict


def bilinear_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """Weights (C, C, k, k) that make a transposed convolution upsample each channel
    bilinearly."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    grid = torch.arange(kernel_size, dtype=torch.float32)
    line = 1 - (grid - center).abs() / factor
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    weight[range(channels), range(channels)] = line[:, None] * line[None, :]
    return weight


def _upsample(channels: int, factor: int) -> nn.ConvTranspose2d:
    layer = nn.ConvTranspose2d(
        channels, channels, 2 * factor, stride=factor, padding=factor // 2, bias=False
    )
    with torch.no_grad():
        layer.weight.copy_(bilinear_kernel(channels, 2 * factor))
    return layer


class FCN8s(nn.Module):
    """VGG16 encoder → fc6/fc7 convolutions → scores fused at strides 32, 16 and 8."""

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 2,
        fc_width: int = 4096,
        dropout: float = 0.5,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        # torchvision's VGG16 (or VGG16-BN) convolutional layers, with VGG's initialisation
        features = vgg16_conv_layers(in_channels, batch_norm)
        self.in_channels = in_channels
        pools = [i for i, layer in enumerate(features) if isinstance(layer, nn.MaxPool2d)]
        self.to_pool3 = features[: pools[2] + 1]  # conv1_1 .. pool3 (stride 8, 256 channels)
        self.to_pool4 = features[pools[2] + 1 : pools[3] + 1]  # conv4_x, pool4 (stride 16)
        self.to_pool5 = features[pools[3] + 1 :]  # conv5_x, pool5 (stride 32, 512)
        self.fc = nn.Sequential(
            nn.Conv2d(512, fc_width, 7, padding=3),
            nn.ReLU(inplace=True),
            nn.Dropout2d(dropout),
            nn.Conv2d(fc_width, fc_width, 1),
            nn.ReLU(inplace=True),
            nn.Dropout2d(dropout),
        )
        self.score_fr = nn.Conv2d(fc_width, num_classes, 1)
        self.score_pool4 = nn.Conv2d(512, num_classes, 1)
        self.score_pool3 = nn.Conv2d(256, num_classes, 1)
        for layer in (self.score_fr, self.score_pool4, self.score_pool3):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.up2_pool5 = _upsample(num_classes, 2)
        self.up2_pool4 = _upsample(num_classes, 2)
        self.up8 = _upsample(num_classes, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        x = pad_to_multiple(x, 32)
        pool3 = self.to_pool3(x)
        pool4 = self.to_pool4(pool3)
        score = self.score_fr(self.fc(self.to_pool5(pool4)))
        score = self.up2_pool5(score) + self.score_pool4(pool4)
        score = self.up2_pool4(score) + self.score_pool3(pool3)
        return crop_to(self.up8(score), size)

    def load_vgg16(self, state: dict[str, torch.Tensor]) -> None:
        """Copy torchvision VGG16(-BN) weights: conv (and batch-norm) layers, and fc6/fc7
        reshaped to convolutions when ``fc_width`` is 4096. A first conv for other than 3 input
        channels gets the mean of the RGB filters."""
        for part in (self.to_pool3, self.to_pool4, self.to_pool5):
            own = part.state_dict()  # slices keep VGG16's layer indices: "17.weight", ...
            loaded = {}
            for key, current in own.items():
                tensor = state.get(f"features.{key}")
                if key == "0.weight" and tensor is not None and self.in_channels != 3:
                    tensor = tensor.mean(dim=1, keepdim=True).repeat(1, self.in_channels, 1, 1)
                if tensor is None or tensor.shape != current.shape:
                    raise WeightsUnavailableError(
                        f"VGG16 weights: features.{key} missing or of another shape "
                        "(batch_norm must match the weights: VGG16 or VGG16-BN)"
                    )
                loaded[key] = tensor
            part.load_state_dict(loaded)
        fc6, fc7 = self.fc[0], self.fc[3]
        if fc6.out_channels == 4096 and "classifier.0.weight" in state:
            with torch.no_grad():
                fc6.weight.copy_(state["classifier.0.weight"].view(4096, 512, 7, 7))
                fc6.bias.copy_(state["classifier.0.bias"])
                fc7.weight.copy_(state["classifier.3.weight"].view(4096, 4096, 1, 1))
                fc7.bias.copy_(state["classifier.3.bias"])


@register_model("fcn8s")
def fcn8s(
    in_channels: int = 3,
    num_classes: int = 2,
    pretrained: bool = False,
    weights_path: str | Path | None = None,
    fc_width: int = 4096,
    dropout: float = 0.5,
    batch_norm: bool = False,
) -> FCN8s:
    """FCN-8s; ``pretrained`` loads ImageNet VGG16 (``batch_norm``: VGG16-BN) weights offline
    (hub cache or ``weights_path``) or raises ``WeightsUnavailableError``. ``batch_norm``
    makes training from scratch practical."""
    model = FCN8s(in_channels, num_classes, fc_width, dropout, batch_norm)
    if pretrained:
        weights = VGG16_BN_Weights.IMAGENET1K_V1 if batch_norm else VGG16_Weights.IMAGENET1K_V1
        model.load_vgg16(pretrained_state_dict(weights, weights_path))
    return model

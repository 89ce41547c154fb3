"""Lab 3 3D members: a small CPU-friendly 3D CNN of ours and MONAI's 3D ResNet / DenseNet."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from medilab.errors import ConfigError
from medilab.models.registry import no_covariates, register_model


class SmallCNN3D(nn.Module):
    """``depth`` stages of conv3d-BN-ReLU (× ``convs_per_stage``) + max-pool, then a linear head.

    Defaults chosen on AdrenalMNIST3D 28³ val (benchmarks/fusion_models.py): two convs per
    stage beat one (AUROC 0.877 after 9 epochs vs 0.840 after 20), dropout 0.2.

    Stage ``i`` has ``width · 2**i`` channels (capped at ``max_width``); every stage but the
    last halves each side, the last is followed by global average pooling, dropout and a
    linear layer. ``stem_stride=2`` makes the first conv halve the volume: several times cheaper
    on CPU, where conv3d backward at full resolution dominates the step time.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        width: int = 16,
        depth: int = 4,
        convs_per_stage: int = 2,
        max_width: int = 256,
        dropout: float = 0.2,
        stem_stride: int = 2,
    ) -> None:
        super().__init__()
        if depth < 1 or width < 1 or convs_per_stage < 1:
            raise ConfigError("model.kwargs: cnn3d needs width, depth and convs_per_stage ≥ 1")
        layers: list[nn.Module] = []
        channels = in_channels
        for stage in range(depth):
            out = min(width * 2**stage, max_width)
            for conv in range(convs_per_stage):
                stride = stem_stride if stage == 0 and conv == 0 else 1
                layers.append(_conv3d_bn_relu(channels, out, stride))
                channels = out
            if stage < depth - 1:
                layers.append(nn.MaxPool3d(2, ceil_mode=True))
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool3d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(channels, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _conv3d_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm3d(out_channels),
        nn.ReLU(inplace=True),
    )


@register_model("cnn3d")
def cnn3d(
    in_channels: int,
    num_classes: int,
    width: int = 16,
    depth: int = 4,
    convs_per_stage: int = 2,
    max_width: int = 256,
    dropout: float = 0.2,
    stem_stride: int = 2,
    image_size: Sequence[int] | None = None,
    num_covariates: int = 0,
) -> SmallCNN3D:
    """Our small 3D CNN for (N, C, D, H, W) volumes (any ``image_size``)."""
    no_covariates("cnn3d", num_covariates)
    return SmallCNN3D(
        in_channels, num_classes, width, depth, convs_per_stage, max_width, dropout, stem_stride
    )


_MONAI_RESNETS = ("resnet10", "resnet18", "resnet34", "resnet50")


@register_model("monai_resnet3d")
def monai_resnet3d(
    in_channels: int,
    num_classes: int,
    variant: str = "resnet10",
    widen_factor: float = 1.0,
    conv1_t_size: int = 7,
    conv1_t_stride: int = 1,
    no_max_pool: bool = False,
    image_size: Sequence[int] | None = None,
    num_covariates: int = 0,
) -> nn.Module:
    """MONAI's 3D ResNet (``variant`` in resnet10/18/34/50), random init. ``widen_factor`` scales
    every stage (0.25 makes a tiny one); ``conv1_t_*`` / ``no_max_pool`` shape the stem (a 3³
    stem without max-pool suits 28³ volumes)."""
    from monai.networks import nets

    no_covariates("monai_resnet3d", num_covariates)
    if variant not in _MONAI_RESNETS:
        raise ConfigError(
            f"model.kwargs.variant: unknown MONAI ResNet {variant!r}; use one of "
            f"{', '.join(_MONAI_RESNETS)}"
        )
    return getattr(nets, variant)(
        spatial_dims=3,
        n_input_channels=in_channels,
        num_classes=num_classes,
        widen_factor=widen_factor,
        conv1_t_size=conv1_t_size,
        conv1_t_stride=conv1_t_stride,
        no_max_pool=no_max_pool,
        pretrained=False,
    )


@register_model("monai_densenet3d")
def monai_densenet3d(
    in_channels: int,
    num_classes: int,
    init_features: int = 64,
    growth_rate: int = 32,
    block_config: tuple[int, ...] | list[int] = (6, 12, 24, 16),
    dropout: float = 0.0,
    image_size: Sequence[int] | None = None,
    num_covariates: int = 0,
) -> nn.Module:
    """MONAI's 3D DenseNet (DenseNet121 by default; smaller ``block_config`` / ``growth_rate``
    make a small one)."""
    from monai.networks.nets import DenseNet

    no_covariates("monai_densenet3d", num_covariates)
    return DenseNet(
        spatial_dims=3,
        in_channels=in_channels,
        out_channels=num_classes,
        init_features=init_features,
        growth_rate=growth_rate,
        block_config=tuple(block_config),
        dropout_prob=dropout,
    )

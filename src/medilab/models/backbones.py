"""Lab 2 classifiers: torchvision VGG16 / ResNet and timm (Swin, any timm model) feature
extractors under one :class:`~medilab.models.fusion_head.FeatureClassifier` head.

Every builder takes ``weights``: ``"none"`` (random init), ``"imagenet"`` (torchvision's file
from the torch hub cache, timm's from the Hugging Face or torch hub cache; nothing is
downloaded) or the path of a state dict with the backbone's own key names (a medilab checkpoint
works too: its ``backbone.`` keys are used). Classifier weights in the file are ignored; a first
convolution for other than 3 input channels is adapted as timm does (summed for 1 channel,
repeated and rescaled for k).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision import models as tv

from medilab.errors import ConfigError, WeightsUnavailableError
from medilab.models.fusion_head import FeatureClassifier
from medilab.models.registry import register_model
from medilab.models.vgg_layers import vgg16_conv_layers
from medilab.models.weights import (
    SWIN_DEFAULT,
    named_weights_file,
    read_state_dict,
    timm_weights_file,
    torchvision_state_dict,
)

Weights = str | Path | None
State = dict[str, torch.Tensor]


# ---------------------------------------------------------------------------------------------
# Shared pieces


def _weights_state(weights: Weights, imagenet: Any) -> State | None:
    """None for ``"none"``; the state dict of ``imagenet`` (a callable giving it) or of a path."""
    if weights is None or str(weights).lower() == "none":
        return None
    if str(weights).lower() == "imagenet":
        return imagenet()
    return read_state_dict(named_weights_file(weights, ("none", "imagenet")))


def backbone_state(state: State) -> State:
    """``state`` itself, or the ``backbone.`` entries of a medilab model's (or a Lightning
    checkpoint's ``model.backbone.``) state dict with that prefix removed."""
    for prefix in ("backbone.", "model.backbone."):
        inner = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if inner:
            return inner
    return state


def _replace_first_conv(conv: nn.Conv2d, in_channels: int, **changes: Any) -> nn.Conv2d:
    """A conv like ``conv`` with ``in_channels`` inputs (and other ``changes``), Kaiming-init."""
    options = {
        "kernel_size": conv.kernel_size,
        "stride": conv.stride,
        "padding": conv.padding,
        "bias": conv.bias is not None,
        **changes,
    }
    new = nn.Conv2d(in_channels, conv.out_channels, **options)
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    if new.bias is not None:
        nn.init.zeros_(new.bias)
    return new


def _load_torchvision(
    model: nn.Module,
    state: State,
    first_conv: str,
    skip_prefixes: Sequence[str],
    name: str,
) -> None:
    """Load a torchvision-format ``state`` into ``model``: keys under ``skip_prefixes`` are
    dropped, the first conv is adapted to the model's input channels; anything else that does
    not fit is a ``WeightsUnavailableError``."""
    state = {
        k: v for k, v in backbone_state(state).items()
        if not any(k.startswith(p) for p in skip_prefixes)
    }
    from timm.models import adapt_input_conv

    key = f"{first_conv}.weight"
    target = model.get_submodule(first_conv).weight
    if key in state and state[key].shape[1] != target.shape[1]:
        state[key] = adapt_input_conv(target.shape[1], state[key])
    own = model.state_dict()
    wrong = [k for k, v in state.items() if k in own and v.shape != own[k].shape]
    result = model.load_state_dict(
        {k: v for k, v in state.items() if k not in wrong}, strict=False
    )
    missing = [
        k for k in result.missing_keys
        if not k.startswith(tuple(skip_prefixes)) and not k.endswith("num_batches_tracked")
    ]
    problems = (
        [f"missing {k}" for k in missing]
        + [f"unexpected {k}" for k in result.unexpected_keys]
        + [f"{k} has shape {tuple(state[k].shape)}" for k in wrong]
    )
    if problems:
        more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise WeightsUnavailableError(
            f"weights for {name} do not fit the model: {', '.join(problems[:3])}{more}"
        )


def _classifier(
    backbone: nn.Module, num_features: int, num_covariates: int, num_classes: int,
    head: dict[str, Any],
) -> FeatureClassifier:
    return FeatureClassifier(backbone, num_features, num_covariates, num_classes, **head)


# ---------------------------------------------------------------------------------------------
# VGG16


VGG_POOLS = 5


def vgg_pools_to_keep(image_size: Sequence[int] | None) -> int:
    """How many of VGG's 5 max-pools keep the last feature map at least 7 px (its size for
    224-px ImageNet images): 2 at 28 px, 3 at 56 or 64 px, 5 at 224 px."""
    if not image_size:
        return VGG_POOLS
    side = min(int(s) for s in image_size)
    keep = 0
    while keep < VGG_POOLS and side // 2 ** (keep + 1) >= 7:
        keep += 1
    return keep


class VGGFeatures(nn.Module):
    """torchvision VGG16's convolutional layers (the max-pools numbered ``dropped`` replaced by
    ``nn.Identity``, so indices and weight names stay torchvision's) → global average pool →
    (N, 512)."""

    num_features = 512

    def __init__(
        self, in_channels: int = 3, batch_norm: bool = False, dropped: Sequence[int] = ()
    ) -> None:
        super().__init__()
        # torchvision's VGG16 conv layers and init, without building its 120M-weight classifier
        features = vgg16_conv_layers(in_channels, batch_norm)
        pools = [i for i, layer in enumerate(features) if isinstance(layer, nn.MaxPool2d)]
        for number in dropped:
            features[pools[number - 1]] = nn.Identity()
        self.features = features
        self.pool = nn.AdaptiveAvgPool2d(1)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The (N, 512, h, w) map of the last conv block (Grad-CAM's usual target)."""
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)


def _dropped_pools(
    image_size: Sequence[int] | None, keep_pools: int | None, drop_pools: Sequence[int] | None
) -> list[int]:
    if keep_pools is not None and drop_pools is not None:
        raise ConfigError("model.kwargs: give keep_pools or drop_pools, not both")
    if drop_pools is not None:
        bad = [n for n in drop_pools if not 1 <= int(n) <= VGG_POOLS]
        if bad:
            raise ConfigError(f"model.kwargs.drop_pools: {bad} not in 1..{VGG_POOLS}")
        return sorted({int(n) for n in drop_pools})
    keep = vgg_pools_to_keep(image_size) if keep_pools is None else int(keep_pools)
    if not 0 <= keep <= VGG_POOLS:
        raise ConfigError(f"model.kwargs.keep_pools: {keep} not in 0..{VGG_POOLS}")
    return list(range(keep + 1, VGG_POOLS + 1))


def _build_vgg(
    batch_norm: bool,
    in_channels: int,
    num_classes: int,
    image_size: Sequence[int] | None,
    num_covariates: int,
    keep_pools: int | None,
    drop_pools: Sequence[int] | None,
    weights: Weights,
    head: dict[str, Any],
) -> FeatureClassifier:
    name = "vgg16_bn" if batch_norm else "vgg16"
    dropped = _dropped_pools(image_size, keep_pools, drop_pools)
    backbone = VGGFeatures(in_channels, batch_norm, dropped)
    enum = tv.VGG16_BN_Weights.IMAGENET1K_V1 if batch_norm else tv.VGG16_Weights.IMAGENET1K_V1
    state = _weights_state(weights, lambda: torchvision_state_dict(enum))
    if state is not None:
        _load_torchvision(backbone, state, "features.0", ("classifier.", "pool."), name)
    return _classifier(backbone, VGGFeatures.num_features, num_covariates, num_classes, head)


@register_model("vgg16")
def vgg16(
    in_channels: int = 3,
    num_classes: int = 2,
    image_size: Sequence[int] | None = None,
    num_covariates: int = 0,
    keep_pools: int | None = None,
    drop_pools: Sequence[int] | None = None,
    weights: Weights = "none",
    hidden: int = 0,
    dropout: float = 0.0,
    covariate_scale: float = 1.0,
) -> FeatureClassifier:
    """VGG16 features with the first ``keep_pools`` max-pools (default: as many as keep a
    ≥ 7-px map for ``image_size``), or all but ``drop_pools`` (numbered 1-5), → 512 features
    ⊕ covariates → logits."""
    head = {"hidden": hidden, "dropout": dropout, "covariate_scale": covariate_scale}
    return _build_vgg(
        False, in_channels, num_classes, image_size, num_covariates, keep_pools, drop_pools,
        weights, head,
    )


@register_model("vgg16_bn")
def vgg16_bn(
    in_channels: int = 3,
    num_classes: int = 2,
    image_size: Sequence[int] | None = None,
    num_covariates: int = 0,
    keep_pools: int | None = None,
    drop_pools: Sequence[int] | None = None,
    weights: Weights = "none",
    hidden: int = 0,
    dropout: float = 0.0,
    covariate_scale: float = 1.0,
) -> FeatureClassifier:
    """VGG16 with batch norm; otherwise as ``vgg16``."""
    head = {"hidden": hidden, "dropout": dropout, "covariate_scale": covariate_scale}
    return _build_vgg(
        True, in_channels, num_classes, image_size, num_covariates, keep_pools, drop_pools,
        weights, head,
    )


# ---------------------------------------------------------------------------------------------
# ResNet

_RESNETS = {
    "resnet18": (tv.resnet18, tv.ResNet18_Weights.IMAGENET1K_V1),
    "resnet34": (tv.resnet34, tv.ResNet34_Weights.IMAGENET1K_V1),
    "resnet50": (tv.resnet50, tv.ResNet50_Weights.IMAGENET1K_V2),
}


def resnet_features(name: str, in_channels: int = 3, small_input: bool = False) -> tv.ResNet:
    """torchvision ResNet with ``fc`` = Identity: (N, 512) for resnet18/34, (N, 2048) for
    resnet50. ``small_input``: a 3×3 stride-1 stem conv and no max-pool (for 28-64 px)."""
    constructor, _ = _RESNETS[name]
    model = constructor()
    if small_input:
        model.conv1 = _replace_first_conv(
            model.conv1, in_channels, kernel_size=3, stride=1, padding=1
        )
        model.maxpool = nn.Identity()
    elif in_channels != 3:
        model.conv1 = _replace_first_conv(model.conv1, in_channels)
    model.num_features = model.fc.in_features  # type: ignore[assignment]
    model.fc = nn.Identity()
    return model


def _build_resnet(
    name: str,
    in_channels: int,
    num_classes: int,
    num_covariates: int,
    small_input: bool,
    weights: Weights,
    head: dict[str, Any],
) -> FeatureClassifier:
    backbone = resnet_features(name, in_channels, small_input)
    enum = _RESNETS[name][1]
    state = _weights_state(weights, lambda: torchvision_state_dict(enum))
    if state is not None:
        # the 3×3 small-input stem cannot take the 7×7 pretrained conv1: it keeps its own init
        skip = ("fc.", "conv1.") if small_input else ("fc.",)
        _load_torchvision(backbone, state, "conv1", skip, name)
    return _classifier(backbone, int(backbone.num_features), num_covariates, num_classes, head)


def _resnet_builder(name: str) -> None:
    def build(
        in_channels: int = 3,
        num_classes: int = 2,
        image_size: Sequence[int] | None = None,
        num_covariates: int = 0,
        small_input: bool = False,
        weights: Weights = "none",
        hidden: int = 0,
        dropout: float = 0.0,
        covariate_scale: float = 1.0,
    ) -> FeatureClassifier:
        head = {"hidden": hidden, "dropout": dropout, "covariate_scale": covariate_scale}
        return _build_resnet(
            name, in_channels, num_classes, num_covariates, small_input, weights, head
        )

    build.__name__ = name
    build.__doc__ = (
        f"torchvision {name} features (``small_input``: 3×3 stride-1 stem, no max-pool) "
        "⊕ covariates → logits."
    )
    register_model(name)(build)


for _name in _RESNETS:
    _resnet_builder(_name)


# ---------------------------------------------------------------------------------------------
# timm: Swin and any other timm model


def timm_features(
    timm_name: str,
    in_channels: int = 3,
    image_size: Sequence[int] | None = None,
    weights: Weights = "none",
    **timm_kwargs: Any,
) -> nn.Module:
    """``timm.create_model(timm_name, num_classes=0, in_chans=in_channels)`` as a feature
    extractor (``.num_features`` wide). Models with a fixed input size (Swin, ViT) get
    ``img_size=image_size`` unless ``timm_kwargs`` set it."""
    import timm  # imported when needed: it is slow to import
    if not timm_name or not timm.is_model(timm_name):
        raise ConfigError(f"model.kwargs.timm_name: {timm_name!r} is not a timm model")
    cfg = timm.models.get_pretrained_cfg(timm_name)
    if cfg is not None and cfg.fixed_input_size and image_size and "img_size" not in timm_kwargs:
        timm_kwargs["img_size"] = tuple(int(s) for s in image_size)
    try:
        model = timm.create_model(
            timm_name, pretrained=False, num_classes=0, in_chans=in_channels, **timm_kwargs
        )
    except TypeError as exc:
        raise ConfigError(f"model.kwargs.timm_kwargs for {timm_name!r}: {exc}") from None
    state = _weights_state(weights, lambda: read_state_dict(timm_weights_file(timm_name)))
    if state is not None:
        _load_timm(model, backbone_state(state), timm_name, in_channels)
    return model


def _load_timm(model: nn.Module, state: State, timm_name: str, in_channels: int) -> None:
    """Load a timm-format ``state`` the way timm loads its own pretrained weights (the model's
    checkpoint filter, input-conv adaptation, classifier dropped); a file that lacks some of
    the model's parameters is a ``WeightsUnavailableError``."""
    from timm.models import load_pretrained
    cfg = dict(model.pretrained_cfg)
    classifiers = cfg.get("classifier") or ()
    classifiers = (classifiers,) if isinstance(classifiers, str) else tuple(classifiers)
    missing = [
        name for name, _ in model.named_parameters()
        if name not in state and not name.startswith(classifiers)
    ]
    if missing:
        raise WeightsUnavailableError(
            f"weights for timm model {timm_name!r} do not fit: missing {', '.join(missing[:3])}"
            f"{' …' if len(missing) > 3 else ''}"
        )
    cfg.update(state_dict=dict(state), file=None, url=None, hf_hub_id=None, source="")
    module = sys.modules[type(model).__module__]
    load_pretrained(
        model, cfg, num_classes=0, in_chans=in_channels,
        filter_fn=getattr(module, "checkpoint_filter_fn", None),
    )


@register_model("timm")
def timm_model(
    in_channels: int = 3,
    num_classes: int = 2,
    image_size: Sequence[int] | None = None,
    num_covariates: int = 0,
    timm_name: str = "",
    timm_kwargs: dict[str, Any] | None = None,
    weights: Weights = "none",
    hidden: int = 0,
    dropout: float = 0.0,
    covariate_scale: float = 1.0,
) -> FeatureClassifier:
    """Any timm model ``timm_name`` (with ``timm_kwargs``) as features ⊕ covariates → logits."""
    backbone = timm_features(timm_name, in_channels, image_size, weights, **(timm_kwargs or {}))
    head = {"hidden": hidden, "dropout": dropout, "covariate_scale": covariate_scale}
    return _classifier(backbone, int(backbone.num_features), num_covariates, num_classes, head)




@register_model("swin")
def swin(
    in_channels: int = 3,
    num_classes: int = 2,
    image_size: Sequence[int] | None = None,
    num_covariates: int = 0,
    variant: str = SWIN_DEFAULT,
    timm_kwargs: dict[str, Any] | None = None,
    weights: Weights = "none",
    hidden: int = 0,
    dropout: float = 0.0,
    covariate_scale: float = 1.0,
) -> FeatureClassifier:
    """A timm Swin Transformer (``variant``, default Swin-T) for ``image_size`` (default 56 px;
    a multiple of 4, the patch size; timm shrinks windows larger than a stage's token grid),
    as features ⊕ covariates → logits."""
    if not variant.startswith("swin"):
        raise ConfigError(f"model.kwargs.variant: {variant!r} is not a Swin model (see timm)")
    return timm_model(
        in_channels, num_classes, image_size or (56, 56), num_covariates, variant, timm_kwargs,
        weights, hidden, dropout, covariate_scale,
    )

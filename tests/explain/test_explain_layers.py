"""Target layer detection for CNN and Swin classifiers (medilab.explain.layers)."""

from __future__ import annotations

import pytest
import torch
import torchvision
from timm.models.swin_transformer import SwinTransformer
from torch import nn

from medilab.errors import MedilabError
from medilab.explain.layers import find_target_layer, tokens_to_nchw
from medilab.models.mlp import SimpleNN, SmallCNN


class BackboneWithHead(nn.Module):
    """Lab 2 shape: backbone features (pooled here when 4-D) ⊕ covariates → linear."""

    def __init__(self, backbone: nn.Module, features: int, covariates: int = 0) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(features + covariates, 2)

    def forward(self, image: torch.Tensor, covariates: torch.Tensor | None = None):
        features = self.backbone(image)
        if features.ndim == 4:
            features = features.mean(dim=(2, 3))
        if covariates is not None:
            features = torch.cat([features, covariates], dim=1)
        return self.head(features)


def resnet18_classifier(covariates: int = 0) -> BackboneWithHead:
    resnet = torchvision.models.resnet18(weights=None)
    resnet.fc = nn.Identity()
    return BackboneWithHead(resnet, 512, covariates)


def tiny_swin_classifier() -> BackboneWithHead:
    swin = SwinTransformer(
        img_size=56,
        patch_size=4,
        window_size=7,
        embed_dim=24,
        depths=(1, 1),
        num_heads=(1, 2),
        num_classes=0,
    )
    return BackboneWithHead(swin, swin.num_features)


def target(model: nn.Module, size: int = 64, name: str | None = None, channels: int = 3):
    batch = torch.rand(1, channels, size, size)
    return find_target_layer(model.eval(), lambda: model(batch), name)


def test_resnet_backbone_targets_layer4():
    model = resnet18_classifier(covariates=2)
    covariates = torch.zeros(1, 2)
    batch = torch.rand(1, 3, 64, 64)
    layer = find_target_layer(model.eval(), lambda: model(batch, covariates))
    assert layer.name == "backbone.layer4"
    assert layer.module is model.backbone.layer4


def test_vgg_features_target_the_whole_features_block():
    features = torchvision.models.vgg.make_layers([16, "M", 32, 32, "M"])  # VGG's own builder
    model = BackboneWithHead(features, 32)
    layer = target(model)
    assert layer.name == "backbone"  # vgg.features, ending in its last max-pool


def test_small_cnn_targets_its_conv_features():
    model = SmallCNN(in_channels=1, num_classes=2)
    assert target(model, size=28, channels=1).name == "features"


def test_a_named_layer_wins_and_unknown_names_are_reported():
    model = resnet18_classifier()
    assert target(model, name="backbone.layer3").module is model.backbone.layer3
    with pytest.raises(MedilabError, match="backbone.layer9"):
        target(model, name="backbone.layer9")


def test_swin_targets_the_final_norm_with_an_nhwc_reshape():
    model = tiny_swin_classifier().eval()
    layer = target(model, size=56)
    assert layer.name == "backbone.norm" and layer.channels_last
    seen = {}
    handle = layer.module.register_forward_hook(lambda m, i, out: seen.update(out=out))
    with torch.no_grad():
        model(torch.rand(1, 3, 56, 56))
    handle.remove()
    assert tuple(seen["out"].shape) == (1, 7, 7, 48)  # timm ≥ 0.9: NHWC
    assert tuple(layer.reshape(seen["out"]).shape) == (1, 48, 7, 7)


def test_tokens_to_nchw_handles_nhwc_and_token_sequences():
    nhwc = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    assert torch.equal(tokens_to_nchw(nhwc)[1, :, 2, 3], nhwc[1, 2, 3, :])
    tokens = nhwc[:, :, :3, :].reshape(2, 9, 5)  # a 3×3 grid of 5-channel tokens
    assert torch.equal(tokens_to_nchw(tokens)[0, :, 1, 2], tokens[0, 5, :])
    with pytest.raises(MedilabError, match="square grid"):
        tokens_to_nchw(torch.zeros(1, 10, 5))


def test_a_fully_connected_model_has_no_cam_layer():
    model = SimpleNN(in_features=64, num_classes=2)
    with pytest.raises(MedilabError, match="fully connected"):
        target(model, size=8, channels=1)

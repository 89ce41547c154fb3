"""U-Net: output shapes for odd sizes (2D and 3D), options, registry."""

import pytest
import torch

from medilab.errors import ConfigError
from medilab.models import create_model
from medilab.models.unet import UNet, pad_to_multiple


def test_drive_sized_image_keeps_its_odd_size():
    model = create_model("unet", in_channels=1, num_classes=2, depth=4, base_width=2).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 1, 584, 565))
    assert out.shape == (1, 2, 584, 565)


@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
def test_norms_and_rgb_input(norm):
    model = UNet(in_channels=3, num_classes=4, depth=2, base_width=4, norm=norm).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 37, 21))
    assert out.shape == (2, 4, 37, 21)
    has_bias = model.encoders[0][0].bias is not None
    assert has_bias == (norm == "none")


def test_3d_unet_on_odd_volume():
    model = create_model("unet", in_channels=1, num_classes=3, spatial_dims=3, depth=2,
                         base_width=2).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 1, 9, 10, 11))
    assert out.shape == (1, 3, 9, 10, 11)


def test_width_doubles_with_depth():
    model = UNet(1, 2, depth=3, base_width=8)
    assert [e[0].out_channels for e in model.encoders] == [8, 16, 32]
    assert model.bottleneck[0].out_channels == 64


def test_padding_reflects_then_crop_restores():
    x = torch.arange(2 * 5 * 6, dtype=torch.float32).reshape(1, 2, 5, 6)
    padded = pad_to_multiple(x, 4)
    assert padded.shape == (1, 2, 8, 8)
    assert torch.equal(padded[..., :5, :6], x)
    assert torch.equal(pad_to_multiple(x[..., :1, :2], 4)[..., 1:, :], torch.zeros(1, 2, 3, 4))


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="norm"):
        UNet(norm="group")
    with pytest.raises(ConfigError, match="spatial_dims"):
        UNet(spatial_dims=1)
    with pytest.raises(ConfigError, match="depth"):
        UNet(depth=0)

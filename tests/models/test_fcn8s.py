"""FCN-8s: output size, bilinear-initialised upsampling, offline pretrained weights."""

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.vgg import cfgs, make_layers

from medilab.errors import WeightsUnavailableError
from medilab.models import create_model
from medilab.models.fcn8s import FCN8s, bilinear_kernel
from medilab.models.weights import read_state_dict


@pytest.mark.parametrize(("in_channels", "num_classes"), [(1, 2), (3, 3)])
def test_output_matches_odd_input_size(in_channels, num_classes):
    model = FCN8s(in_channels, num_classes, fc_width=16).eval()
    with torch.no_grad():
        out = model(torch.randn(2, in_channels, 75, 83))
    assert out.shape == (2, num_classes, 75, 83)


def test_upsampling_starts_as_bilinear_interpolation():
    model = FCN8s(1, 2, fc_width=8)
    x = torch.randn(1, 2, 6, 7)
    with torch.no_grad():
        learned = model.up2_pool5(x)
    reference = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    assert learned.shape == reference.shape
    # identical away from the border (the transposed conv pads with zeros)
    assert torch.allclose(learned[..., 2:-2, 2:-2], reference[..., 2:-2, 2:-2], atol=1e-6)
    assert model.up8.weight.shape == (2, 2, 16, 16)
    assert torch.equal(model.up8.weight[0, 1], torch.zeros(16, 16))
    assert bilinear_kernel(1, 4)[0, 0, 1].tolist() == [0.1875, 0.5625, 0.5625, 0.1875]


def test_score_layers_start_at_zero():
    model = FCN8s(3, 2, fc_width=8).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 40, 40))
    assert torch.count_nonzero(out) == 0


def test_pretrained_without_weights_gives_one_line_message(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(WeightsUnavailableError) as info:
        create_model("fcn8s", in_channels=3, num_classes=2, pretrained=True, fc_width=8)
    message = str(info.value)
    assert "\n" not in message
    assert "vgg16-397923af.pth" in message and "pretrained: false" in message
    assert str(tmp_path) in message


def test_pretrained_from_local_file(tmp_path):
    torch.manual_seed(0)
    features = make_layers(cfgs["D"])
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    path = tmp_path / "vgg16_features.pth"
    torch.save({"state_dict": state}, path)  # Lightning-style wrapper is unwrapped
    assert set(read_state_dict(path)) == set(state)
    rgb = create_model("fcn8s", in_channels=3, pretrained=True, weights_path=str(path),
                       fc_width=8)
    assert torch.equal(rgb.to_pool3[0].weight, state["features.0.weight"])
    assert torch.equal(rgb.to_pool5[4].weight, state["features.28.weight"])  # conv5_3
    grey = create_model("fcn8s", in_channels=2, pretrained=True, weights_path=str(path),
                        fc_width=8)
    expected = state["features.0.weight"].mean(dim=1, keepdim=True).repeat(1, 2, 1, 1)
    assert torch.allclose(grey.to_pool3[0].weight, expected)


def test_missing_weights_path_is_named(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(WeightsUnavailableError, match="nope.pth: weights file not found"):
        create_model("fcn8s", pretrained=True, weights_path=str(missing), fc_width=8)


def test_batch_norm_variant_loads_vgg16_bn_layout(tmp_path):
    features = make_layers(cfgs["D"], batch_norm=True)
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state["features.1.running_mean"] = torch.full((64,), 0.25)
    path = tmp_path / "vgg16_bn_features.pth"
    torch.save(state, path)
    model = create_model("fcn8s", in_channels=1, pretrained=True, weights_path=str(path),
                         fc_width=8, batch_norm=True).eval()
    assert torch.equal(model.to_pool3[1].running_mean, torch.full((64,), 0.25))
    with torch.no_grad():
        assert model(torch.randn(1, 1, 33, 47)).shape == (1, 2, 33, 47)
    with pytest.raises(WeightsUnavailableError, match="batch_norm must match"):
        create_model("fcn8s", pretrained=True, weights_path=str(path), fc_width=8)

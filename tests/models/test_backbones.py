"""Lab 2 backbones and the covariate head: shapes, VGG pooling, covariates, offline weights."""

from __future__ import annotations

import shutil
from pathlib import Path

import huggingface_hub.constants as hf_constants
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from medilab.errors import ConfigError, WeightsUnavailableError
from medilab.models import available_models, create_model
from medilab.models.backbones import VGGFeatures, vgg_pools_to_keep
from medilab.models.fusion_head import FeatureClassifier

TINY_SWIN = {"embed_dim": 12, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1]}
# (size, channels): every size and every channel count once for the big backbones
SIZE_CHANNELS = [(28, 1), (56, 3), (64, 5)]


@pytest.fixture(autouse=True)
def empty_caches(tmp_path, monkeypatch):
    """Weight caches in a temporary folder: nothing real is found, nothing is downloaded."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Batch-2 forwards are fastest on one thread (and do not fight other test runs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A random ResNet-18 backbone saved as torchvision's file is (with its ``fc`` layer)."""
    torch.manual_seed(0)
    state = build("resnet18").backbone.state_dict()
    state = {**state, "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(state, path)
    return path, state


def build(name: str, size: int = 28, channels: int = 3, covariates: int = 0, **kwargs):
    return create_model(
        name, in_channels=channels, num_classes=3, image_size=[size, size],
        num_covariates=covariates, **kwargs,
    ).eval()


def logits(model: nn.Module, size: int, channels: int, covariates=None) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.randn(2, channels, size, size), covariates)


def test_all_lab2_models_are_registered():
    names = set(available_models())
    expected = {"vgg16", "vgg16_bn", "resnet18", "resnet34", "resnet50", "swin", "timm"}
    assert expected | {"covariates_only"} <= names


@pytest.mark.parametrize("size", [28, 56, 64])
@pytest.mark.parametrize("channels", [1, 3, 5])
@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("resnet18", {}),
        ("swin", {"timm_kwargs": TINY_SWIN}),
        ("timm", {"timm_name": "test_resnet"}),
    ],
)
def test_small_backbones_at_every_size_and_channel_count(name, kwargs, size, channels):
    model = build(name, size, channels, **kwargs)
    assert logits(model, size, channels).shape == (2, 3)


@pytest.mark.parametrize(("size", "channels"), SIZE_CHANNELS)
@pytest.mark.parametrize("name", ["vgg16", "vgg16_bn", "resnet18", "resnet34", "resnet50"])
def test_torchvision_backbones_give_logits(name, size, channels):
    model = build(name, size, channels, covariates=2)
    out = logits(model, size, channels, torch.randn(2, 2))
    assert out.shape == (2, 3) and torch.isfinite(out).all()
    assert model.num_features == (2048 if name == "resnet50" else 512)


def test_first_conv_takes_the_input_channels():
    assert build("resnet34", channels=5).backbone.conv1.in_channels == 5
    small = build("resnet18", channels=1, small_input=True).backbone
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1)
    assert isinstance(small.maxpool, nn.Identity)
    assert build("vgg16_bn", channels=1).backbone.features[0].in_channels == 1


def test_swin_defaults_to_56_px_and_timm_names_are_checked():
    model = create_model("swin", in_channels=1, num_classes=3, timm_kwargs=TINY_SWIN)
    assert model.backbone.patch_embed.img_size == (56, 56)
    assert model.num_features == 12 * 8
    with pytest.raises(ConfigError, match="timm_name"):
        build("timm", timm_name="no_such_model")
    with pytest.raises(ConfigError, match="variant"):
        build("swin", variant="resnet18")


def test_unknown_kwarg_is_a_config_error():
    with pytest.raises(ConfigError, match="keep_pool"):
        build("vgg16", keep_pool=2)


def test_vgg_pools_to_keep_holds_a_7px_map():
    assert [vgg_pools_to_keep([s, s]) for s in (8, 28, 56, 64, 224)] == [0, 2, 3, 3, 5]
    assert vgg_pools_to_keep(None) == 5


def test_vgg_pooling_change_shows_in_the_feature_map():
    x = torch.randn(1, 3, 32, 32)  # models built for 64 px; a smaller input keeps it fast

    def map_side(**kwargs) -> int:
        backbone = build("vgg16", 64, **kwargs).backbone
        assert isinstance(backbone, VGGFeatures)
        with torch.no_grad():
            return backbone.feature_map(x).shape[-1]

    assert map_side() == 4  # default at 64 px: 3 pools kept
    assert map_side(keep_pools=5) == 1
    assert map_side(keep_pools=0) == 32
    assert map_side(drop_pools=[1, 3, 5]) == 8
    at_28 = build("vgg16", 28).backbone
    assert sum(isinstance(m, nn.MaxPool2d) for m in at_28.features) == 2
    assert sum(isinstance(m, nn.Identity) for m in at_28.features) == 3
    with pytest.raises(ConfigError, match="drop_pools"):
        build("vgg16", drop_pools=[6])
    with pytest.raises(ConfigError, match="not both"):
        build("vgg16", keep_pools=2, drop_pools=[1])


def test_covariates_change_the_output():
    torch.manual_seed(0)
    model = build("resnet18", covariates=2, small_input=True)
    image = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        young = model(image, torch.tensor([[-1.0, 0.0], [-1.0, 1.0]]))
        old = model(image, torch.tensor([[2.0, 0.0], [2.0, 1.0]]))
    assert not torch.allclose(young, old)
    with pytest.raises(ValueError, match="2 covariates"):
        model(image)
    with pytest.raises(ValueError, match="built for 2"):
        model(image, torch.zeros(2, 3))
    image_only = FeatureClassifier(nn.Flatten(), 12, 0, 3).eval()
    assert image_only(torch.randn(2, 3, 2, 2), None).shape == (2, 3)
    assert image_only(torch.randn(2, 3, 2, 2), torch.zeros(2, 0)).shape == (2, 3)
    with pytest.raises(ValueError, match="num_covariates=0"):
        image_only(torch.randn(2, 3, 2, 2), torch.zeros(2, 2))


def test_head_scales_covariates_and_can_have_a_hidden_layer():
    backbone = nn.Flatten()
    head = FeatureClassifier(backbone, 4, 2, 3, hidden=8, dropout=0.1, covariate_scale=0.5)
    assert [type(m) for m in head.head] == [nn.Linear, nn.ReLU, nn.Dropout, nn.Dropout, nn.Linear]
    assert head.head[0].in_features == 6
    linear = FeatureClassifier(backbone, 4, 2, 3, covariate_scale=0.5).eval()
    with torch.no_grad():
        linear.head[1].weight.zero_()
        linear.head[1].bias.zero_()
        linear.head[1].weight[0, 4] = 1.0  # class 0 logit = first covariate (scaled)
        out = linear(torch.zeros(1, 4), torch.tensor([[3.0, 7.0]]))
    assert out.tolist() == [[1.5, 0.0, 0.0]]


def test_covariates_only_ignores_the_image():
    torch.manual_seed(0)
    model = build("covariates_only", covariates=3, hidden=4)
    covariates = torch.randn(2, 3)
    with torch.no_grad():
        a = model(torch.randn(2, 3, 28, 28), covariates)
        b = model(torch.randn(2, 3, 28, 28), covariates)
        c = model(None, covariates)
    assert torch.equal(a, b) and torch.equal(a, c) and a.shape == (2, 3)
    assert sum(p.numel() for p in model.parameters()) == 3 * 4 + 4 + 4 * 3 + 3
    with pytest.raises(ConfigError, match="no covariates"):
        build("covariates_only")


def test_weights_path_loads_a_torchvision_state_dict(resnet18_file):
    path, state = resnet18_file
    grey = build("resnet18", channels=1, weights=str(path)).backbone
    assert torch.equal(grey.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    assert torch.equal(grey.bn1.running_var, state["bn1.running_var"])
    # 1 channel: the RGB filters summed, as timm adapts pretrained input convs
    assert torch.allclose(grey.conv1.weight, state["conv1.weight"].sum(1, keepdim=True))
    five = build("resnet18", channels=5, weights=path).backbone
    assert torch.allclose(five.conv1.weight[:, 3], state["conv1.weight"][:, 0] * 3 / 5)
    small = build("resnet18", small_input=True, weights=path).backbone
    assert small.conv1.kernel_size == (3, 3)  # keeps its own init; the rest is loaded
    assert torch.equal(small.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])


def test_weights_path_accepts_a_medilab_checkpoint(tmp_path):
    torch.manual_seed(0)
    trained = build("vgg16_bn", covariates=2)
    path = tmp_path / "best.ckpt"
    state = {f"model.{k}": v for k, v in trained.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 3}, path)
    loaded = build("vgg16_bn", weights=path)  # other head, same backbone
    for key, value in trained.backbone.state_dict().items():
        assert torch.equal(loaded.backbone.state_dict()[key], value), key


def test_weights_that_do_not_fit_are_one_line_errors(tmp_path, resnet18_file):
    path, _ = resnet18_file
    with pytest.raises(WeightsUnavailableError) as info:
        build("resnet34", weights=path)
    message = str(info.value)
    assert "\n" not in message and "resnet34" in message
    assert "missing layer1.2.conv1.weight" in message and "more" in message
    with pytest.raises(WeightsUnavailableError, match="missing"):
        build("timm", timm_name="test_resnet", weights=path)
    with pytest.raises(WeightsUnavailableError, match="not found"):
        build("resnet18", weights=tmp_path / "absent.pth")


def test_weights_path_loads_a_timm_state_dict(tmp_path):
    torch.manual_seed(0)
    source = build("swin", 56, timm_kwargs=TINY_SWIN).backbone
    path = tmp_path / "swin.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    grey = build("swin", 56, channels=1, timm_kwargs=TINY_SWIN, weights=path).backbone
    assert torch.allclose(
        grey.patch_embed.proj.weight, source.patch_embed.proj.weight.sum(1, keepdim=True)
    )
    norm = "layers.3.blocks.0.norm1.weight"
    assert torch.equal(grey.state_dict()[norm], source.state_dict()[norm])


def test_imagenet_without_a_cached_file_names_the_file(tmp_path):
    with pytest.raises(WeightsUnavailableError) as info:
        build("resnet50", weights="imagenet")
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "resnet50-11ad3fa6.pth") in message
    assert "medilab weights import FILE" in message
    with pytest.raises(WeightsUnavailableError, match="vgg16_bn-6c64b313.pth"):
        build("vgg16_bn", weights="imagenet")
    with pytest.raises(WeightsUnavailableError, match="swin_tiny_patch4_window7_224.ms_in1k"):
        build("swin", timm_kwargs=TINY_SWIN, weights="imagenet")


def test_imagenet_loads_from_the_torch_hub_cache(tmp_path, resnet18_file):
    path, state = resnet18_file
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    shutil.copyfile(path, cached)
    loaded = build("resnet18", weights="imagenet").backbone
    assert torch.equal(loaded.layer3[0].conv1.weight, state["layer3.0.conv1.weight"])


def test_imagenet_loads_timm_weights_from_the_hugging_face_cache(tmp_path):
    torch.manual_seed(0)
    source = build("swin", timm_kwargs=TINY_SWIN).backbone
    repo = tmp_path / "hf" / "models--timm--swin_tiny_patch4_window7_224.ms_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    save_file(dict(source.state_dict()), str(snapshot / "model.safetensors"))
    loaded = build("swin", timm_kwargs=TINY_SWIN, weights="imagenet").backbone
    assert torch.equal(loaded.patch_embed.proj.weight, source.patch_embed.proj.weight)

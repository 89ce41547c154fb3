import pytest
import torch
from torch import nn

from medilab.errors import ConfigError
from medilab.models import create_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _create(name: str, **kwargs) -> nn.Module:
    return create_model(
        name, in_channels=1, num_classes=3, image_size=[8, 16, 16], num_covariates=0, **kwargs
    )


def test_cnn3d_stages_and_shape():
    model = _create("cnn3d", width=4, depth=3, convs_per_stage=1, stem_stride=1, dropout=0.0)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv3d)]
    assert [c.out_channels for c in convs] == [4, 8, 16]
    assert sum(isinstance(m, nn.MaxPool3d) for m in model.modules()) == 2
    assert model(torch.randn(2, 1, 8, 16, 16)).shape == (2, 3)
    assert model(torch.randn(1, 1, 5, 7, 9)).shape == (1, 3)


def test_cnn3d_defaults_two_convs_per_stage_and_strided_stem():
    model = _create("cnn3d")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv3d)]
    assert [c.out_channels for c in convs] == [16, 16, 32, 32, 64, 64, 128, 128]
    assert convs[0].stride == (2, 2, 2) and convs[1].stride == (1, 1, 1)
    assert model(torch.randn(2, 1, 28, 28, 28)).shape == (2, 3)


def test_cnn3d_stem_stride_halves_the_first_stage():
    model = _create("cnn3d", width=4, depth=2, convs_per_stage=1, stem_stride=2)
    assert model.features[0](torch.randn(1, 1, 8, 16, 16)).shape == (1, 4, 4, 8, 8)
    with pytest.raises(ConfigError, match="depth"):
        _create("cnn3d", depth=0)


def test_cnn3d_trains_under_bf16_autocast():
    torch.manual_seed(0)
    model = _create("cnn3d", width=4, depth=3, dropout=0.0)
    volumes = torch.randn(12, 1, 8, 16, 16)
    labels = torch.tensor([0, 1, 2] * 4)
    volumes[labels == 1] += 1.0
    volumes[labels == 2] -= 1.0
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = nn.functional.cross_entropy(model(volumes).float(), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("monai_resnet3d", {"widen_factor": 0.25, "conv1_t_size": 3, "conv1_t_stride": 2}),
        ("monai_densenet3d", {"init_features": 8, "growth_rate": 4, "block_config": [2, 2]}),
    ],
)
def test_monai_networks_output_n_by_k_and_train(name, kwargs):
    torch.manual_seed(0)
    model = _create(name, **kwargs)
    volumes = torch.randn(4, 1, 8, 16, 16)
    labels = torch.tensor([0, 1, 2, 0])
    assert model(volumes).shape == (4, 3)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    losses = []
    for _ in range(4):
        loss = nn.functional.cross_entropy(model(volumes), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_monai_resnet_rejects_unknown_variant():
    with pytest.raises(ConfigError, match="variant"):
        _create("monai_resnet3d", variant="resnet11")

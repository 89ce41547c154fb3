import pytest
import torch
from torch import nn

from medilab.errors import ConfigError
from medilab.models import available_models, create_model


def test_simple_nn_blocks_and_shape():
    model = create_model(
        "simple_nn", in_channels=1, image_size=[28, 28], num_classes=10, hidden_sizes=[64, 32]
    )
    layers = [type(m) for m in model.net]
    assert layers[:5] == [nn.Flatten, nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Dropout]
    assert model.net[1].in_features == 784
    assert model(torch.randn(5, 1, 28, 28)).shape == (5, 10)


def test_small_cnn_any_size():
    model = create_model("small_cnn", in_channels=3, num_classes=4, widths=[8, 16])
    assert model(torch.randn(2, 3, 28, 28)).shape == (2, 4)
    assert model(torch.randn(2, 3, 9, 13)).shape == (2, 4)


def test_registry_lists_and_rejects():
    assert {"simple_nn", "small_cnn"} <= set(available_models())
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        create_model("nope")
    with pytest.raises(ConfigError, match="model.kwargs"):
        create_model("simple_nn", in_channels=1, image_size=[8, 8], num_classes=2, bogus=1)

"""Channels-last weights (the ``ChannelsLast`` callback of ``trainer.channels_last`` and of
``precision: auto`` with bf16) compute the same outputs as the contiguous layout: to fp32
rounding in fp32, within bf16 tolerance under bf16 autocast."""

from __future__ import annotations

import copy

import pytest
import torch

from medilab.models.registry import create_model
from medilab.run import ChannelsLast

MODELS = {
    "convnet": {"in_channels": 3, "num_classes": 4, "widths": [8, 16], "convs": 2},
    "resnet18": {"in_channels": 3, "num_classes": 4, "small_input": True},
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _pair(name: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The model in eval mode, and a copy converted by the ChannelsLast callback."""
    torch.manual_seed(0)
    model = create_model(name, **MODELS[name]).eval()
    converted = copy.deepcopy(model)
    ChannelsLast().on_fit_start(None, converted)
    conv = next(m for m in converted.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not conv.weight.is_contiguous()
    return model, converted


def _inputs() -> torch.Tensor:
    return torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", list(MODELS))
def test_fp32_outputs_equal(name):
    model, converted = _pair(name)
    x = _inputs()
    with torch.no_grad():
        reference = model(x)
        for image in (x, x.contiguous(memory_format=torch.channels_last)):
            torch.testing.assert_close(converted(image), reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list(MODELS))
def test_bf16_autocast_outputs_equal_within_bf16_tolerance(name):
    model, converted = _pair(name)
    x = _inputs()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        reference = model(x)
        outputs = converted(x.contiguous(memory_format=torch.channels_last))
    assert outputs.dtype == reference.dtype == torch.bfloat16
    torch.testing.assert_close(outputs.float(), reference.float(), rtol=2e-2, atol=2e-2)
    with torch.no_grad():
        fp32 = model(x)
    torch.testing.assert_close(outputs.float(), fp32, rtol=5e-2, atol=5e-2)


def test_fp32_gradients_equal():
    model, converted = _pair("convnet")
    model.train()
    converted.train()
    x = _inputs()
    target = torch.tensor([0, 1, 2, 3])
    for net, image in ((model, x), (converted, x.contiguous(memory_format=torch.channels_last))):
        torch.manual_seed(2)  # the same dropout mask
        torch.nn.functional.cross_entropy(net(image), target).backward()
    for (key, a), (_, b) in zip(model.named_parameters(), converted.named_parameters(),
                                strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5, msg=key)

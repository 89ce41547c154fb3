"""Temperature scaling as a module: a trained network whose logits are divided by T."""

from __future__ import annotations

import torch
from torch import nn


class TemperatureScaled(nn.Module):
    """``model(*inputs) / temperature``: the calibrated network as one module (for export and
    for ensembles of calibrated members)."""

    def __init__(self, model: nn.Module, temperature: float) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be positive (got {temperature})")
        self.model = model
        self.temperature = float(temperature)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(*inputs).float() / self.temperature


def with_temperature(model: nn.Module, temperature: float) -> nn.Module:
    """``model`` itself when ``temperature`` is 1, else it wrapped in :class:`TemperatureScaled`."""
    return model if temperature == 1.0 else TemperatureScaled(model, temperature)

"""Pretrained weights, offline only: torchvision's weight files in the torch hub cache, or a
local file (``weights_path``). Nothing is ever downloaded; a missing file is a one-line
:class:`~medilab.errors.WeightsUnavailableError` naming where it was looked for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torchvision.models import WeightsEnum

from medilab.errors import WeightsUnavailableError


def hub_file(weights: WeightsEnum) -> Path:
    """Where torchvision keeps ``weights`` once downloaded: ``<hub dir>/checkpoints/<file>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.pth``/``.ckpt`` file (``torch.load(weights_only=True)``); a
    Lightning checkpoint's ``state_dict`` is unwrapped."""
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailableError(f"{path}: weights file not found")
    try:
        state: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling problem is a bad file
        raise WeightsUnavailableError(
            f"{path}: not a readable weights file ({type(exc).__name__})"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsUnavailableError(f"{path}: expected a state dict of tensors")
    return state


def pretrained_state_dict(
    weights: WeightsEnum, weights_path: str | Path | None = None
) -> dict[str, torch.Tensor]:
    """The state dict of ``weights_path`` when given, else of ``weights`` from the hub cache."""
    if weights_path is not None:
        return read_state_dict(weights_path)
    cached = hub_file(weights)
    if not cached.is_file():
        raise WeightsUnavailableError(
            f"pretrained weights {weights} not available offline: {cached} is missing "
            "(copy the file there, set model.kwargs.weights_path, or use pretrained: false)"
        )
    return read_state_dict(cached)

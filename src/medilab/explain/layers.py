"""Find the layer a classifier CAM looks at, and bring its output to (N, C, H, W).

CNNs: the last module to finish in a forward pass that holds a ``Conv2d`` and returns a
spatial map (ResNet → ``layer4``, VGG → ``features``, SmallCNN → ``features``).
Swin (timm): the final ``norm`` of the Swin trunk, whose output is NHWC (timm ≥ 0.9) or a token
sequence (older timm); :func:`tokens_to_nchw` turns either into NCHW.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from medilab.errors import MedilabError

ReshapeTransform = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class TargetLayer:
    """The module a CAM hooks, its dotted name, and how to make its output NCHW."""

    name: str
    module: nn.Module
    reshape: ReshapeTransform
    channels_last: bool = False  # True when the raw output is NHWC or (N, L, C) tokens


def clone_nchw(tensor: torch.Tensor) -> torch.Tensor:
    """Identity for NCHW maps, copied so a later in-place op (ReLU) cannot change the CAM."""
    return tensor.clone()


def tokens_to_nchw(tensor: torch.Tensor) -> torch.Tensor:
    """NHWC maps or (N, L, C) token sequences on a square grid → (N, C, H, W)."""
    if tensor.ndim == 4:
        return tensor.permute(0, 3, 1, 2).contiguous()
    if tensor.ndim == 3:
        n, length, channels = tensor.shape
        side = math.isqrt(length)
        if side * side != length:
            raise MedilabError(f"cannot lay {length} tokens on a square grid for the CAM")
        return tensor.reshape(n, side, side, channels).permute(0, 3, 1, 2).contiguous()
    raise MedilabError(f"CAM: cannot reshape a feature tensor of shape {tuple(tensor.shape)}")


def _is_swin(module: nn.Module) -> bool:
    return type(module).__name__.startswith("SwinTransformer") and isinstance(
        getattr(module, "norm", None), nn.Module
    )


def _has_conv(module: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in module.modules())


def _swin_trunk(model: nn.Module) -> tuple[str, nn.Module] | None:
    for name, module in model.named_modules():
        if _is_swin(module):
            return name, module
    return None


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def named_layer(model: nn.Module, name: str) -> nn.Module:
    """The sub-module called ``name`` (dotted, as in ``model.named_modules()``)."""
    modules = dict(model.named_modules())
    if name not in modules or name == "":
        top = [n for n, _ in model.named_children()]
        raise MedilabError(f"target_layer {name!r} is not a layer of the model (top level: {top})")
    return modules[name]


def _finish_order(model: nn.Module, call: Callable[[], object]) -> list[tuple[str, torch.Size]]:
    """Run ``call`` once and list (module name, output shape) in the order modules finished."""
    finished: list[tuple[str, torch.Size]] = []
    handles = []
    for name, module in model.named_modules():
        if name == "":
            continue

        def hook(_m: nn.Module, _i: object, out: object, name: str = name) -> None:
            if isinstance(out, torch.Tensor):
                finished.append((name, out.shape))

        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            call()
    finally:
        for handle in handles:
            handle.remove()
    return finished


def _last_conv_block(model: nn.Module, call: Callable[[], object]) -> str | None:
    modules = dict(model.named_modules())
    convolutional = {name for name, module in modules.items() if _has_conv(module)}
    spatial: list[tuple[str, bool]] = [
        (name, shape[-1] * shape[-2] > 1)
        for name, shape in _finish_order(model, call)
        if name in convolutional and len(shape) == 4
    ]
    for wanted in (True, False):  # prefer maps bigger than 1×1
        names = [name for name, big in spatial if big == wanted]
        if names:
            return names[-1]
    return None


def find_target_layer(
    model: nn.Module, call: Callable[[], object], name: str | None = None
) -> TargetLayer:
    """The layer to explain in ``model``; ``call`` runs one forward pass (used to trace CNNs).

    ``name`` picks a layer by its dotted name instead (e.g. ``"backbone.layer4"``).
    """
    swin = _swin_trunk(model)
    if name is not None:
        module = named_layer(model, name)
        in_swin = swin is not None and name.startswith(_join(swin[0], "")) and not _has_conv(module)
        if in_swin:
            return TargetLayer(name, module, tokens_to_nchw, channels_last=True)
        return TargetLayer(name, module, clone_nchw)
    if swin is not None:
        prefix, trunk = swin
        return TargetLayer(_join(prefix, "norm"), trunk.norm, tokens_to_nchw, channels_last=True)
    if not _has_conv(model):
        raise MedilabError(
            f"CAM needs a convolutional or Swin feature map; {type(model).__name__} has neither "
            "(a fully connected model cannot be explained with CAM)"
        )
    found = _last_conv_block(model, call)
    if found is None:
        raise MedilabError(
            f"CAM: no layer of {type(model).__name__} returns an (N, C, H, W) feature map; "
            "give target_layer explicitly"
        )
    return TargetLayer(found, named_layer(model, found), clone_nchw)

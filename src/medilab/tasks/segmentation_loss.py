"""Segmentation losses inside the field of view: MONAI Dice, cross-entropy, or both; targets
are class indices or (soft) class probabilities."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from torch import nn

from medilab.errors import ConfigError


class SegmentationLoss(nn.Module):
    """``cross_entropy``, ``dice`` (MONAI DiceLoss on softmax probabilities, foreground classes,
    pooled over the batch) or ``dice_ce`` (their sum, as MONAI's DiceCELoss), counting only
    pixels where ``valid`` is 1. ``class_weights`` weight both terms. Targets are class indices
    or, from soft-label augmentation, class probabilities."""

    def __init__(self, name: str, num_classes: int, class_weights: list[float] | None = None):
        super().__init__()
        if class_weights is not None and len(class_weights) != num_classes:
            raise ConfigError(
                f"loss.class_weights: {len(class_weights)} weights for {num_classes} classes"
            )
        self.name = name
        self.num_classes = num_classes
        weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.register_buffer("weight", weight, persistent=False)
        self.dice = DiceLoss(include_background=False, batch=True,
                             weight=weight[1:] if weight is not None else None)

    def cross_entropy(self, logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor):
        pixel = F.cross_entropy(logits, target, weight=self.weight, reduction="none")
        if self.weight is None:
            norm = valid
        elif target.is_floating_point():  # soft targets: the expected class weight
            norm = torch.einsum("bc...,c->b...", target, self.weight) * valid
        else:
            norm = self.weight[target] * valid
        return (pixel * valid).sum() / norm.sum().clamp_min(1e-8)

    def dice_loss(self, logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor):
        inside = valid.unsqueeze(1)
        probs = torch.softmax(logits, dim=1) * inside
        return self.dice(probs, self.one_hot(target).to(probs.dtype) * inside)

    def one_hot(self, target: torch.Tensor) -> torch.Tensor:
        """Class maps ``(B, *S)`` as one-hot ``(B, K, *S)``; soft targets pass through."""
        if target.is_floating_point():
            return target
        return F.one_hot(target, self.num_classes).movedim(-1, 1)

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``target``: class indices ``(B, *S)`` or class probabilities ``(B, K, *S)``."""
        if valid is None:
            valid = torch.ones((logits.shape[0], *logits.shape[2:]), dtype=logits.dtype,
                               device=logits.device)
        valid = valid.to(logits.dtype)
        if self.name == "cross_entropy":
            return self.cross_entropy(logits, target, valid)
        if self.name == "dice":
            return self.dice_loss(logits, target, valid)
        return self.dice_loss(logits, target, valid) + self.cross_entropy(logits, target, valid)

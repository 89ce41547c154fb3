"""Augmentation built from config: small composable torchvision v2 transforms."""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from medilab.config import AugmentConfig
from medilab.data.transforms.elastic import RandomElastic


class RandomRot90(torch.nn.Module):
    """Rotate by a random multiple of 90° (keeps every pixel; safe for medical images)."""

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        k = int(torch.randint(0, 4, ()).item())
        rotated = tuple(torch.rot90(t, k, dims=(-2, -1)) for t in inputs)
        return rotated[0] if len(rotated) == 1 else rotated


def build_image_augmentation(augment: AugmentConfig) -> v2.Compose | None:
    """The transform for training images (C, H, W float tensors), or None when nothing is on."""
    steps: list[torch.nn.Module] = []
    if augment.hflip:
        steps.append(v2.RandomHorizontalFlip())
    if augment.vflip:
        steps.append(v2.RandomVerticalFlip())
    if augment.rot90:
        steps.append(RandomRot90())
    if augment.rotate_degrees or augment.translate or augment.scale:
        steps.append(
            v2.RandomAffine(
                degrees=augment.rotate_degrees,
                translate=(augment.translate, augment.translate) if augment.translate else None,
                scale=(1 - augment.scale, 1 + augment.scale) if augment.scale else None,
            )
        )
    if augment.elastic_magnitude:
        steps.append(RandomElastic(augment.elastic_magnitude, augment.elastic_spacing))
    if augment.brightness or augment.contrast:
        steps.append(v2.ColorJitter(brightness=augment.brightness, contrast=augment.contrast))
    return v2.Compose(steps) if steps else None

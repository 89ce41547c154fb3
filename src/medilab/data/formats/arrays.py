"""In-memory classification data: images, labels and sample ids (what every classification
source hands its datamodule)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ImageArrays:
    """Images (N, C, H, W) float32 in [0, 1], labels (N,) or None, and one id per sample."""

    images: np.ndarray
    labels: np.ndarray | None
    sample_ids: list[str]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

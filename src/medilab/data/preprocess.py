"""Per-source image preparation for classification: intensity steps, channels and size.

The same :class:`ImagePrep` runs at training, evaluation and prediction, so a model always sees
pixels prepared one way. DICOM files arrive standardised by :mod:`medilab.io` (modality LUT,
VOI window, MONOCHROME1 inverted); the optional ``log`` and ``color_balance`` steps are the
seed's chest X-ray recipe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field

from medilab.config import Strict
from medilab.data.datasets import channels_first, to_float
from medilab.io.intensity import log_transform, minmax_normalise, resize, simplest_color_balance


class PrepConfig(Strict):
    """How images are prepared (``data.prep``)."""

    size: list[int] | None = None  # [H, W]: resize (aspect kept, padded); None: keep
    channels: Literal[1, 3] | None = None  # 1 grey, 3 RGB; None: as stored
    log: bool = False  # log transform (after scaling to 0..1)
    color_balance: float | None = Field(None, ge=0, lt=100)  # simplest color balance, percent
    normalize: Literal["none", "zscore", "minmax"] = "none"  # per image


@dataclass
class ImagePrep:
    """Turn one read image (H, W[, C]) into float32 (C, H, W)."""

    config: PrepConfig

    def __call__(self, array: np.ndarray) -> np.ndarray:
        cfg = self.config
        image = to_float(array)
        if image.dtype != np.float32 or image.max() > 1.0 or image.min() < 0.0:
            image = minmax_normalise(image).astype(np.float32)
        if cfg.log:
            image = log_transform(image)
        if cfg.color_balance is not None:
            axis = -1 if image.ndim == 3 else None
            image = simplest_color_balance(image, cfg.color_balance, channel_axis=axis)
        if cfg.size is not None:
            image, _ = resize(image.astype(np.float32), tuple(cfg.size))
        image = channels_first(np.asarray(image, dtype=np.float32), cfg.channels)
        if cfg.normalize == "zscore":
            image = (image - image.mean()) / max(float(image.std()), 1e-6)
        elif cfg.normalize == "minmax":
            image = minmax_normalise(image)
        return np.ascontiguousarray(image, dtype=np.float32)

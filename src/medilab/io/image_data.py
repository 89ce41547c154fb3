"""The one in-memory type every reader returns: pixels plus metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class ImageData:
    """Pixels of a 2D image (H, W) / (H, W, C) or a volume (D, H, W), with metadata.

    ``spacing`` follows the array axes (row, column for 2D; slice, row, column for 3D) in mm,
    or is ``None`` when the format has no physical spacing.
    ``meta`` holds format-specific, PHI-free technical metadata (modality, photometric, …).
    """

    array: np.ndarray
    spacing: tuple[float, ...] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def is_volume(self) -> bool:
        return bool(self.meta.get("is_volume", False))

"""Field of view of fundus photographs: the bright disc on a black surround.

New fundus images usually come without an FOV mask; the field's usual estimate is a threshold of
the brightness followed by the largest connected component with its holes filled.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def estimate_fov(image: np.ndarray, threshold: float = 0.1) -> np.ndarray:
    """Boolean (H, W) map of the field of view of a fundus image (H, W) or (H, W, C).

    Pixels brighter than ``threshold`` × the image's brightest value (the red channel carries
    the disc best; the maximum over channels is used) form the candidate; the largest connected
    component, holes filled and eroded by one pixel to drop the dark rim, is the FOV.
    """
    pixels = np.asarray(image, dtype=np.float32)
    brightness = pixels.max(axis=-1) if pixels.ndim == 3 else pixels
    top = float(brightness.max())
    if top <= 0:
        return np.zeros(brightness.shape, bool)
    candidate = ndimage.median_filter(brightness, size=5) > threshold * top
    labels, count = ndimage.label(candidate)
    if count == 0:
        return np.zeros(brightness.shape, bool)
    sizes = ndimage.sum(candidate, labels, index=np.arange(1, count + 1))
    largest = labels == (int(np.argmax(sizes)) + 1)
    return ndimage.binary_erosion(ndimage.binary_fill_holes(largest), iterations=1)

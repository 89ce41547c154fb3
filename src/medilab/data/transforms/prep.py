"""Pixel preparation: the one owner of the rules every datamodule shares — stored values to
float (:func:`to_float`, :func:`to_unit_range`) and colour to one grey channel
(:func:`to_grey`) — and the classification sources' :class:`ImagePrep` (intensity steps,
channels and size).

The same steps run at training, evaluation and prediction, so a model always sees pixels
prepared one way. DICOM files arrive standardised by :mod:`medilab.io` (modality LUT, VOI
window, MONOCHROME1 inverted); the optional ``log`` and ``color_balance`` steps are the seed's
chest X-ray recipe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field

from medilab.config import Strict
from medilab.errors import MedilabError
from medilab.io.intensity import log_transform, minmax_normalise, resize, simplest_color_balance

# the version of the rules below, part of every cache key of prepared pixels: bump it when a
# rule changes what an image becomes, so arrays cached under the old rule are not served
RULES_VERSION = 2  # 2: one grey (mean) and 0..1 rule for every datamodule


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
        image = to_unit_range(array)
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


def to_float(array: np.ndarray) -> np.ndarray:
    """float32 pixels; uint8 is scaled to 0..1, booleans to 0/1, other values kept."""
    array = np.asarray(array)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    return array.astype(np.float32)


def to_unit_range(array: np.ndarray) -> np.ndarray:
    """float32 pixels in 0..1: :func:`to_float`, then min–max per image when the values lie
    outside 0..1 (16-bit or signed integers, DICOM in modality units, other float ranges)."""
    image = to_float(array)
    if image.size and (float(image.max()) > 1.0 or float(image.min()) < 0.0):
        image = minmax_normalise(image).astype(np.float32)
    return image


def to_grey(image: np.ndarray, channel_axis: int) -> np.ndarray:
    """One grey plane from colour channels: their plain mean (the channel axis removed). Grey
    images stored as RGB (R = G = B: every RGB image of the shared data sets) keep their value."""
    return np.asarray(image, np.float32).mean(axis=channel_axis, dtype=np.float32)


def channels_first(array: np.ndarray, channels: int | None = None) -> np.ndarray:
    """(H, W) → (1, H, W); (H, W, C) with C ≤ 4 → (C, H, W); an alpha channel is dropped.

    ``channels`` 1 makes colour grey (:func:`to_grey`), 3 repeats a grey channel; None keeps them.
    """
    if array.ndim == 2:
        array = array[None]
    elif array.ndim == 3 and array.shape[-1] <= 4 and array.shape[0] > 4:
        array = np.moveaxis(array, -1, 0)
    elif not (array.ndim == 3 and array.shape[0] <= 4):
        raise MedilabError(f"expected a 2D image (H, W) or (H, W, C), got shape {array.shape}")
    if array.shape[0] in (2, 4):  # grey + alpha or RGBA
        array = array[: array.shape[0] - 1]
    if channels == 1 and array.shape[0] == 3:
        array = to_grey(array, 0)[None]
    elif channels == 3 and array.shape[0] == 1:
        array = np.repeat(array, 3, axis=0)
    elif channels is not None and array.shape[0] != channels:
        raise MedilabError(f"cannot make {channels} channels from shape {array.shape}")
    return array


def stack_slices(volume: np.ndarray, index: int, k: int = 3, axis: int = 0) -> np.ndarray:
    """The ``k`` slices centred on ``index`` along ``axis`` as channels (k, H, W).

    k=3 gives previous, current, next; slices beyond the edges repeat the edge slice.
    """
    if k < 1 or k % 2 == 0:
        raise MedilabError(f"2.5D: k={k} must be an odd number of slices")
    volume = np.moveaxis(np.asarray(volume), axis, 0)
    depth = volume.shape[0]
    if not 0 <= index < depth:
        raise MedilabError(f"2.5D: slice {index} outside 0..{depth - 1}")
    positions = np.clip(np.arange(index - k // 2, index + k // 2 + 1), 0, depth - 1)
    return volume[positions]

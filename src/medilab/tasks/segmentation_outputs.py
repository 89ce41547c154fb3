"""What segmentation writes for a person: mask values, overlays, middle slices of volumes, and
the field of view used to blank predictions of new images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from medilab.errors import InputFileError
from medilab.tasks.segmentation_contract import SegmentationInputs


def mask_values(pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Binary masks as 0 / 255, multi-class masks as class indices (uint8)."""
    if num_classes == 2:
        return (pred > 0).astype(np.uint8) * 255
    return pred.astype(np.uint8)


def overlay(display: np.ndarray, pred: np.ndarray, truth: np.ndarray | None) -> np.ndarray:
    """RGB overlay on the grey image: predicted foreground tinted red, the ground truth
    outlined in green just outside its border (so thin structures such as vessels stay
    visible)."""
    grey = display.astype(np.float32) / 255
    if grey.ndim == 3:
        grey = grey.mean(axis=-1)
    base = np.repeat(grey[..., None], 3, axis=-1)
    out = base.copy()
    fg = pred > 0
    out[fg] = 0.4 * base[fg] + 0.6 * np.array([1.0, 0.0, 0.0])
    if truth is not None:
        edge = ndimage.binary_dilation(truth > 0) & ~(truth > 0)
        out[edge] = (0.0, 1.0, 0.0)
    return (out * 255).round().astype(np.uint8)


def middle(array: np.ndarray, spatial_dims: int) -> np.ndarray:
    return array[array.shape[0] // 2] if spatial_dims == 3 else array


def new_image_fov(
    path: Path, data: SegmentationInputs, fov_dir: str | Path | None
) -> tuple[np.ndarray, str]:
    """The image's FOV mask from ``fov_dir`` (paired by the run's key rule), or estimated."""
    from medilab.data.formats.mask_folders import key_function
    from medilab.data.formats.pixels import read_array
    from medilab.io.fov import estimate_fov

    image = np.asarray(read_array(str(path)))
    if fov_dir is not None:
        key = key_function(data.key)
        wanted = key(path.name)
        for candidate in sorted(Path(fov_dir).iterdir()):
            if candidate.is_file() and key(candidate.name) == wanted:
                mask = np.asarray(read_array(str(candidate)))
                mask = mask[..., 0] if mask.ndim == 3 else mask
                if mask.shape != image.shape[:2]:
                    raise InputFileError(candidate, f"FOV size {mask.shape} differs from "
                                         f"{path.name} ({image.shape[:2]})")
                return mask > 0, f"given: {candidate.name}"
        raise InputFileError(Path(fov_dir), f"no FOV mask for {path.name}")
    return estimate_fov(image), "estimated (threshold + largest component)"


def _stem(path: Path) -> str:
    name = path.name
    return name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else path.stem


def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith((".nii", ".nii.gz"))

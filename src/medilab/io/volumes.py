"""NIfTI (nibabel) and NRRD (pynrrd) volumes as numpy arrays in ``(D, H, W)`` order.

Axis order: both formats store x (column) as the fastest axis, i.e. file axes ``(i, j, k)``.
We return the spatial axes reversed — ``(k, j, i)`` = ``(D, H, W)``, slices first — and the
spacing in the same order, ``(slice, row, col)`` in mm. Writers take the same order and reverse
it back, so ``read(write(a, spacing))`` gives ``a`` and ``spacing``. Headers (NIfTI affine,
NRRD space directions/origin) kept in ``meta`` stay in file order.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import nibabel as nib
import nrrd
import numpy as np

from medilab.errors import InputFileError, MedilabError
from medilab.io.atomic import atomic_path
from medilab.io.image_data import ImageData
from medilab.io.messages import one_line


def _spatial_reverse(ndim: int) -> tuple[int, ...]:
    n = min(ndim, 3)
    return tuple(range(n - 1, -1, -1)) + tuple(range(n, ndim))


def read_nifti(path: str | os.PathLike[str]) -> ImageData:
    """Read ``.nii`` / ``.nii.gz``: array ``(D, H, W[, T...])``, spacing ``(slice, row, col)``.

    Integer data without scaling keeps its dtype (label maps stay integers); scaled data is
    float32. ``meta["affine"]`` is the 4×4 affine of the file's ``(i, j, k)`` indices.
    """
    try:
        image = nib.load(str(path))
        slope, inter = getattr(image.dataobj, "slope", 1.0), getattr(image.dataobj, "inter", 0.0)
        if (slope in (1.0, None) or np.isnan(slope)) and (inter in (0.0, None) or np.isnan(inter)):
            data = np.asarray(image.dataobj)
        else:
            data = image.get_fdata(dtype=np.float32)
        zooms = tuple(float(z) for z in image.header.get_zooms())
    except Exception as exc:
        raise InputFileError(path, f"not a readable NIfTI file ({one_line(exc)})") from None
    n = min(data.ndim, 3)
    array = np.ascontiguousarray(np.transpose(data, _spatial_reverse(data.ndim)))
    spacing = tuple(reversed(zooms[:n]))
    meta: dict[str, Any] = {
        "format": "nifti",
        "is_volume": data.ndim >= 3,
        "affine": np.asarray(image.affine).tolist(),
    }
    return ImageData(array, spacing, meta)


def write_nifti(
    path: str | os.PathLike[str],
    array: np.ndarray,
    spacing: tuple[float, ...] | None = None,
    affine: np.ndarray | None = None,
) -> Path:
    """Write a ``(D, H, W)`` array (spacing in the same order) to ``.nii`` / ``.nii.gz``
    atomically. Without ``affine`` the affine is ``diag(col, row, slice spacing)``; with one,
    the spacing written is the affine's (nibabel derives the header zooms from it)."""
    path = Path(path)
    name = path.name.lower()
    if not (name.endswith(".nii") or name.endswith(".nii.gz")):
        raise MedilabError(f"{path}: NIfTI output must end with .nii or .nii.gz")
    array = np.asarray(array)
    data = np.transpose(array, _spatial_reverse(array.ndim))
    if affine is None:
        file_spacing = list(reversed(spacing[: min(array.ndim, 3)])) if spacing else []
        affine = np.diag([*file_spacing, *[1.0] * (3 - len(file_spacing)), 1.0])
    image = nib.Nifti1Image(data, np.asarray(affine, dtype=np.float64))
    suffix = ".nii.gz" if name.endswith(".nii.gz") else ".nii"
    with atomic_path(path, suffix=suffix) as tmp:
        nib.save(image, str(tmp))
    return path


def _nrrd_spacing(header: dict[str, Any], ndim: int) -> tuple[float, ...]:
    directions = header.get("space directions")
    spacings = header.get("spacings")
    out = []
    for axis in range(ndim):
        value = 1.0
        if directions is not None and axis < len(directions):
            row = np.asarray(directions[axis], dtype=np.float64)
            if row.size and np.all(np.isfinite(row)):
                value = float(f"{np.linalg.norm(row):.10g}")
        elif spacings is not None and axis < len(spacings) and np.isfinite(spacings[axis]):
            value = float(spacings[axis])
        out.append(value)
    return tuple(reversed(out))


def read_nrrd(path: str | os.PathLike[str]) -> ImageData:
    """Read ``.nrrd`` / ``.nhdr``: array ``(D, H, W)``, spacing ``(slice, row, col)``.

    Spacing is the length of each ``space directions`` vector, else ``spacings``, else 1.0.
    """
    try:
        data, header = nrrd.read(str(path), index_order="C")
    except Exception as exc:
        raise InputFileError(path, f"not a readable NRRD file ({one_line(exc)})") from None
    meta: dict[str, Any] = {"format": "nrrd", "is_volume": data.ndim >= 3}
    for key in ("space", "space directions", "space origin", "kinds"):
        if key in header:
            value = header[key]
            meta[key.replace(" ", "_")] = value.tolist() if hasattr(value, "tolist") else value
    return ImageData(np.ascontiguousarray(data), _nrrd_spacing(header, data.ndim), meta)


def write_nrrd(
    path: str | os.PathLike[str],
    array: np.ndarray,
    spacing: tuple[float, ...] | None = None,
    header: dict[str, Any] | None = None,
) -> Path:
    """Write a ``(D, H, W)`` array to an attached-header ``.nrrd`` atomically (gzip).

    ``spacing`` (array order) becomes ``spacings``; ``header`` adds NRRD fields (file order).
    """
    path = Path(path)
    if path.suffix.lower() != ".nrrd":
        raise MedilabError(f"{path}: NRRD output must end with .nrrd (attached header)")
    fields: dict[str, Any] = {"encoding": "gzip"}
    if spacing is not None and not (header and "space directions" in header):
        fields["spacings"] = np.asarray(list(reversed(spacing)), dtype=np.float64)
    fields.update(header or {})
    with atomic_path(path, suffix=".nrrd") as tmp:
        nrrd.write(str(tmp), np.asarray(array), fields, index_order="C")
    return path

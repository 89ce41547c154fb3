"""One entry point, ``read_image(path, **opts)``, choosing the reader by path."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medilab.errors import InputFileError, MedilabError
from medilab.io.dicom import DICOM_SUFFIXES, has_dicom_magic, read_dicom, read_dicom_series
from medilab.io.image_data import ImageData
from medilab.io.images import PIL_SUFFIXES, TIFF_SUFFIXES, read_numpy, read_raster
from medilab.io.volumes import read_nifti, read_nrrd

SUPPORTED = (
    "DICOM file (.dcm/.dicom/.ima, no suffix, or DICM magic), DICOM series folder, "
    ".nii/.nii.gz, .nrrd/.nhdr, .png/.jpg/.jpeg/.gif/.bmp/.tif/.tiff, .npy/.npz"
)


def reader_for(path: str | os.PathLike[str]) -> Callable[..., ImageData]:
    """The reader function ``read_image`` would use for ``path``."""
    p = Path(path)
    name, suffix = p.name.lower(), p.suffix.lower()
    if p.is_dir():
        return read_dicom_series
    if not p.exists():
        raise InputFileError(p, "no such file or folder")
    if name.endswith(".nii") or name.endswith(".nii.gz"):
        return read_nifti
    if suffix in {".nrrd", ".nhdr"}:
        return read_nrrd
    if suffix in PIL_SUFFIXES or suffix in TIFF_SUFFIXES:
        return read_raster
    if suffix in {".npy", ".npz"}:
        return read_numpy
    if suffix in DICOM_SUFFIXES or suffix == "" or has_dicom_magic(p):
        return read_dicom
    raise InputFileError(p, f"unsupported image format {suffix!r} (supported: {SUPPORTED})")


def read_image(path: str | os.PathLike[str], **opts: Any) -> ImageData:
    """Read any supported image or volume into ``ImageData`` (see ``SUPPORTED``).

    ``opts`` go to the chosen reader: DICOM ``standardise``, ``window``, ``output``
    (and ``series_uid`` for folders); npz ``key``. Volumes are ``(D, H, W)`` with spacing in
    the same order; 2D images ``(H, W[, C])``.
    """
    reader = reader_for(path)
    accepted = set(inspect.signature(reader).parameters) - {"path", "folder"}
    unknown = sorted(set(opts) - accepted)
    if unknown:
        raise MedilabError(
            f"{path}: option(s) {', '.join(unknown)} do not apply to {reader.__name__}"
            f" (accepts: {', '.join(sorted(accepted)) or 'none'})"
        )
    return reader(path, **opts)

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

# every file suffix medilab reads (one owner: the other modules ask here)
RASTER_SUFFIXES = PIL_SUFFIXES | TIFF_SUFFIXES
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr")
ARRAY_SUFFIXES = frozenset({".npy"})
IMAGE_SUFFIXES = RASTER_SUFFIXES | DICOM_SUFFIXES | ARRAY_SUFFIXES | frozenset(VOLUME_SUFFIXES)

SUPPORTED = (
    "DICOM file (.dcm/.dicom/.ima, no suffix, or DICM magic), DICOM series folder, "
    ".nii/.nii.gz, .nrrd/.nhdr, .png/.jpg/.jpeg/.gif/.bmp/.tif/.tiff, .npy/.npz"
)


def file_suffix(path: str | os.PathLike[str]) -> str:
    """The lower-case suffix, with ``.nii.gz`` as one suffix."""
    name = Path(path).name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def is_volume_file(path: str | os.PathLike[str]) -> bool:
    """A NIfTI or NRRD file, by name."""
    return file_suffix(path) in VOLUME_SUFFIXES


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """An image, volume, DICOM or ``.npy`` file, by suffix (see :data:`IMAGE_SUFFIXES`)."""
    return file_suffix(path) in IMAGE_SUFFIXES


def volume_stem(path: str | os.PathLike[str]) -> str:
    """The file name without its volume suffix (``ct.nii.gz`` → ``ct``)."""
    name = Path(path).name
    suffix = file_suffix(path)
    return name[: -len(suffix)] if suffix in VOLUME_SUFFIXES else Path(name).stem


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

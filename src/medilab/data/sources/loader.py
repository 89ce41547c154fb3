"""Read the pixels a manifest entry points to: a file, a DICOM series folder, or an npz member."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from medilab.errors import InputFileError

_PIL_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".bmp"}


def npz_reference(path: str | Path, split: str, index: int) -> str:
    """The manifest text for sample ``index`` of ``split`` in a MedMNIST-style npz."""
    return f"{path}::{split}::{index}"


@functools.lru_cache(maxsize=8)
def _npz_member(path: str, key: str) -> np.ndarray:
    try:
        with np.load(path) as data:
            if key not in data.files:
                raise InputFileError(path, f"no array {key!r} (has {', '.join(data.files)})")
            return data[key]
    except (OSError, ValueError) as exc:
        raise InputFileError(path, f"not a readable npz file ({exc})") from None


def read_array(ref: str | Path) -> np.ndarray:
    """Pixels of one manifest entry as a numpy array.

    ``file.npz::split::index`` reads ``split_images[index]`` of a MedMNIST-style npz (the npz
    member is loaded once and kept); anything else goes to ``medilab.io.reader.read_image``
    (DICOM file or series folder, NIfTI, NRRD, PNG/TIFF/GIF, npy).
    """
    text = str(ref)
    if "::" in text:
        path, split, index = text.split("::")
        images = _npz_member(path, f"{split}_images")
        return images[int(index)]
    return read_image(text).array


def read_image(path: str | Path):
    """``medilab.io.reader.read_image`` when available; a small fallback otherwise."""
    try:
        from medilab.io.reader import read_image as io_read_image
    except ImportError:  # medilab.io.reader not there yet: plain formats only
        return _fallback_read(Path(path))
    return io_read_image(path)


def _fallback_read(path: Path):
    from medilab.io.image_data import ImageData

    if not path.exists():
        raise InputFileError(path, "file not found")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return ImageData(np.load(path))
    if suffix in _PIL_SUFFIXES:
        from PIL import Image

        with Image.open(path) as image:
            return ImageData(np.asarray(image.convert("L") if image.mode == "P" else image))
    if suffix in {".nii", ".gz"}:
        import nibabel as nib

        return ImageData(np.asarray(nib.load(path).dataobj))
    if suffix == ".nrrd":
        import nrrd

        return ImageData(nrrd.read(str(path))[0])
    import pydicom

    if path.is_dir():
        slices = [pydicom.dcmread(p) for p in sorted(path.iterdir()) if p.is_file()]
        slices.sort(key=lambda d: float(getattr(d, "InstanceNumber", 0) or 0))
        return ImageData(np.stack([s.pixel_array for s in slices]), meta={"is_volume": True})
    try:
        return ImageData(pydicom.dcmread(path).pixel_array)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad input file
        raise InputFileError(path, f"cannot read image ({exc})") from None

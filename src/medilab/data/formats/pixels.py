"""Read the pixels a manifest entry points to: a file, a DICOM series folder, or an npz member."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from medilab.io.dicom import DICOM_SUFFIXES, has_dicom_magic
from medilab.io.image_data import ImageData
from medilab.io.images import npz_array, open_npz
from medilab.io.reader import RASTER_SUFFIXES
from medilab.io.reader import read_image as _io_read_image


def npz_reference(path: str | Path, split: str, index: int) -> str:
    """The manifest text for sample ``index`` of ``split`` in a MedMNIST-style npz."""
    return f"{path}::{split}::{index}"


@functools.lru_cache(maxsize=8)
def _npz_member(path: str, key: str) -> np.ndarray:
    with open_npz(path) as data:
        return npz_array(data, key, path)


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


def read_image(path: str | Path) -> ImageData:
    """``medilab.io.reader.read_image`` (kept here so data code has one import for pixels)."""
    return _io_read_image(path)


INPUT_SUFFIXES = RASTER_SUFFIXES | DICOM_SUFFIXES  # 2D images to predict or explain


def input_image_files(inputs: Path) -> list[Path]:
    """New images to predict or explain: ``inputs`` itself when it is a file, else every image
    or DICOM file under the folder (by suffix, or DICOM's ``DICM`` magic), sorted."""
    if inputs.is_file():
        return [inputs]
    return sorted(p for p in inputs.rglob("*") if p.is_file()
                  and (p.suffix.lower() in INPUT_SUFFIXES or has_dicom_magic(p)))

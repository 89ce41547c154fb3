"""Lab 1 formats: Kaggle "Digit Recognizer" pixel CSVs, MNIST idx files, scikit-learn digits."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pandas as pd

from medilab.data.formats.arrays import ImageArrays
from medilab.errors import InputFileError
from medilab.io.tables import read_csv_table


def read_pixel_csv(path: str | Path, *, labelled: bool, pixel_scale: float = 255.0) -> ImageArrays:
    """Read a Kaggle-style pixel table.

    ``labelled=True`` expects ``label,pixel0..pixelN`` (train); ``labelled=False`` expects pixels
    only (test). The pixel count must be a square number; values must lie in
    ``0 … pixel_scale`` and are divided by it. Errors name the file, the data row (1-based,
    header not counted) and the column.
    """
    path = Path(path)
    frame = read_csv_table(path)
    if labelled and "label" not in frame.columns:
        raise InputFileError(
            path, "no 'label' column (a training table needs label,pixel0..pixelN)"
        )
    if not labelled and "label" in frame.columns:
        raise InputFileError(
            path, "has a 'label' column; a test table holds pixels only (pixel0..pixelN)"
        )
    pixel_columns = [c for c in frame.columns if c != "label"]
    expected = [f"pixel{i}" for i in range(len(pixel_columns))]
    if pixel_columns != expected:
        wrong = next(c for c, e in zip(pixel_columns, expected, strict=True) if c != e)
        raise InputFileError(path, f"column {wrong!r}: expected pixel columns pixel0..pixelN")
    side = math.isqrt(len(pixel_columns))
    if side * side != len(pixel_columns) or side == 0:
        raise InputFileError(
            path, f"{len(pixel_columns)} pixel columns is not a square image (expected e.g. 784)"
        )
    pixels = _numeric(frame[pixel_columns], path)
    _check_range(pixels, pixel_columns, pixel_scale, path)
    images = (pixels / pixel_scale).astype(np.float32).reshape(-1, 1, side, side)
    labels = None
    if labelled:
        labels = _labels(frame["label"], path)
    return ImageArrays(images, labels, [str(i) for i in range(1, len(frame) + 1)])


def read_mnist_idx(images_path: str | Path, labels_path: str | Path) -> ImageArrays:
    """Read MNIST idx files (``train-images-idx3-ubyte[.gz]`` and the matching labels)."""
    images = _read_idx(Path(images_path), expected_dims=3)
    labels = _read_idx(Path(labels_path), expected_dims=1)
    if len(images) != len(labels):
        raise InputFileError(
            labels_path, f"{len(labels)} labels for {len(images)} images in {images_path}"
        )
    data = (images.astype(np.float32) / 255.0)[:, None]
    return ImageArrays(data, labels.astype(np.int64), [str(i) for i in range(1, len(data) + 1)])


def load_sklearn_digits() -> ImageArrays:
    """scikit-learn's shipped 8×8 digits (1,797 real handwritten digits, grey levels 0–16)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    return ImageArrays(
        images, digits.target.astype(np.int64), [str(i) for i in range(1, len(images) + 1)]
    )


def _numeric(frame: pd.DataFrame, path: Path) -> np.ndarray:
    """The table as float64, or an error naming the first non-numeric cell."""
    converted = frame.apply(pd.to_numeric, errors="coerce")
    bad = converted.isna() & frame.notna() | frame.isna()
    if bad.to_numpy().any():
        row, col = np.argwhere(bad.to_numpy())[0]
        value = frame.iat[row, col]
        raise InputFileError(
            path, f"row {row + 1}, column {frame.columns[col]!r}: {value!r} is not a number"
        )
    return converted.to_numpy(dtype=np.float64)


def _check_range(
    pixels: np.ndarray, columns: list[str], pixel_scale: float, path: Path
) -> None:
    """Refuse values below 0 or above ``pixel_scale`` (naming the first such cell)."""
    bad = (pixels < 0) | (pixels > pixel_scale)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise InputFileError(
            path,
            f"row {row + 1}, column {columns[col]!r}: {pixels[row, col]:g} is outside "
            f"0…{pixel_scale:g} (pixel_scale); {int(bad.sum())} value(s) out of range",
        )


def _labels(column: pd.Series, path: Path) -> np.ndarray:
    values = pd.to_numeric(column, errors="coerce")
    bad = values.isna() | (values != values.round()) | (values < 0)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputFileError(
            path, f"row {row + 1}, column 'label': {column.iat[row]!r} is not a class index ≥ 0"
        )
    return values.to_numpy(dtype=np.int64)


def _read_idx(path: Path, expected_dims: int) -> np.ndarray:
    if not path.is_file():
        raise InputFileError(path, "file not found")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise InputFileError(path, f"cannot read ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise InputFileError(path, "not an unsigned-byte MNIST idx file (bad magic number)")
    dims = raw[3]
    if dims != expected_dims:
        raise InputFileError(path, f"idx file has {dims} dimensions, expected {expected_dims}")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    offset = 4 + 4 * dims
    if len(raw) - offset != int(np.prod(shape)):
        raise InputFileError(path, f"truncated: header says {shape}, data size differs")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(shape)

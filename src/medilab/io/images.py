"""2D raster images (PNG, JPEG, GIF, BMP via Pillow; TIFF via tifffile) and numpy files.

Arrays are ``(H, W)`` for grayscale, ``(H, W, 3|4)`` for colour, in the file's dtype
(``uint8``, 16-bit PNG/TIFF as ``uint16``). Raster formats carry no physical spacing, so
``spacing`` is ``None`` (npz files may store one under the key ``spacing``).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, ImageSequence

from medilab.errors import InputFileError, MedilabError
from medilab.io.atomic import atomic_path
from medilab.io.image_data import ImageData
from medilab.io.messages import one_line, short_list

PIL_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".bmp"})
TIFF_SUFFIXES = frozenset({".tif", ".tiff"})


def _pil_to_array(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode == "P":
        has_alpha = "transparency" in image.info
        palette = np.asarray(image.getpalette() or [], dtype=np.uint8).reshape(-1, 3)
        gray = palette.size and np.all(palette[:, 0] == palette[:, 1]) and np.all(
            palette[:, 1] == palette[:, 2]
        )
        image = image.convert("RGBA" if has_alpha else ("L" if gray else "RGB"))
    elif mode in {"1", "LA", "La"}:
        image = image.convert("L")
    elif mode in {"CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa"}:
        image = image.convert("RGB")
    array = np.asarray(image)
    if image.mode == "I" and array.size and array.min() >= 0 and array.max() <= 65535:
        array = array.astype(np.uint16)
    return np.array(array)


def read_raster(path: str | os.PathLike[str]) -> ImageData:
    """Read PNG, JPEG, GIF (first frame; DRIVE masks) or BMP with Pillow, TIFF with tifffile
    (falling back to Pillow for compressions tifffile cannot decode without imagecodecs)."""
    path = Path(path)
    suffix = path.suffix.lower()
    meta: dict[str, object] = {"format": suffix.lstrip(".").replace("jpeg", "jpg")}
    try:
        if suffix in TIFF_SUFFIXES:
            try:
                array = np.asarray(tifffile.imread(path))
            except ValueError:  # e.g. LZW without imagecodecs
                with Image.open(path) as image:
                    array = _pil_to_array(image)
        else:
            with Image.open(path) as image:
                meta["frames"] = getattr(image, "n_frames", 1)
                first = next(iter(ImageSequence.Iterator(image)))
                array = _pil_to_array(first)
    except Exception as exc:  # noqa: BLE001 - Pillow / tifffile raise many types on bad files
        # (OSError, SyntaxError, DecompressionBombError for a huge declared size, MemoryError)
        kind = str(meta["format"]).upper()
        raise InputFileError(path, f"not a readable {kind} image ({one_line(exc)})") from None
    meta["is_volume"] = False
    return ImageData(array, None, meta)


def open_npz(path: str | os.PathLike[str]) -> np.lib.npyio.NpzFile:
    """Open an ``.npz`` archive (use it as a context manager); pickled data is never loaded.

    Anything that is not an npz archive (a text file renamed ``.npz``, a damaged zip, a single
    ``.npy``) raises ``InputFileError`` "<path>: not a valid npz file".
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "file not found")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        raise InputFileError(path, "not a valid npz file") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise InputFileError(path, "not a valid npz file (it holds a single .npy array)")
    return loaded


def npz_array(archive: np.lib.npyio.NpzFile, name: str, path: object) -> np.ndarray:
    """Array ``name`` of an open npz; missing, damaged or object (pickled) arrays raise
    ``InputFileError`` naming ``path`` and the array."""
    if name not in archive.files:
        raise InputFileError(path, f"no array {name!r} (has {short_list(archive.files)})")
    try:
        return archive[name]
    except ValueError as exc:
        if "pickle" in str(exc) or "Object arrays" in str(exc):
            raise InputFileError(
                path, f"array {name!r} holds Python objects; only plain numeric arrays are read"
            ) from None
        raise InputFileError(path, f"not a valid npz file (array {name!r} is damaged)") from None
    except (OSError, EOFError, zipfile.BadZipFile):
        raise InputFileError(path, f"not a valid npz file (array {name!r} is damaged)") from None


def read_numpy(path: str | os.PathLike[str], key: str | None = None) -> ImageData:
    """Read ``.npy`` or one array of an ``.npz`` (``key``, else its only array besides an
    optional ``spacing``). Pickled objects are refused, never loaded."""
    path = Path(path)
    spacing = None
    if path.suffix.lower() == ".npz":
        with open_npz(path) as loaded:
            names = [n for n in loaded.files if n != "spacing"]
            if key is None and len(names) != 1:
                raise InputFileError(
                    path, f"holds arrays {short_list(names)}; choose one with key="
                )
            array = npz_array(loaded, key if key is not None else names[0], path)
            if "spacing" in loaded.files:
                spacing = tuple(float(v) for v in npz_array(loaded, "spacing", path))
    else:
        if not path.is_file():
            raise InputFileError(path, "file not found")
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            raise InputFileError(
                path, "not a valid npy file (or it holds Python objects, which are never loaded)"
            ) from None
        if not isinstance(array, np.ndarray):
            array.close()
            raise InputFileError(path, "not a valid npy file (it is an npz archive)")
    meta = {"format": path.suffix.lstrip("."), "is_volume": array.ndim == 3}
    return ImageData(np.asarray(array), spacing, meta)


def write_npz(
    path: str | os.PathLike[str], array: np.ndarray, spacing: tuple[float, ...] | None = None
) -> Path:
    """Write ``array`` (key ``array``) and optional ``spacing`` to a compressed ``.npz``."""
    arrays = {"array": np.asarray(array)}
    if spacing is not None:
        arrays["spacing"] = np.asarray(spacing, dtype=np.float64)
    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    return Path(path)


def _png_values(array: np.ndarray, bits: int) -> np.ndarray:
    top = (1 << bits) - 1
    dtype = np.uint8 if bits == 8 else np.uint16
    if array.dtype == bool:
        return np.where(array, top, 0).astype(dtype)
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise MedilabError("write_png: float array holds NaN or infinity")
        low, high = float(array.min(initial=0.0)), float(array.max(initial=0.0))
        if low < -1e-6 or high > 1 + 1e-6:
            raise MedilabError(
                f"write_png: float values must lie in [0, 1], got [{low:g}, {high:g}]"
            )
        return np.rint(np.clip(array, 0.0, 1.0) * top).astype(dtype)
    if np.issubdtype(array.dtype, np.integer):
        if array.size and (int(array.min()) < 0 or int(array.max()) > top):
            raise MedilabError(
                f"write_png: integer values must lie in [0, {top}] for {bits} bits, "
                f"got [{int(array.min())}, {int(array.max())}]"
            )
        return array.astype(dtype)
    raise MedilabError(f"write_png: unsupported dtype {array.dtype}")


def write_png(path: str | os.PathLike[str], array: np.ndarray, bits: int = 8) -> Path:
    """Write a PNG atomically. ``bits=8``: ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)``;
    ``bits=16``: grayscale ``(H, W)`` only. Floats must lie in [0, 1] and are scaled to the
    full range; integers are written as they are (and must fit); booleans become 0 / max.
    """
    if bits not in (8, 16):
        raise MedilabError(f"write_png: bits must be 8 or 16, got {bits}")
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    colour = array.ndim == 3 and array.shape[-1] in (3, 4)
    if not (array.ndim == 2 or colour):
        raise MedilabError(f"write_png: expected (H, W) or (H, W, 3|4), got shape {array.shape}")
    if colour and bits == 16:
        raise MedilabError("write_png: 16-bit PNG is supported for grayscale (H, W) only")
    image = Image.fromarray(np.ascontiguousarray(_png_values(array, bits)))
    with atomic_path(path, suffix=".png") as tmp:
        image.save(tmp, format="PNG")
    return Path(path)

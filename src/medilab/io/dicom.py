"""DICOM to numpy: reading (single file, multi-frame, series folder) and standardisation.

Pixel pipeline (``standardise_dicom``): decode (pydicom pixel handlers; JPEG, JPEG-LS,
JPEG 2000 and RLE through the pylibjpeg plugins) → modality LUT (rescale slope/intercept,
Hounsfield units for CT) → VOI LUT or window centre/width → MONOCHROME1 inversion → float32
in [0, 1] or 8/16-bit integers. Volumes are ``(D, H, W)`` with spacing ``(slice, row, col)`` mm.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, get_decoder
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from medilab.errors import InputFileError, MedilabError
from medilab.io.image_data import ImageData
from medilab.io.intensity import (
    WINDOW_PRESETS,
    apply_window,
    minmax_normalise,
    parse_window,
    to_bits,
)
from medilab.io.messages import one_line
from medilab.io.phi import dicom_metadata

DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".dic", ".ima"})
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
Window = str | int | tuple[float, float] | None
OUTPUTS = ("float", "uint8", "uint16")


def has_dicom_magic(path: str | os.PathLike[str]) -> bool:
    """True when the file carries the ``DICM`` marker after its 128-byte preamble."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def looks_like_dicom(path: str | os.PathLike[str]) -> bool:
    """DICOM by suffix (``.dcm``, ``.dicom``, ``.dic``, ``.ima``), by having none, or by magic."""
    p = Path(path)
    return p.suffix.lower() in DICOM_SUFFIXES or p.suffix == "" or has_dicom_magic(p)


def _guess_transfer_syntax(ds: Dataset) -> None:
    """Files without file meta (old ACR-NEMA style): take the syntax the data was read with."""
    if ds.file_meta is None:
        ds.file_meta = FileMetaDataset()
    if "TransferSyntaxUID" not in ds.file_meta:
        implicit, little = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian if implicit
            else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
        )


def read_dataset(path: str | os.PathLike[str], stop_before_pixels: bool = False) -> Dataset:
    """Read a DICOM file with pydicom; raise ``InputFileError`` (one line) if it cannot be read.

    Files without the DICM preamble are retried with ``force=True`` and accepted only if they
    then hold image rows and pixel data.
    """
    try:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
        except InvalidDicomError:
            ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=True)
            if "Rows" not in ds:
                raise InputFileError(
                    path, "not a readable DICOM file (no DICM header, no image rows)"
                ) from None
            _guess_transfer_syntax(ds)
    except MedilabError:
        raise
    except Exception as exc:  # pydicom raises many types on corrupt input
        raise InputFileError(path, f"not a readable DICOM file ({one_line(exc)})") from None
    if not stop_before_pixels and not any(k in ds for k in PIXEL_KEYWORDS):
        raise InputFileError(path, "not a readable DICOM file (no pixel data; truncated?)")
    return ds


def decode_pixels(ds: Dataset, path: object = None) -> np.ndarray:
    """Stored pixel values: ``(H, W)``, ``(H, W, 3)`` or, for multi-frame, ``(F, H, W[, 3])``.

    YBR colour is converted to RGB. Unsupported transfer syntaxes are named in the error.
    """
    path = path if path is not None else getattr(ds, "filename", "<dataset>")
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is not None and syntax.is_compressed:
        try:
            decoder = get_decoder(syntax)
        except NotImplementedError:
            raise InputFileError(
                path, f"unsupported transfer syntax {syntax.name} ({syntax})"
            ) from None
        if not decoder.is_available:
            raise InputFileError(
                path, f"unsupported transfer syntax {syntax.name}: no decoder plugin installed"
            )
    try:
        return np.asarray(ds.pixel_array)
    except Exception as exc:
        raise InputFileError(path, f"not a readable DICOM file ({one_line(exc)})") from None


def is_color(ds: Dataset) -> bool:
    """True for RGB/YBR/palette images (no modality or VOI LUT applies)."""
    return int(ds.get("SamplesPerPixel", 1)) > 1 or ds.get("PhotometricInterpretation") == (
        "PALETTE COLOR"
    )


def modality_values(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    """Apply the modality LUT / rescale (HU for CT) with pydicom; float32 result."""
    return np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)


def _window_values(ds: Dataset, index: int) -> tuple[float, float] | None:
    if "WindowCenter" not in ds or "WindowWidth" not in ds:
        return None
    centers, widths = ds["WindowCenter"], ds["WindowWidth"]
    cs = list(centers.value) if centers.VM > 1 else [centers.value]
    ws = list(widths.value) if widths.VM > 1 else [widths.value]
    if index >= min(len(cs), len(ws)):
        return None
    return float(cs[index]), float(ws[index])


def ct_window_preset(window: object) -> str | None:
    """The preset name when ``window`` names a CT window preset (``"lung"``, ``"bone"``…)."""
    if isinstance(window, str) and window.strip().lower() in WINDOW_PRESETS:
        return window.strip().lower()
    return None


def ct_window_warning(ds: Dataset, window: object) -> str | None:
    """A warning text when a CT (Hounsfield unit) preset is applied to a non-CT image."""
    preset = ct_window_preset(window)
    modality = str(ds.get("Modality") or "").upper()
    if preset is None or not modality or modality == "CT":
        return None
    return (
        f"window preset {preset!r} is a CT (Hounsfield unit) window but the image is "
        f"{modality}; it will look nearly white or black (use the file's own VOI window)"
    )


def voi_to_unit(values: np.ndarray, ds: Dataset, window: Window = "first") -> np.ndarray:
    """Map modality values to [0, 1] (float32, before any MONOCHROME1 inversion).

    ``window``: ``"first"`` — the file's first VOI LUT (preferred, as pydicom does) or window,
    falling back to min–max when the file has none; an ``int`` — that VOI LUT / window index
    (error when absent); ``(center, width)`` or a preset / ``"C,W"`` string — that window;
    ``None`` — min–max of the image. A CT preset on a non-CT image gives a ``UserWarning``.
    """
    message = ct_window_warning(ds, window)
    if message:
        warnings.warn(message, UserWarning, stacklevel=2)
    if window is None:
        return minmax_normalise(values)
    if (isinstance(window, str) and window != "first") or isinstance(window, tuple | list):
        center, width = parse_window(window)
        return apply_window(values, center, width)
    index = 0 if window == "first" else int(window)
    sequence = ds.get("VOILUTSequence")
    if sequence:
        if index >= len(sequence):
            raise MedilabError(f"window: index {index} but the file has {len(sequence)} VOI LUTs")
        lut = np.asarray(sequence[index].LUTData, dtype=np.float64)
        out = np.asarray(apply_voi(values, ds, index), dtype=np.float64)
        low, high = float(lut.min()), float(lut.max())
        scaled = (out - low) / (high - low) if high > low else np.zeros_like(out)
        return scaled.astype(np.float32)
    center_width = _window_values(ds, index)
    if center_width is not None:
        function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR")
        return apply_window(values, *center_width, function=function)
    if window != "first":
        raise MedilabError(f"window: index {index} but the file has no such VOI LUT or window")
    return minmax_normalise(values)


def _to_output(x: np.ndarray, output: str) -> np.ndarray:
    if output == "float":
        return np.asarray(x, dtype=np.float32)
    if output == "uint8":
        return to_bits(x, 8)
    if output == "uint16":
        return to_bits(x, 16)
    raise MedilabError(f"output: expected one of {OUTPUTS}, got {output!r}")


def _color_to_unit(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    if ds.get("PhotometricInterpretation") == "PALETTE COLOR":
        rgb = np.asarray(apply_color_lut(arr, ds))
        top = 255.0 if rgb.max(initial=0) <= 255 else 65535.0
        return (rgb / top).astype(np.float32)
    top = float((1 << int(ds.get("BitsStored", 8))) - 1)
    return (np.asarray(arr, dtype=np.float64) / top).astype(np.float32)


def standardise_dicom(
    ds: Dataset,
    window: Window = "first",
    output: str = "float",
    pixels: np.ndarray | None = None,
) -> np.ndarray:
    """Display-ready pixels of ``ds``: modality LUT → VOI (see ``voi_to_unit`` for ``window``)
    → MONOCHROME1 inversion → ``output`` ``"float"`` (float32 in [0, 1]), ``"uint8"`` or
    ``"uint16"``. Colour images are only scaled. ``pixels`` skips decoding again.
    """
    if output not in OUTPUTS:
        raise MedilabError(f"output: expected one of {OUTPUTS}, got {output!r}")
    arr = decode_pixels(ds) if pixels is None else pixels
    if is_color(ds):
        return _to_output(_color_to_unit(arr, ds), output)
    x = voi_to_unit(modality_values(arr, ds), ds, window)
    if ds.get("PhotometricInterpretation") == "MONOCHROME1":
        x = 1.0 - x
    return _to_output(x, output)


def _pixel_measures(ds: Dataset) -> Dataset | None:
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared and shared[0].get("PixelMeasuresSequence"):
        return shared[0].PixelMeasuresSequence[0]
    return None


def pixel_spacing(ds: Dataset) -> tuple[float, float] | None:
    """(row, column) spacing in mm from PixelSpacing, ImagerPixelSpacing or functional groups."""
    for source in (ds, _pixel_measures(ds)):
        if source is None:
            continue
        for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
            value = source.get(keyword)
            if value is not None and len(value) == 2:
                return float(value[0]), float(value[1])
    return None


def _declared_slice_spacing(ds: Dataset) -> tuple[float | None, str]:
    for source in (ds, _pixel_measures(ds)):
        if source is None:
            continue
        for keyword in ("SpacingBetweenSlices", "SliceThickness"):
            value = source.get(keyword)
            if value not in (None, "") and float(value) > 0:
                return float(value), keyword
    return None, "unknown"


def _metadata(ds: Dataset, **extra: Any) -> dict[str, Any]:
    meta = dicom_metadata(ds)
    meta.update({"format": "dicom"}, **extra)
    return meta


def _pixels_for_output(
    ds: Dataset, arr: np.ndarray, standardise: bool, window: Window, output: str
) -> np.ndarray:
    if standardise:
        return standardise_dicom(ds, window=window, output=output, pixels=arr)
    if is_color(ds):
        return apply_color_lut(arr, ds) if ds.PhotometricInterpretation == "PALETTE COLOR" else arr
    return modality_values(arr, ds)


def read_dicom(
    path: str | os.PathLike[str],
    *,
    standardise: bool = False,
    window: Window = "first",
    output: str = "float",
) -> ImageData:
    """Read one DICOM file (single- or multi-frame).

    By default the array holds modality values (float32; HU for CT), or RGB for colour.
    With ``standardise=True`` it is ``standardise_dicom(ds, window, output)``.
    Single frame: ``(H, W)``, spacing ``(row, col)``. Multi-frame: ``(F, H, W)``, spacing
    ``(slice, row, col)`` when SpacingBetweenSlices/SliceThickness is known; ``meta["is_volume"]``.
    """
    ds = read_dataset(path)
    arr = decode_pixels(ds, path)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    array = _pixels_for_output(ds, arr, standardise, window, output)
    spacing: tuple[float, ...] | None = pixel_spacing(ds)
    if frames > 1:
        slice_spacing, _ = _declared_slice_spacing(ds)
        spacing = (slice_spacing, *spacing) if spacing and slice_spacing else None
    return ImageData(array, spacing, _metadata(ds, is_volume=frames > 1, frames=frames))


def _slice_position(ds: Dataset) -> float | None:
    position, orientation = ds.get("ImagePositionPatient"), ds.get("ImageOrientationPatient")
    if position is None or orientation is None or len(orientation) != 6:
        return None
    row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    return float(np.dot(np.asarray(position, float), np.cross(row, col)))


def sort_series(datasets: Sequence[Dataset]) -> tuple[list[int], float | None, str]:
    """Order of slices and slice spacing: by ImagePositionPatient projected on the slice normal
    (cross product of the ImageOrientationPatient row and column), else by InstanceNumber.

    Returns ``(order, slice_spacing, source)``; source is ``"positions"`` or the tag used.
    """
    positions = [_slice_position(ds) for ds in datasets]
    if all(p is not None for p in positions) and len(set(positions)) == len(positions):
        order = sorted(range(len(datasets)), key=lambda i: positions[i])
        if len(order) > 1:
            gaps = np.diff([positions[i] for i in order])
            return order, float(np.median(gaps)), "positions"
        spacing, source = _declared_slice_spacing(datasets[0])
        return order, spacing, source
    order = sorted(range(len(datasets)), key=lambda i: int(datasets[i].get("InstanceNumber") or 0))
    spacing, source = _declared_slice_spacing(datasets[0])
    return order, spacing, source


def read_dicom_series(
    folder: str | os.PathLike[str],
    *,
    standardise: bool = False,
    window: Window = "first",
    output: str = "float",
    series_uid: str | None = None,
) -> ImageData:
    """Assemble the DICOM slices in ``folder`` (not recursive) into a ``(D, H, W)`` volume.

    Files with a DICOM suffix, no suffix or DICM magic are read; others are ignored. The
    modality LUT is applied per slice; with ``standardise`` the VOI of the first slice (or the
    given ``window``) is applied to the whole volume. Spacing is ``(slice, row, col)`` mm; the
    slice spacing comes from the positions (median gap) or, failing that, SpacingBetweenSlices /
    SliceThickness, else 1.0 (``meta["slice_spacing_source"] == "unknown"``).
    """
    folder = Path(folder)
    files = sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name.upper() != "DICOMDIR"
        and looks_like_dicom(p)
    )
    headers = [(p, read_dataset(p, stop_before_pixels=True)) for p in files]
    headers = [(p, ds) for p, ds in headers if "Rows" in ds]
    if not headers:
        raise InputFileError(folder, "no DICOM image files in this folder")
    by_series: dict[str, list[tuple[Path, Dataset]]] = {}
    for p, ds in headers:
        by_series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append((p, ds))
    if series_uid is not None:
        if series_uid not in by_series:
            raise InputFileError(folder, "no slice of the requested series_uid in this folder")
        chosen = by_series[series_uid]
    elif len(by_series) > 1:
        sizes = ", ".join(str(len(v)) for v in by_series.values())
        raise InputFileError(
            folder, f"holds {len(by_series)} series ({sizes} slices); pass series_uid to pick one"
        )
    else:
        chosen = next(iter(by_series.values()))
    order, slice_spacing, source = sort_series([ds for _, ds in chosen])
    slices, datasets = [], []
    for i in order:
        p = chosen[i][0]
        ds = read_dataset(p)
        values = decode_pixels(ds, p)
        if is_color(ds) or values.ndim != 2:
            raise InputFileError(p, "series slices must be single-frame grayscale images")
        if slices and values.shape != slices[0].shape:
            raise InputFileError(
                p, f"slice shape {values.shape} differs from {slices[0].shape} in the series"
            )
        slices.append(modality_values(values, ds))
        datasets.append(ds)
    volume = np.stack(slices)
    first = datasets[0]
    if standardise:
        x = voi_to_unit(volume, first, window)
        if first.get("PhotometricInterpretation") == "MONOCHROME1":
            x = 1.0 - x
        volume = _to_output(x, output)
    row_col = pixel_spacing(first) or (1.0, 1.0)
    spacing = (abs(slice_spacing) if slice_spacing else 1.0, *row_col)
    meta = _metadata(
        first, is_volume=True, slices=len(slices), slice_spacing_source=source,
        pixel_spacing_known=pixel_spacing(first) is not None,
    )
    return ImageData(volume, spacing, meta)

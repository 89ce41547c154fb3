"""PHI-free DICOM metadata: a whitelist of technical tags, parsed age/sex and a salted patient key.

Nothing here ever returns PatientName, PatientID, birth dates, accession numbers, UIDs,
institution or any free-text description; the patient is represented only by
``patient_key(patient_id, salt)``, a truncated salted SHA-256.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

KEY_LENGTH = 16

# (DICOM keyword, output column) for technical, non-identifying tags.
# Coded strings and numbers only: free-text descriptions can carry names, so they are left out.
SCALAR_TAGS: tuple[tuple[str, str], ...] = (
    ("Modality", "modality"),
    ("Manufacturer", "manufacturer"),
    ("ManufacturerModelName", "model"),
    ("BodyPartExamined", "body_part"),
    ("ViewPosition", "view_position"),
    ("ImageLaterality", "laterality"),
    ("PhotometricInterpretation", "photometric"),
    ("Rows", "rows"),
    ("Columns", "columns"),
    ("NumberOfFrames", "frames"),
    ("SamplesPerPixel", "samples_per_pixel"),
    ("BitsAllocated", "bits_allocated"),
    ("BitsStored", "bits_stored"),
    ("PixelRepresentation", "pixel_representation"),
    ("SliceThickness", "slice_thickness"),
    ("SpacingBetweenSlices", "spacing_between_slices"),
    ("KVP", "kvp"),
    ("RescaleSlope", "rescale_slope"),
    ("RescaleIntercept", "rescale_intercept"),
)
PAIR_TAGS: tuple[tuple[str, str, str], ...] = (
    ("PixelSpacing", "pixel_spacing_row", "pixel_spacing_col"),
    ("ImagerPixelSpacing", "imager_spacing_row", "imager_spacing_col"),
)
FIRST_VALUE_TAGS: tuple[tuple[str, str], ...] = (
    ("WindowCenter", "window_center"),
    ("WindowWidth", "window_width"),
)

_AGE = re.compile(r"^\s*(\d{1,3})\s*([DWMY]?)\s*$", re.IGNORECASE)
_AGE_UNIT_YEARS = {"Y": 1.0, "M": 1.0 / 12.0, "W": 7.0 / 365.25, "D": 1.0 / 365.25}


def patient_key(patient_id: str, salt: str) -> str:
    """Pseudonymous key for a patient: first 16 hex digits of sha256(salt + NUL + id)."""
    digest = hashlib.sha256(f"{salt}\0{patient_id}".encode()).hexdigest()
    return digest[:KEY_LENGTH]


def parse_age(value: object) -> float | None:
    """Years from a DICOM AS string: ``061Y`` → 61.0, ``006M`` → 0.5, ``003W``, ``010D``.

    A bare number is read as years. Empty or malformed values give ``None``.
    """
    if value is None:
        return None
    match = _AGE.match(str(value))
    if not match:
        return None
    number, unit = int(match.group(1)), (match.group(2) or "Y").upper()
    return number * _AGE_UNIT_YEARS[unit]


def parse_sex(value: object) -> str | None:
    """``M``, ``F`` or ``O`` from a DICOM PatientSex value; anything else gives ``None``."""
    text = str(value or "").strip().upper()[:1]
    return text if text in {"M", "F", "O"} else None


def _plain(value: Any) -> Any:
    """A DICOM value as a plain int/float/str (CSV and JSON friendly)."""
    if value is None or value == "":
        return None
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)


def _first(value: Any) -> Any:
    if isinstance(value, MultiValue | list | tuple):
        return value[0] if len(value) else None
    return value


def dicom_metadata(ds: Dataset, salt: str | None = None) -> dict[str, Any]:
    """Whitelisted technical metadata of ``ds`` as flat scalars, plus ``age_years`` and ``sex``.

    With a ``salt``, ``patient_key`` is added (``None`` when the file has no PatientID).
    """
    out: dict[str, Any] = {}
    for keyword, column in SCALAR_TAGS:
        out[column] = _plain(ds.get(keyword))
    for keyword, row_column, col_column in PAIR_TAGS:
        value = ds.get(keyword)
        pair = list(value) if value is not None and not isinstance(value, str) else []
        out[row_column] = float(pair[0]) if len(pair) == 2 else None
        out[col_column] = float(pair[1]) if len(pair) == 2 else None
    for keyword, column in FIRST_VALUE_TAGS:
        first = _first(ds.get(keyword))
        out[column] = float(first) if first not in (None, "") else None
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    out["transfer_syntax"] = syntax.name if syntax else None
    out["age_years"] = parse_age(ds.get("PatientAge"))
    out["sex"] = parse_sex(ds.get("PatientSex"))
    if salt is not None:
        pid = str(ds.get("PatientID") or "").strip()
        out["patient_key"] = patient_key(pid, salt) if pid else None
    return out

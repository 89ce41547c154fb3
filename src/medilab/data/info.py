"""What a dataset holds: samples per split and label, image shapes, value range, patients.

Works on a MedMNIST ``.npz``, a folder with a metadata CSV (or the CSV itself), a folder of
``images/`` + mask folder(s), or a folder of DICOM files. No patient identifiers are reported,
only counts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medilab.errors import InputFileError

SPLIT_COLUMNS = ("split", "repo_split", "fold")


@dataclass
class DatasetInfo:
    """Summary of a dataset (see :func:`dataset_info`)."""

    path: str
    kind: str
    n_samples: int
    splits: dict[str, int] = field(default_factory=dict)
    labels: dict[str, dict[str, int]] = field(default_factory=dict)  # split → label → count
    shapes: dict[str, int] = field(default_factory=dict)  # "HxW" → count
    dtypes: list[str] = field(default_factory=list)
    value_range: tuple[float, float] | None = None
    n_patients: int | None = None
    leaking_patients: int | None = None
    columns: list[str] = field(default_factory=list)
    images_read: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def rows(self) -> list[tuple[str, str]]:
        """(field, value) rows for printing."""
        out = [("path", self.path), ("kind", self.kind), ("samples", str(self.n_samples))]
        for split, n in self.splits.items():
            out.append((f"split {split}", str(n)))
        for split, counts in self.labels.items():
            text = ", ".join(f"{label}: {n}" for label, n in counts.items())
            out.append((f"labels ({split})", text))
        shapes = ", ".join(f"{s} ×{n}" for s, n in self.shapes.items())
        out.append(("shapes", shapes or "-"))
        out.append(("dtypes", ", ".join(self.dtypes) or "-"))
        if self.value_range is not None:
            out.append(("value range", f"{self.value_range[0]:g} .. {self.value_range[1]:g}"))
        if self.images_read and self.images_read < self.n_samples:
            out.append(("images read", f"{self.images_read} of {self.n_samples} (a sample)"))
        if self.n_patients is not None:
            out.append(("patients", str(self.n_patients)))
        if self.leaking_patients is not None:
            out.append(("patients in >1 split", str(self.leaking_patients)))
        if self.columns:
            out.append(("columns", ", ".join(self.columns)))
        return out


def dataset_info(path: str | Path, *, max_images: int = 1000) -> DatasetInfo:
    """Describe the dataset at ``path``; reads at most ``max_images`` images for shapes/values."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "no such file or folder")
    if path.is_file() and path.suffix.lower() == ".npz":
        return _npz_info(path)
    if path.is_file() and path.suffix.lower() == ".csv":
        return _table_info(path, max_images)
    if path.is_dir():
        from medilab.data.sources.image_folder import METADATA_NAMES

        if any((path / name).is_file() for name in METADATA_NAMES):
            return _table_info(path, max_images)
        if (path / "images").is_dir():
            return _mask_folder_info(path, max_images)
        return _dicom_info(path, max_images)
    raise InputFileError(path, "expected a MedMNIST .npz, a CSV, or a folder")


def _counts(values) -> dict[str, int]:
    counter = Counter(str(v) for v in values)
    return dict(sorted(counter.items()))


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


def _npz_info(path: Path) -> DatasetInfo:
    from medilab.data.sources.medmnist import load_medmnist

    splits = load_medmnist(path)
    info = DatasetInfo(str(path), "medmnist npz", sum(len(s.labels) for s in splits.values()))
    lows, highs = [], []
    for name, part in splits.items():
        info.splits[name] = len(part.labels)
        labels = part.labels if part.labels.ndim == 1 else [tuple(r) for r in part.labels]
        info.labels[name] = _counts(labels)
        key = _shape_text(part.images.shape[1:])
        info.shapes[key] = info.shapes.get(key, 0) + len(part.images)
        if str(part.images.dtype) not in info.dtypes:
            info.dtypes.append(str(part.images.dtype))
        if part.images.size:
            lows.append(float(part.images.min()))
            highs.append(float(part.images.max()))
    info.value_range = (min(lows), max(highs)) if lows else None
    info.images_read = info.n_samples
    return info


def _scan_images(info: DatasetInfo, refs: list[str], max_images: int) -> None:
    from medilab.data.sources.loader import read_array

    shapes: Counter[str] = Counter()
    low, high = np.inf, -np.inf
    for ref in refs[:max_images]:
        array = np.asarray(read_array(ref))
        shapes[_shape_text(array.shape)] += 1
        if str(array.dtype) not in info.dtypes:
            info.dtypes.append(str(array.dtype))
        if array.size:
            low, high = min(low, float(array.min())), max(high, float(array.max()))
    info.shapes = dict(shapes.most_common())
    info.images_read = min(len(refs), max_images)
    info.value_range = (low, high) if np.isfinite(low) else None


def _table_info(path: Path, max_images: int) -> DatasetInfo:
    from medilab.data.sources.image_folder import image_folder_manifest
    from medilab.data.splits import check_leakage

    table = image_folder_manifest(path, label_column=None, patient_column=None)
    info = DatasetInfo(str(path), "image folder + CSV", len(table), columns=list(table.columns))
    split_column = next((c for c in SPLIT_COLUMNS if c in table.columns), None)
    if split_column:
        info.splits = _counts(table[split_column])
    if "label" in table.columns:
        groups = table.groupby(split_column) if split_column else [("all", table)]
        info.labels = {str(name): _counts(part["label"]) for name, part in groups}
    if "patient_id" in table.columns:
        info.n_patients = int(table["patient_id"].nunique())
        if split_column:
            info.leaking_patients = len(check_leakage(table, split_column=split_column))
    _scan_images(info, table["image"].tolist(), max_images)
    return info


def _mask_folder_info(path: Path, max_images: int) -> DatasetInfo:
    from medilab.data.sources.masks import IMAGE_SUFFIXES

    images = sorted(p for p in (path / "images").iterdir()
                    if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    others = sorted(p.name for p in path.iterdir() if p.is_dir() and p.name != "images")
    info = DatasetInfo(str(path), "image folder + masks", len(images),
                       columns=["images", *others])
    _scan_images(info, [str(p) for p in images], max_images)
    return info


def _dicom_info(path: Path, max_images: int) -> DatasetInfo:
    import pydicom
    from pydicom.errors import InvalidDicomError

    headers = []
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        try:
            headers.append((file, pydicom.dcmread(file, stop_before_pixels=True)))
        except (InvalidDicomError, OSError):
            continue
    if not headers:
        raise InputFileError(path, "no metadata CSV, images/ folder or DICOM files found")
    info = DatasetInfo(str(path), "DICOM folder", len(headers))
    info.labels = {"modality": _counts(ds.get("Modality", "?") for _, ds in headers)}
    info.splits = {"series": len({ds.get("SeriesInstanceUID") for _, ds in headers})}
    patients = {ds.get("PatientID") for _, ds in headers if ds.get("PatientID") is not None}
    info.n_patients = len(patients)
    _scan_images(info, [str(f) for f, _ in headers], max_images)
    return info


def describe_table(table: pd.DataFrame) -> dict[str, Any]:
    """Counts of a manifest DataFrame already in memory (no image reading)."""
    out: dict[str, Any] = {"n_samples": len(table)}
    for column in ("split", "label"):
        if column in table.columns:
            out[column] = _counts(table[column])
    if "patient_id" in table.columns:
        out["n_patients"] = int(table["patient_id"].nunique())
    return out

"""What a dataset holds: samples per split and label, image shapes, value range, patients.

Recognised inputs:

- a MedMNIST ``.npz``;
- a pixel CSV (``label,pixel0..pixelN`` or ``pixel0..pixelN``; Kaggle digits);
- a metadata CSV with an ``image`` column, or a folder holding one (``metadata.csv``…);
- a box-table folder: ``boxes.csv`` (``image,label,x1,y1,x2,y2``) and optionally ``images.csv``
  listing every image (e.g. TBX11K);
- a folder of ``images/`` + mask folder(s);
- a folder of NRRD / NIfTI volumes and label maps;
- a folder of DICOM files (unreadable and non-image files are counted, not hidden);
- a single image or volume file (DICOM, NRRD, NIfTI, PNG, TIFF, npy).

No patient identifiers are reported, only counts. Column lists are shortened to a few names.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medilab.errors import InputFileError, MedilabError
from medilab.io.messages import short_list
from medilab.io.reader import is_image_file, is_volume_file, volume_stem
from medilab.io.tables import read_csv_table

SPLIT_COLUMNS = ("split", "repo_split", "fold")
LABEL_MAP_WORDS = ("label", "labels", "seg", "segmentation", "mask", "masks")


@dataclass
class DatasetInfo:
    """Summary of a dataset (see :func:`dataset_info`).

    ``details`` holds kind-specific counts (boxes, label maps, unreadable files…) as text.
    """

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
    details: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def rows(self) -> list[tuple[str, str]]:
        """(field, value) rows for printing."""
        out = [("path", self.path), ("kind", self.kind), ("samples", str(self.n_samples))]
        out += list(self.details.items())
        for split, n in self.splits.items():
            out.append((f"split {split}", str(n)))
        for split, counts in self.labels.items():
            text = short_list((f"{label}: {n}" for label, n in counts.items()), limit=12)
            out.append((f"labels ({split})", text))
        shapes = short_list((f"{s} ×{n}" for s, n in self.shapes.items()), limit=6)
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
            out.append(("columns", short_list(self.columns)))
        return out


def dataset_info(path: str | Path, *, max_images: int = 1000) -> DatasetInfo:
    """Describe the dataset at ``path``; reads at most ``max_images`` images for shapes/values."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "no such file or folder")
    if path.is_dir():
        return _folder_info(path, max_images)
    name = path.name.lower()
    if name.endswith(".npz"):
        return _npz_info(path)
    if name.endswith(".csv"):
        columns = [str(c) for c in read_csv_table(path, nrows=0).columns]
        if _is_pixel_table(columns):
            return _pixel_csv_info(path, columns)
        return _table_info(path, max_images)
    return _file_info(path)


def _folder_info(path: Path, max_images: int) -> DatasetInfo:
    from medilab.data.formats.image_folder import METADATA_NAMES

    if any((path / name).is_file() for name in METADATA_NAMES):
        return _table_info(path, max_images)
    if (path / "boxes.csv").is_file():
        return _boxes_info(path, max_images)
    if (path / "images").is_dir():
        return _mask_folder_info(path, max_images)
    volumes = sorted(p for p in path.iterdir() if p.is_file() and is_volume_file(p))
    if volumes:
        return _volume_folder_info(path, volumes, max_images)
    return _dicom_info(path, max_images)


def _counts(values) -> dict[str, int]:
    counter = Counter(str(v) for v in values)
    return dict(sorted(counter.items()))


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


def _is_pixel_table(columns: list[str]) -> bool:
    """``label,pixel0..`` or ``pixel0..``: every column but ``label`` is named ``pixel<i>``."""
    pixels = [c for c in columns if c != "label"]
    return bool(pixels) and all(c.startswith("pixel") and c[5:].isdigit() for c in pixels)


def _add_dtype(info: DatasetInfo, dtype: object) -> None:
    if str(dtype) not in info.dtypes:
        info.dtypes.append(str(dtype))


def _npz_info(path: Path) -> DatasetInfo:
    from medilab.data.formats.medmnist import load_medmnist

    splits = load_medmnist(path)
    info = DatasetInfo(str(path), "medmnist npz", sum(len(s.labels) for s in splits.values()))
    lows, highs = [], []
    for name, part in splits.items():
        info.splits[name] = len(part.labels)
        labels = part.labels if part.labels.ndim == 1 else [tuple(r) for r in part.labels]
        info.labels[name] = _counts(labels)
        key = _shape_text(part.images.shape[1:])
        info.shapes[key] = info.shapes.get(key, 0) + len(part.images)
        _add_dtype(info, part.images.dtype)
        if part.images.size:
            lows.append(float(part.images.min()))
            highs.append(float(part.images.max()))
    info.value_range = (min(lows), max(highs)) if lows else None
    info.images_read = info.n_samples
    return info


def _pixel_csv_info(path: Path, columns: list[str]) -> DatasetInfo:
    """A Kaggle-style pixel table, read (and checked) as training would read it."""
    from medilab.data.formats.pixel_tables import read_pixel_csv

    labelled = "label" in columns
    arrays = read_pixel_csv(path, labelled=labelled)
    n, side = len(arrays.images), arrays.images.shape[-1]
    kind = "pixel CSV (label,pixel0..)" if labelled else "pixel CSV (pixels only, no labels)"
    info = DatasetInfo(str(path), kind, n)
    info.details["pixel columns"] = f"pixel0 … pixel{side * side - 1} ({side}x{side} images)"
    if arrays.labels is not None:
        info.labels = {"all": {str(k): int(v) for k, v in
                               sorted(Counter(arrays.labels.tolist()).items())}}
    info.shapes = {_shape_text((side, side)): n}
    if n:
        info.value_range = (float(arrays.images.min()) * 255.0,
                            float(arrays.images.max()) * 255.0)
    info.images_read = n
    return info


def _scan_images(info: DatasetInfo, refs: list[str], max_images: int) -> None:
    """Shapes, dtypes, spacings and value range of up to ``max_images`` images; unreadable
    ones are counted in ``info.details`` instead of stopping the scan."""
    from medilab.data.formats.pixels import read_array
    from medilab.io.reader import read_image

    shapes: Counter[str] = Counter()
    spacings: Counter[str] = Counter()
    low, high = np.inf, -np.inf
    failed: list[str] = []
    for ref in refs[:max_images]:
        try:
            if "::" in str(ref):
                array = np.asarray(read_array(ref))
            else:
                data = read_image(ref)
                array = np.asarray(data.array)
                if data.spacing:
                    spacings[" x ".join(f"{s:.3g}" for s in data.spacing)] += 1
        except MedilabError as exc:
            failed.append(str(exc))
            continue
        shapes[_shape_text(array.shape)] += 1
        _add_dtype(info, array.dtype)
        if array.size:
            low, high = min(low, float(array.min())), max(high, float(array.max()))
    info.shapes = dict(shapes.most_common())
    info.images_read = min(len(refs), max_images) - len(failed)
    info.value_range = (low, high) if np.isfinite(low) else None
    if spacings:
        info.details["spacing (mm)"] = short_list(
            (f"{s} ×{n}" for s, n in spacings.most_common()), limit=4
        )
    if failed:
        info.details["unreadable images"] = f"{len(failed)} (first: {failed[0]})"


def _table_info(path: Path, max_images: int) -> DatasetInfo:
    from medilab.data.formats.image_folder import find_metadata, image_folder_manifest
    from medilab.data.splits import check_leakage

    csv = find_metadata(path)
    columns = [str(c) for c in read_csv_table(csv, nrows=0).columns]
    if _is_pixel_table(columns):
        return _pixel_csv_info(csv, columns)
    if "image" not in columns:
        raise InputFileError(
            csv, f"no 'image' column (has {short_list(columns)}); data info reads metadata CSVs "
            "with an image column, pixel CSVs (label,pixel0..) and box tables (boxes.csv)"
        )
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


def _boxes_info(path: Path, max_images: int) -> DatasetInfo:
    """``boxes.csv`` (+ ``images.csv`` listing every image): images, boxes and box classes."""
    from medilab.data.formats.boxes import boxes_csv_manifest

    images_csv = path / "images.csv"
    manifest = boxes_csv_manifest(
        path / "boxes.csv", images_csv=images_csv if images_csv.is_file() else None,
        check_files=False,
    )
    n_boxes = [len(b) for b in manifest["boxes"]]
    kind = "box table (images.csv + boxes.csv)" if images_csv.is_file() else "box table (boxes.csv)"
    info = DatasetInfo(str(path), kind, len(manifest), columns=list(manifest.columns))
    info.details["boxes"] = str(sum(n_boxes))
    info.details["images with boxes"] = str(sum(n > 0 for n in n_boxes))
    info.details["images without boxes"] = str(sum(n == 0 for n in n_boxes))
    if not images_csv.is_file():
        info.details["note"] = "no images.csv: images without boxes are not listed"
    info.labels = {"box classes": _counts(label for row in manifest["box_labels"]
                                          for label in row)}
    _scan_images(info, manifest["image"].tolist(), max_images)
    return info


def _mask_folder_info(path: Path, max_images: int) -> DatasetInfo:
    images = sorted(p for p in (path / "images").iterdir() if p.is_file() and is_image_file(p))
    others = sorted(p.name for p in path.iterdir() if p.is_dir() and p.name != "images")
    info = DatasetInfo(str(path), "image folder + masks", len(images),
                       columns=["images", *others])
    _scan_images(info, [str(p) for p in images], max_images)
    return info


def _is_label_map(path: Path) -> bool:
    words = volume_stem(path).lower().replace("-", "_").replace(".", "_").split("_")
    return any(word in LABEL_MAP_WORDS for word in words)


def _case_name(path: Path) -> str:
    words = volume_stem(path).replace("-", "_").split("_")
    kept = [w for w in words if w.lower() not in (*LABEL_MAP_WORDS, "image", "img", "volume")]
    return "_".join(kept) or volume_stem(path)


def _volume_folder_info(path: Path, files: list[Path], max_images: int) -> DatasetInfo:
    """NRRD / NIfTI volumes; files named ``*label*``/``*seg*``/``*mask*`` are label maps."""
    from medilab.io.reader import read_image

    label_maps = [p for p in files if _is_label_map(p)]
    volumes = [p for p in files if not _is_label_map(p)]
    info = DatasetInfo(str(path), "volume folder (NRRD / NIfTI)", len(volumes))
    info.details["label maps"] = str(len(label_maps))
    cases_with_labels = {_case_name(p) for p in label_maps}
    paired = sum(_case_name(p) in cases_with_labels for p in volumes)
    info.details["volumes with a label map"] = f"{paired} of {len(volumes)}"
    _scan_images(info, [str(p) for p in volumes], max_images)
    voxels: Counter[str] = Counter()
    for p in label_maps[:max_images]:
        try:
            values, counts = np.unique(read_image(p).array, return_counts=True)
        except MedilabError as exc:
            info.details["unreadable label maps"] = str(exc)
            continue
        for value, count in zip(values.tolist(), counts.tolist(), strict=True):
            voxels[f"{value:g}"] += int(count)
    if voxels:
        info.labels = {"label map voxels": dict(sorted(voxels.items(), key=lambda kv:
                                                       float(kv[0])))}
    return info


def _file_info(path: Path) -> DatasetInfo:
    """One image or volume file (DICOM, NRRD, NIfTI, PNG/TIFF, npy)."""
    from medilab.io.reader import read_image, reader_for

    reader = reader_for(path)
    data = read_image(path)
    array = np.asarray(data.array)
    fmt = str(data.meta.get("format") or path.suffix.lstrip(".") or "dicom")
    kind = "DICOM file" if fmt == "dicom" else f"{'volume' if data.is_volume else 'image'} file"
    if fmt != "dicom":
        kind += f" ({fmt})"
    info = DatasetInfo(str(path), kind, 1)
    if reader.__name__ == "read_dicom":
        for key in ("modality", "photometric", "transfer_syntax", "frames", "body_part",
                    "window_center", "window_width"):
            value = data.meta.get(key)
            if value not in (None, ""):
                info.details[key.replace("_", " ")] = str(value)
    if data.spacing:
        info.details["spacing (mm)"] = " x ".join(f"{s:.3g}" for s in data.spacing)
    info.shapes = {_shape_text(array.shape): 1}
    _add_dtype(info, array.dtype)
    if array.size:
        info.value_range = (float(array.min()), float(array.max()))
        if np.issubdtype(array.dtype, np.integer) and _is_label_map(path):
            values, counts = np.unique(array, return_counts=True)
            info.labels = {"label map voxels": {str(v): int(c) for v, c in
                                                zip(values.tolist(), counts.tolist(),
                                                    strict=True)}}
    info.images_read = 1
    return info


def _dicom_info(path: Path, max_images: int) -> DatasetInfo:
    from medilab.io.convert import find_dicom_files
    from medilab.io.dicom import read_dataset

    candidates, ignored = find_dicom_files(path)
    headers, unreadable, not_images = [], [], 0
    for file in candidates:
        try:
            ds = read_dataset(file, stop_before_pixels=True)
        except MedilabError as exc:
            unreadable.append(str(exc))
            continue
        if "Rows" not in ds:
            not_images += 1
            continue
        headers.append((file, ds))
    if not headers:
        raise InputFileError(
            path, "no metadata CSV, boxes.csv, images/ folder, NRRD/NIfTI volumes or DICOM "
            f"images found ({len(unreadable)} unreadable DICOM file(s), {not_images} without image "
            f"rows, {ignored} other file(s) ignored)"
        )
    info = DatasetInfo(str(path), "DICOM folder", len(headers))
    info.details["unreadable DICOM files"] = (
        f"{len(unreadable)} (skipped; first: {unreadable[0]})" if unreadable else "0"
    )
    info.details["DICOM files without image rows"] = f"{not_images} (skipped)"
    info.details["other files ignored"] = str(ignored)
    info.details["series"] = str(len({ds.get("SeriesInstanceUID") for _, ds in headers}))
    info.labels = {"modality": _counts(ds.get("Modality", "?") for _, ds in headers)}
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

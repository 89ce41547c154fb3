"""An image folder with a metadata CSV (one row per image), e.g. ``nih1000/``:
``metadata.csv`` with ``image, patient_id, age, sex, ..., label`` and the files in ``images/``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from medilab.data.formats.manifest import NanPolicy, validate_manifest
from medilab.errors import InputFileError

METADATA_NAMES = ("metadata.csv", "manifest.csv", "labels.csv")


def find_metadata(path: str | Path) -> Path:
    """The metadata CSV of a folder (``metadata.csv``, ``manifest.csv``...) or ``path`` itself."""
    path = Path(path)
    if path.is_dir():
        for name in METADATA_NAMES:
            if (path / name).is_file():
                return path / name
        raise InputFileError(path, f"no metadata CSV ({', '.join(METADATA_NAMES)}) in the folder")
    if not path.is_file():
        raise InputFileError(path, "file not found")
    return path


def image_folder_manifest(
    path: str | Path,
    *,
    images_dir: str | Path | None = None,
    image_column: str = "image",
    id_column: str | None = None,
    label_column: str | None = "label",
    patient_column: str | None = "patient_id",
    covariates: Sequence[str] = (),
    nan_policy: NanPolicy = "error",
    num_classes: int | None = None,
    check_files: bool = True,
) -> pd.DataFrame:
    """A manifest from a folder holding a metadata CSV, or from the CSV path.

    Image paths in ``image_column`` are resolved against ``images_dir`` (default: the CSV's
    folder, or its ``images/`` subfolder when the files are there). Columns are renamed to the
    standard ``image``, ``label``, ``patient_id`` and ``sample_id`` (default: the file stem);
    every other column is kept as a covariate.
    """
    csv = find_metadata(path)
    try:
        table = pd.read_csv(csv, dtype={patient_column: str} if patient_column else None)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputFileError(csv, f"not a readable CSV ({str(exc).splitlines()[0]})") from None
    if image_column not in table.columns:
        raise InputFileError(csv, f"missing column {image_column!r}; has {list(table.columns)}")
    renames = {image_column: "image"}
    for column, standard in ((label_column, "label"), (patient_column, "patient_id"),
                             (id_column, "sample_id")):
        if column:
            if column not in table.columns:
                raise InputFileError(csv, f"missing column {column!r}; has {list(table.columns)}")
            renames[column] = standard
    table = table.rename(columns=renames)
    base = Path(images_dir) if images_dir is not None else images_base(csv, table["image"])
    table["image"] = [
        str(v) if Path(str(v)).is_absolute() else str(base / str(v)) for v in table["image"]
    ]
    return validate_manifest(
        table, source=csv, required=("image",), num_classes=num_classes,
        covariates=covariates, nan_policy=nan_policy, check_files=check_files,
    )


def images_base(csv: Path, images: pd.Series) -> Path:
    """Where a table's relative image names live: beside the CSV, or in its ``images/``."""
    first = str(images.iloc[0]) if len(images) else ""
    for base in (csv.parent, csv.parent / "images"):
        if (base / first).exists():
            return base
    return csv.parent

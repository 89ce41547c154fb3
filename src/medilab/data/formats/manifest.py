"""The manifest: one pandas DataFrame, one row per sample, for every task.

Standard columns (only ``image`` is always required):

``sample_id``  unique id of the sample (derived from the image file stem when absent)
``image``      path of the image / volume / DICOM series folder, or an npz reference
               ``file.npz::split::index`` (see :mod:`medilab.data.formats.pixels`)
``label``      class index (classification)
``patient_id`` pseudonymous patient id, used to group splits
``mask``       path of a segmentation mask
``boxes``      list of ``[x1, y1, x2, y2]`` boxes in pixels; ``box_labels`` their class names/ids
``split``      a split name when the source has one
Any other column (age, sex, ...) is a covariate.

Validation errors are one line naming the file, the 1-based data row (and sample id) and the column.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from medilab.errors import InputFileError, MedilabError

STANDARD_COLUMNS = (
    "sample_id",
    "image",
    "label",
    "patient_id",
    "mask",
    "boxes",
    "box_labels",
    "split",
)
PATH_COLUMNS = ("image", "mask")
LIST_COLUMNS = ("boxes", "box_labels")
NanPolicy = Literal["error", "drop", "impute"]


def is_reference(value: object) -> bool:
    """True for an in-file reference such as ``data.npz::train::3`` (not a plain path)."""
    return isinstance(value, str) and "::" in value


def row_label(df: pd.DataFrame, position: int) -> str:
    """``row N (id X)``: the 1-based data row and, when present, the sample id."""
    text = f"row {position + 1}"
    if "sample_id" in df.columns:
        text += f" (id {df['sample_id'].iloc[position]})"
    return text


def _fail(source: object, df: pd.DataFrame, position: int, column: str, problem: str) -> None:
    raise InputFileError(source, f"{row_label(df, position)}, column {column!r}: {problem}")


def resolve_paths(
    df: pd.DataFrame, root: str | Path | None, columns: Iterable[str] = PATH_COLUMNS
) -> pd.DataFrame:
    """Make relative paths in ``columns`` absolute against ``root`` (references too)."""
    if root is None:
        return df
    root = Path(root)
    df = df.copy()
    for column in columns:
        if column not in df.columns:
            continue
        df[column] = [
            _resolve_one(v, root) if isinstance(v, str) and v else v for v in df[column]
        ]
    return df


def _resolve_one(value: str, root: Path) -> str:
    path, sep, rest = value.partition("::")
    full = Path(path) if Path(path).is_absolute() else root / path
    return str(full) + sep + rest


def validate_manifest(
    df: pd.DataFrame,
    *,
    source: object = "manifest",
    required: Sequence[str] = ("image",),
    num_classes: int | None = None,
    covariates: Sequence[str] = (),
    nan_policy: NanPolicy = "error",
    check_files: bool = True,
    check_masks: bool = False,
    reader: Callable[[str], np.ndarray] | None = None,
    check_boxes: bool = True,
) -> pd.DataFrame:
    """Check a manifest and return a cleaned copy (``sample_id`` added, NaN policy applied).

    ``source`` names the file in error messages. ``num_classes`` bounds ``label`` to
    ``0..num_classes-1``. ``covariates`` are checked for NaN with ``nan_policy``: "error",
    "drop" (drop the rows) or "impute" (fill with the column median / most frequent value and
    add a ``<col>_missing`` 0/1 column). ``check_masks`` reads every image and mask (with
    ``reader``) and requires equal height and width. ``check_boxes`` False leaves boxes
    without area for ``data verify`` to list.
    """
    if not isinstance(df, pd.DataFrame):
        raise MedilabError(f"{source}: a manifest must be a pandas DataFrame")
    missing = [c for c in (*required, *covariates) if c not in df.columns]
    if missing:
        raise InputFileError(
            source, f"missing column(s) {', '.join(map(repr, missing))}; has {list(df.columns)}"
        )
    df = df.reset_index(drop=True).copy()
    if "sample_id" not in df.columns:
        if "image" not in df.columns:
            raise InputFileError(source, "needs a 'sample_id' or an 'image' column")
        df.insert(0, "sample_id", [_default_id(v, i) for i, v in enumerate(df["image"])])
    df["sample_id"] = df["sample_id"].astype(str)
    _check_unique_ids(df, source)
    for column in required:
        _check_not_empty(df, source, column)
    if check_files:
        for column in PATH_COLUMNS:
            if column in df.columns:
                _check_files(df, source, column)
    if num_classes is not None and "label" in df.columns:
        _check_labels(df, source, num_classes)
    if "boxes" in df.columns and check_boxes:
        _check_boxes(df, source)
    df = apply_nan_policy(df, covariates, nan_policy, source=source)
    if check_masks and "mask" in df.columns:
        check_mask_shapes(df, reader=reader, source=source)
    return df


def _default_id(value: object, position: int) -> str:
    if isinstance(value, str) and value:
        if is_reference(value):
            return "_".join(value.split("::")[1:])
        name = Path(value).name
        for suffix in (".nii.gz", ".tar.gz"):
            if name.endswith(suffix):
                return name[: -len(suffix)]
        return Path(name).stem
    return str(position)


def _check_unique_ids(df: pd.DataFrame, source: object) -> None:
    duplicated = df["sample_id"].duplicated()
    if duplicated.any():
        position = int(np.flatnonzero(duplicated.to_numpy())[0])
        value = df["sample_id"].iloc[position]
        first = int(np.flatnonzero((df["sample_id"] == value).to_numpy())[0])
        problem = f"duplicate id {value!r} (first at row {first + 1})"
        _fail(source, df, position, "sample_id", problem)


def _check_not_empty(df: pd.DataFrame, source: object, column: str) -> None:
    empty = df[column].isna().to_numpy()
    if empty.any():
        _fail(source, df, int(np.flatnonzero(empty)[0]), column, "value is empty")


def _check_files(df: pd.DataFrame, source: object, column: str) -> None:
    for position, value in enumerate(df[column]):
        if not isinstance(value, str) or not value:
            if column == "image":
                _fail(source, df, position, column, "value is empty")
            continue
        path = Path(value.partition("::")[0])
        if not path.exists():
            _fail(source, df, position, column, f"file not found: {path}")


def _check_labels(df: pd.DataFrame, source: object, num_classes: int) -> None:
    for position, value in enumerate(df["label"]):
        try:
            number = float(value)
        except (TypeError, ValueError):
            _fail(source, df, position, "label", f"{value!r} is not a class index")
        if np.isnan(number):
            _fail(source, df, position, "label", "label is missing")
        if number != int(number) or not 0 <= number < num_classes:
            _fail(
                source, df, position, "label",
                f"label {value!r} is out of range 0..{num_classes - 1}",
            )


def _check_boxes(df: pd.DataFrame, source: object) -> None:
    for position, boxes in enumerate(df["boxes"]):
        for box in boxes if isinstance(boxes, list | tuple) else []:
            if len(box) != 4 or not (box[2] > box[0] and box[3] > box[1]):
                _fail(source, df, position, "boxes", f"box {list(box)} is not x1<x2, y1<y2")


def apply_nan_policy(
    df: pd.DataFrame, columns: Sequence[str], policy: NanPolicy, *, source: object = "manifest"
) -> pd.DataFrame:
    """Apply the NaN ``policy`` ("error", "drop", "impute") to covariate ``columns``."""
    if policy not in ("error", "drop", "impute"):
        raise MedilabError(f"nan policy {policy!r}: expected 'error', 'drop' or 'impute'")
    df = df.copy()
    for column in columns:
        missing = df[column].isna().to_numpy()
        if not missing.any():
            if policy == "impute":
                df[f"{column}_missing"] = 0
            continue
        if policy == "error":
            _fail(source, df, int(np.flatnonzero(missing)[0]), column, "value is missing (NaN)")
        elif policy == "drop":
            df = df.loc[~missing].reset_index(drop=True)
        else:
            present = df.loc[~missing, column]
            if pd.api.types.is_numeric_dtype(df[column]):
                fill = float(present.median()) if len(present) else 0.0
            else:
                fill = present.mode().iloc[0] if len(present) else "unknown"
            df[f"{column}_missing"] = missing.astype(int)
            df[column] = df[column].where(~missing, fill)
    return df


def check_mask_shapes(
    df: pd.DataFrame,
    *,
    reader: Callable[[str], np.ndarray] | None = None,
    source: object = "manifest",
    mask_column: str = "mask",
) -> None:
    """Raise when a mask's height/width differs from its image's."""
    if reader is None:
        from medilab.data.formats.pixels import read_array

        reader = read_array
    for position, (image, mask) in enumerate(zip(df["image"], df[mask_column], strict=True)):
        if not isinstance(mask, str) or not mask:
            continue
        image_shape = reader(image).shape[:2]
        mask_shape = reader(mask).shape[:2]
        if image_shape != mask_shape:
            _fail(
                source, df, position, mask_column,
                f"mask size {mask_shape[1]}x{mask_shape[0]} differs from image size "
                f"{image_shape[1]}x{image_shape[0]} (width x height)",
            )


def load_manifest(path: str | Path, root: str | Path | None = None, **checks) -> pd.DataFrame:
    """Read a manifest CSV, resolve relative paths against ``root`` (default: the CSV's
    folder), decode list columns (``boxes``) and validate (``checks`` → validate_manifest)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "manifest file not found")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputFileError(path, f"not a readable CSV ({str(exc).splitlines()[0]})") from None
    for column in ("sample_id", "patient_id"):
        if column in df.columns:
            df[column] = df[column].map(lambda v: v if pd.isna(v) else str(v))
    for column in LIST_COLUMNS:
        if column in df.columns:
            df[column] = [_decode_list(v, path, i, column) for i, v in enumerate(df[column])]
    df = resolve_paths(df, path.parent if root is None else root)
    return validate_manifest(df, source=path, **checks)


def _decode_list(value: object, path: Path, position: int, column: str) -> list:
    if isinstance(value, list):
        return value
    if value is None or (isinstance(value, float) and np.isnan(value)) or value == "":
        return []
    try:
        decoded = json.loads(str(value))
    except json.JSONDecodeError:
        raise InputFileError(
            path, f"row {position + 1}, column {column!r}: not a JSON list: {value!r}"
        ) from None
    if not isinstance(decoded, list):
        raise InputFileError(path, f"row {position + 1}, column {column!r}: not a JSON list")
    return decoded


def save_manifest(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a manifest CSV atomically (list columns as JSON)."""
    from medilab.io.atomic import write_csv

    out = df.copy()
    for column in LIST_COLUMNS:
        if column in out.columns:
            out[column] = [json.dumps(list(v)) if isinstance(v, list | tuple) else v
                           for v in out[column]]
    return write_csv(out, path)

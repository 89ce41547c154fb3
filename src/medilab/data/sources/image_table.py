"""The ``image_table`` source: a CSV naming one image per row, its label, patient and clinical
covariates (e.g. NIH ChestX-ray ``metadata.csv`` + ``images/``). Images (PNG/JPEG/TIFF/DICOM)
are read once into memory, prepared by ``data.prep``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import pandas as pd
import torch
from pydantic import Field

from medilab.config import DataCommon, ExperimentConfig
from medilab.data.cache import ArrayCache, cached, data_cache
from medilab.data.covariates import CovariateEncoder
from medilab.data.datamodules.classification import (
    ArrayClassificationDataModule,
    classification_datamodule,
)
from medilab.data.formats.arrays import ImageArrays
from medilab.data.formats.image_folder import images_base
from medilab.data.formats.pixels import input_image_files, read_array
from medilab.data.sample_table import SampleTable
from medilab.data.sources.base import DataSource, register_source
from medilab.data.sources.new_inputs import NewInputs, write_predictions
from medilab.data.splits import training_splits
from medilab.data.transforms.prep import ImagePrep, PrepConfig
from medilab.errors import ConfigError, InputFileError, MedilabError
from medilab.io.messages import one_line, short_list
from medilab.io.tables import read_csv_table


class ImageTableData(DataCommon):
    """A folder + CSV: ``root/table`` names each image (looked up under ``image_dir``, relative
    to the CSV's folder; default: beside it, or its ``images/`` folder)."""

    source: Literal["image_table"] = "image_table"
    root: Path
    table: str = "metadata.csv"
    image_column: str = "image"
    image_dir: str | None = None
    label_column: str = "label"
    group: str | None = "patient_id"  # patient column: grouped split, patient bootstrap
    covariates: list[str] = Field(default_factory=list)  # e.g. [age, sex]; [] = image only
    classes: list[str] | None = None  # class order; default: the sorted labels found
    prep: PrepConfig = Field(default_factory=PrepConfig)


def split_covariates(table: pd.DataFrame, names: list[str]) -> tuple[list[str], list[str]]:
    """(numeric, categorical) covariate names, by whether every present value is a number."""
    numeric, categorical = [], []
    for name in names:
        present = table[name].dropna()
        converted = pd.to_numeric(present, errors="coerce")
        (numeric if len(present) and converted.notna().all() else categorical).append(name)
    return numeric, categorical


def read_image_table(
    data: ImageTableData, path: Path, *, labelled: bool, keep: list[str] | None = None
) -> pd.DataFrame:
    """The CSV with ``sample_id``, ``image`` (resolved path), ``patient_id``, ``label`` (when
    ``labelled``), the covariate columns and the ``keep`` columns it has (subgroup audits);
    missing columns are one-line errors."""
    table = read_csv_table(path, dtype={data.group: str} if data.group else None)
    needed = [data.image_column, *data.covariates]
    if labelled:
        needed.append(data.label_column)
        if data.group:
            needed.append(data.group)
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise InputFileError(path, f"missing column {missing[0]!r} (has "
                             f"{short_list(table.columns)})")
    base = _image_base(data, path, table[data.image_column])
    out = pd.DataFrame({
        "sample_id": [Path(str(v)).stem for v in table[data.image_column]],
        "image_name": table[data.image_column].astype(str),
        "image": [str(v) if Path(str(v)).is_absolute() else str(base / str(v))
                  for v in table[data.image_column]],
    })
    if out["sample_id"].duplicated().any():
        out["sample_id"] = [f"{i}_{s}" for i, s in enumerate(out["sample_id"])]
    if data.group and data.group in table.columns:
        out["patient_id"] = table[data.group].astype(str).to_numpy()
    if labelled:
        out["label_text"] = table[data.label_column].astype(str).to_numpy()
    for name in [*data.covariates, *(keep or [])]:
        if name in table.columns and name not in out.columns:
            out[name] = table[name].to_numpy()
    return out


def _image_base(data: ImageTableData, csv: Path, images: pd.Series) -> Path:
    if data.image_dir is not None:
        return csv.parent / data.image_dir
    return images_base(csv, images)


def read_images(paths: list[str], prep: ImagePrep, *, strict: bool = True,
                cache: ArrayCache | None = None) -> tuple[np.ndarray | None, list[str | None]]:
    """Prepared images (N, C, H, W) and, per path, None or why it could not be read
    (``strict``: the first failure is raised); served from ``cache`` when given."""
    arrays, errors = [], []
    shape = None
    params = {"step": "image_table.prep", **prep.config.model_dump(mode="json")}
    for path in paths:
        try:
            image = cached(cache, path, params, lambda path=path: prep(read_array(path)))
            if shape is not None and image.shape != shape:
                raise MedilabError(f"size {image.shape[1:]} differs from the first image's "
                                   f"{shape[1:]} (set data.prep.size to resize)")
            shape = image.shape
            arrays.append(image)
            errors.append(None)
        except MedilabError as exc:
            if strict:
                raise InputFileError(path, str(exc).removeprefix(f"{path}: ")) from None
            errors.append(str(exc))
        except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad input file
            if strict:
                raise InputFileError(path, f"cannot read image ({one_line(exc)})") from None
            errors.append(f"cannot read image ({one_line(exc)})")
    return (np.stack(arrays) if arrays else None), errors


def class_indices(labels: pd.Series, classes: list[str], path: Path) -> np.ndarray:
    """Label texts → class indices; a label outside ``classes`` is an error naming the row."""
    lookup = {c: i for i, c in enumerate(classes)}
    unknown = ~labels.isin(list(lookup))
    if unknown.any():
        row = int(np.flatnonzero(unknown.to_numpy())[0])
        raise InputFileError(path, f"row {row + 1}: label {labels.iloc[row]!r} is not one of "
                             f"the classes {short_list(classes)}")
    return labels.map(lookup).to_numpy(dtype=np.int64)


@register_source
class ImageTableSource(DataSource):
    name = "image_table"
    tasks = ("classification",)
    Config = ImageTableData

    def build_datamodule(
        self, config: ExperimentConfig, splits: pd.DataFrame | None
    ) -> ArrayClassificationDataModule:
        data = config.data
        assert isinstance(data, ImageTableData)
        csv = data.root / data.table
        table = read_image_table(data, csv, labelled=True, keep=config.evaluation.subgroups)
        classes = data.classes or sorted(table["label_text"].unique(), key=_natural)
        table["label"] = class_indices(table["label_text"], classes, csv)
        images, _ = read_images(list(table["image"]), ImagePrep(data.prep),
                                cache=data_cache(data))
        assert images is not None
        splits = training_splits(table, seed=config.seed, val_fraction=data.val_fraction,
                                 test_fraction=data.test_fraction, given=splits)
        numeric, categorical = split_covariates(table, data.covariates)
        return classification_datamodule(
            config, ImageArrays(images, table["label"].to_numpy(), list(table["sample_id"])),
            splits, table=table, numeric=numeric, categorical=categorical,
            class_names=_display_names(data, classes))

    def sample_table(self, config: ExperimentConfig, *, pixels: bool = True) -> SampleTable:
        data = config.data
        assert isinstance(data, ImageTableData)
        table = read_image_table(data, data.root / data.table, labelled=True,
                                 keep=config.evaluation.subgroups)  # the card's characteristics
        table = table.rename(columns={"label_text": "label"})
        split_table = table[[c for c in ("sample_id", "patient_id", "label") if c in table]]
        return SampleTable(table, split_table, classes=data.classes, covariates=data.covariates,
                           same_size=data.prep.size is None)

    def explain_inputs(
        self, config: ExperimentConfig, inputs: Path, covariate_state: dict[str, Any] | None,
        input_shape: tuple[int, ...] = (),
    ) -> list[tuple[str, torch.Tensor, np.ndarray, torch.Tensor | None]]:
        return explain_inputs(config, inputs, covariate_state)

    def predict_table(
        self, module: Any, config: ExperimentConfig, inputs: Path, out: Path,
        trainer: L.Trainer, **options: Any,
    ) -> Path:
        """``image, prediction, prob_<class>…, error`` for a CSV laid out like the training
        table (no label needed; its images under ``image_dir`` when given), an image folder,
        or one image / DICOM file. Unreadable images and covariates unlike training's (age
        ``abc``, an unseen category) are error rows; none usable is an error."""
        data = config.data
        assert isinstance(data, ImageTableData)
        if options.get("image_dir") is not None:
            data = data.model_copy(update={"image_dir": str(options["image_dir"])})
        rows = _prediction_rows(data, inputs)
        encoder = CovariateEncoder.from_dict(module.covariate_state) \
            if module.covariate_state else None
        errors = encoder.problems(rows) if encoder is not None else [None] * len(rows)
        readable = [e is None for e in errors]
        images, read_errors = read_images(list(rows.loc[readable, "image"]),
                                          ImagePrep(data.prep), strict=False)
        remaining = iter(read_errors)  # images: the read ones among the readable, in order
        errors = [next(remaining) if e is None else e for e in errors]
        usable = np.array([e is None for e in errors])
        covariates = None
        if encoder is not None and usable.any():
            covariates = encoder.transform(rows[usable].reset_index(drop=True))
        found = NewInputs(list(rows["image_name"]), images, errors)
        return write_predictions(module, trainer, found, inputs, out, data.batch_size,
                                 covariates)


def explain_inputs(
    config: ExperimentConfig, inputs: Path, covariate_state: dict[str, Any] | None
) -> list[tuple[str, torch.Tensor, np.ndarray, torch.Tensor | None]]:
    """(name, prepared image (C, H, W), original pixels for display, covariates) per input."""
    data = config.data
    assert isinstance(data, ImageTableData)
    rows = _prediction_rows(data, inputs)
    prep = ImagePrep(data.prep)
    encoder = CovariateEncoder.from_dict(covariate_state) if covariate_state else None
    for name, problem in zip(rows["image_name"], encoder.problems(rows) if encoder else [],
                             strict=False):
        if problem:
            raise InputFileError(inputs, f"{name}: {problem}")
    covariates = encoder.transform(rows) if encoder else None
    out = []
    for position, row in rows.iterrows():
        original = read_array(row["image"])
        image = torch.from_numpy(prep(original))
        covs = None if covariates is None else torch.from_numpy(covariates[position])
        out.append((str(row["image_name"]), image, original, covs))
    return out


def _prediction_rows(data: ImageTableData, inputs: Path) -> pd.DataFrame:
    if inputs.is_file() and inputs.suffix.lower() == ".csv":
        return read_image_table(data, inputs, labelled=False)
    files = input_image_files(inputs)
    if not files:
        raise InputFileError(inputs, "no image files to predict (PNG, JPEG, TIFF, DICOM or a "
                             "CSV laid out like the training table)")
    if data.covariates:
        raise InputFileError(inputs, f"the model needs covariates {short_list(data.covariates)}"
                             ": give a CSV with those columns instead of image files")
    return pd.DataFrame({"sample_id": [p.stem for p in files], "image": [str(p) for p in files],
                         "image_name": [p.name for p in files]})


def _display_names(data: ImageTableData, classes: list[str]) -> list[str]:
    """``data.class_names`` (one per class, in ``classes`` order) or the label texts."""
    if data.class_names is None:
        return classes
    if len(data.class_names) != len(classes):
        raise ConfigError(f"data.class_names: {len(data.class_names)} name(s) for the "
                          f"{len(classes)} classes {short_list(classes)}")
    return list(data.class_names)


def _natural(text: str) -> tuple:
    """Sort numbers numerically and words alphabetically."""
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, 0.0, text)

"""Lab 1 sources: Kaggle "Digit Recognizer" pixel CSVs, MNIST idx files, scikit-learn digits."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import Field

from medilab.config import DataCommon, ExperimentConfig
from medilab.data.datamodules.classification import (
    ArrayClassificationDataModule,
    classification_datamodule,
)
from medilab.data.formats.pixel_tables import (
    ImageArrays,
    load_sklearn_digits,
    read_mnist_idx,
    read_pixel_csv,
)
from medilab.data.sample_table import SampleTable, array_sample_table
from medilab.data.sources.base import DataSource, register_source
from medilab.data.splits import training_splits
from medilab.errors import InputFileError


class PixelCsvData(DataCommon):
    """Kaggle "Digit Recognizer" layout: ``label,pixel0..pixelN`` (train), pixels only (test)."""

    source: Literal["pixel_csv"] = "pixel_csv"
    train_csv: Path
    test_csv: Path | None = None
    pixel_scale: float = Field(255.0, gt=0)


class SklearnDigitsData(DataCommon):
    """scikit-learn's shipped 8×8 digits (1,797 images, 0–16 grey levels)."""

    source: Literal["sklearn_digits"] = "sklearn_digits"


class MnistIdxData(DataCommon):
    """MNIST idx files (optionally gzipped): images and labels."""

    source: Literal["mnist_idx"] = "mnist_idx"
    images: Path
    labels: Path


def array_datamodule(
    config: ExperimentConfig, arrays: ImageArrays, splits: pd.DataFrame | None
) -> ArrayClassificationDataModule:
    """Labelled arrays split by ``splits`` (checked) or anew, label-stratified and seeded."""
    assert arrays.labels is not None
    table = pd.DataFrame({"sample_id": arrays.sample_ids, "label": arrays.labels})
    splits = training_splits(table, seed=config.seed, val_fraction=config.data.val_fraction,
                             test_fraction=config.data.test_fraction, given=splits)
    return classification_datamodule(config, arrays, splits)


def check_pixel_table(path: Path) -> Path:
    """``path`` when it is a CSV file; else say what a digits run predicts from."""
    if path.is_dir() or path.suffix.lower() != ".csv":
        what = "a folder" if path.is_dir() else f"a {path.suffix or 'suffix-less'} file"
        raise InputFileError(path, f"is {what}; this run predicts from a pixel CSV laid out like "
                             "its training table (pixel0..pixelN, no label column)")
    return path


@register_source
class PixelCsvSource(DataSource):
    name = "pixel_csv"
    tasks = ("classification",)
    Config = PixelCsvData

    def read_arrays(self, config: ExperimentConfig) -> ImageArrays:
        """The labelled training pixels."""
        data = config.data
        return read_pixel_csv(data.train_csv, labelled=True, pixel_scale=data.pixel_scale)

    def build_datamodule(self, config, splits):  # noqa: ANN001, ANN201 - DataSource's
        return array_datamodule(config, self.read_arrays(config), splits)

    def sample_table(self, config: ExperimentConfig, *, pixels: bool = True
                     ) -> SampleTable | None:
        if not pixels:  # building the datamodule already checks every pixel and label
            return None
        return array_sample_table(self.read_arrays(config))

    def read_unlabelled(self, config: ExperimentConfig, path: Path) -> ImageArrays:
        """A test table (pixels only) for a Kaggle submission."""
        return read_pixel_csv(check_pixel_table(path), labelled=False,
                              pixel_scale=config.data.pixel_scale)


@register_source
class SklearnDigitsSource(PixelCsvSource):
    name = "sklearn_digits"
    Config = SklearnDigitsData

    def read_arrays(self, config: ExperimentConfig) -> ImageArrays:
        return load_sklearn_digits()

    def read_unlabelled(self, config: ExperimentConfig, path: Path) -> ImageArrays:
        return read_pixel_csv(check_pixel_table(path), labelled=False, pixel_scale=255.0)


@register_source
class MnistIdxSource(SklearnDigitsSource):
    name = "mnist_idx"
    Config = MnistIdxData

    def read_arrays(self, config: ExperimentConfig) -> ImageArrays:
        return read_mnist_idx(config.data.images, config.data.labels)

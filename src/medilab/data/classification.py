"""Build the classification datamodule from the experiment config (dispatch on data.source)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from medilab.config import (
    ExperimentConfig,
    MnistIdxData,
    PixelCsvData,
    SklearnDigitsData,
)
from medilab.data.array_datamodule import ArrayClassificationDataModule, stratified_split
from medilab.data.digits import (
    ImageArrays,
    load_sklearn_digits,
    read_mnist_idx,
    read_pixel_csv,
)
from medilab.data.transforms import build_image_augmentation
from medilab.errors import ConfigError


def load_arrays(config: ExperimentConfig) -> ImageArrays:
    """The labelled training arrays named by ``config.data``."""
    data = config.data
    if isinstance(data, PixelCsvData):
        return read_pixel_csv(data.train_csv, labelled=True, pixel_scale=data.pixel_scale)
    if isinstance(data, MnistIdxData):
        return read_mnist_idx(data.images, data.labels)
    if isinstance(data, SklearnDigitsData):
        return load_sklearn_digits()
    raise ConfigError(f"data.source {data.source!r} is not a classification source")


def read_unlabelled(config: ExperimentConfig, path: Path) -> ImageArrays:
    """New images to predict, in the training source's format (pixel CSV for digits)."""
    scale = config.data.pixel_scale if isinstance(config.data, PixelCsvData) else 255.0
    return read_pixel_csv(path, labelled=False, pixel_scale=scale)


def build_datamodule(
    config: ExperimentConfig, splits: pd.DataFrame | None
) -> ArrayClassificationDataModule:
    """Arrays + split (given, or stratified anew with the experiment seed)."""
    arrays = load_arrays(config)
    if splits is None:
        splits = stratified_split(arrays, config.data.val_fraction, config.seed)
    return ArrayClassificationDataModule(
        arrays,
        splits,
        batch_size=config.data.batch_size,
        num_workers=config.data.num_workers,
        train_transform=build_image_augmentation(config.data.augment),
        seed=config.seed,
    )

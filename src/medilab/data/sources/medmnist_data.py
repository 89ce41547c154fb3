"""The ``medmnist`` source: a MedMNIST ``.npz`` (2D or 3D) with the file's own train/val(/test)
split. Model selection and early stopping look at ``val``; a ``test`` part is scored by
``evaluate`` only."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from medilab.config import DataCommon, ExperimentConfig
from medilab.data.datamodules.classification import ArrayClassificationDataModule
from medilab.data.formats.arrays import ImageArrays
from medilab.data.formats.medmnist import load_medmnist
from medilab.data.loading import pins_memory
from medilab.data.sample_table import SampleTable, array_sample_table
from medilab.data.sources.base import DataSource, register_source
from medilab.data.splits import training_splits
from medilab.data.transforms.augment import build_image_augmentation
from medilab.errors import InputFileError


class MedMNISTData(DataCommon):
    """``path``: a MedMNIST npz (``train_*``, ``val_*``, optional ``test_*``)."""

    source: Literal["medmnist"] = "medmnist"
    path: Path
    spatial_dims: Literal["auto", 2, 3] = "auto"  # auto: 3D when images are (N, D, H, W)


def medmnist_arrays(data: MedMNISTData) -> tuple[ImageArrays, pd.DataFrame]:
    """All parts of the file as (N, C, H, W) or (N, 1, D, H, W) float32 in [0, 1], and the
    ``sample_id, split`` table of the file's own split."""
    parts = load_medmnist(data.path)
    if "train" not in parts:
        raise InputFileError(data.path, "no 'train_images' array")
    images, labels, ids, split = [], [], [], []
    for name, part in parts.items():
        if part.labels.ndim != 1:
            raise InputFileError(data.path, f"'{name}_labels' has shape {part.labels.shape}: "
                                 "multi-label files are not supported for classification")
        images.append(part.images)
        labels.append(part.labels.astype(np.int64))
        ids += [f"{name}_{i}" for i in range(len(part.labels))]
        split += [name] * len(part.labels)
    stacked = np.concatenate(images)
    volumetric = data.spatial_dims == 3 or (data.spatial_dims == "auto" and stacked.ndim == 4
                                            and stacked.shape[-1] > 4)
    pixels = stacked.astype(np.float32) / (255.0 if stacked.dtype == np.uint8 else 1.0)
    # grey 2D images and volumes get a channel axis; (N, H, W, C) colour images move theirs
    pixels = pixels[:, None] if volumetric or pixels.ndim == 3 else np.moveaxis(pixels, -1, 1)
    table = pd.DataFrame({"sample_id": ids, "split": split})
    return ImageArrays(np.ascontiguousarray(pixels), np.concatenate(labels), ids), table


@register_source
class MedMNISTSource(DataSource):
    name = "medmnist"
    tasks = ("classification",)
    Config = MedMNISTData

    def build_datamodule(
        self, config: ExperimentConfig, splits: pd.DataFrame | None
    ) -> ArrayClassificationDataModule:
        data = config.data
        assert isinstance(data, MedMNISTData)
        arrays, own = medmnist_arrays(data)
        table = own.assign(label=arrays.labels)
        splits = training_splits(table.drop(columns="split"), seed=config.seed,
                                 given=own if splits is None else splits)
        return ArrayClassificationDataModule(
            arrays, splits, batch_size=data.batch_size, num_workers=data.num_workers,
            pin_memory=pins_memory(config),
            train_transform=build_image_augmentation(data.augment), seed=config.seed,
            balanced=config.data.balanced_sampler,
        )

    def sample_table(self, config: ExperimentConfig, *, pixels: bool = True
                     ) -> SampleTable | None:
        if not pixels:  # building the datamodule already checks the file
            return None
        data = config.data
        assert isinstance(data, MedMNISTData)
        arrays, own = medmnist_arrays(data)
        return array_sample_table(arrays, given=own)

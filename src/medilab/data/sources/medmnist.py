"""The ``medmnist`` source: a MedMNIST ``.npz`` (2D or 3D) with the file's own train/val(/test)
split. Model selection and early stopping look at ``val``; a ``test`` part is scored by
``evaluate`` only."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import pandas as pd
import torch

from medilab.config import DataCommon, ExperimentConfig
from medilab.data.datamodules.classification import (
    ArrayClassificationDataModule,
    classification_datamodule,
)
from medilab.data.formats.arrays import ImageArrays
from medilab.data.formats.medmnist import load_medmnist
from medilab.data.formats.medmnist_labels import medmnist_class_names
from medilab.data.formats.pixels import input_image_files, read_array
from medilab.data.sample_table import SampleTable, array_sample_table
from medilab.data.sources.base import DataSource, register_source
from medilab.data.sources.new_inputs import NewInputs, write_predictions
from medilab.data.splits import training_splits
from medilab.data.transforms.prep import to_float
from medilab.errors import InputFileError, MedilabError
from medilab.io.images import npz_array, open_npz
from medilab.io.messages import one_line


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
    pixels = model_pixels(stacked, volumetric)
    table = pd.DataFrame({"sample_id": ids, "split": split})
    return ImageArrays(np.ascontiguousarray(pixels), np.concatenate(labels), ids), table


def model_pixels(images: np.ndarray, volumetric: bool) -> np.ndarray:
    """(N, H, W[, C]) or (N, D, H, W) stored pixels → float32 model input: uint8 scaled to
    0..1, a channel axis added (grey images, volumes) or moved first (colour images)."""
    pixels = to_float(images)
    return pixels[:, None] if volumetric or pixels.ndim == 3 else np.moveaxis(pixels, -1, 1)


def new_inputs(inputs: Path, input_shape: tuple[int, ...]) -> NewInputs:
    """New images for a run trained on MedMNIST, prepared as in training: every
    ``<part>_images`` array (or ``images``) of an npz (rows ``<part>_<index>``), or image /
    volume files (one file, or a folder of PNG/JPEG/TIFF/DICOM). MedMNIST images are not
    resized: one of another size or channel count is an error row naming both sizes."""
    volumetric = len(input_shape) == 4
    names, images, errors = [], [], []
    if inputs.is_file() and inputs.suffix.lower() == ".npz":
        with open_npz(inputs) as data:
            keys = [k for k in data.files if k.endswith("_images") or k == "images"]
            if not keys:
                raise InputFileError(inputs, "no '<part>_images' or 'images' array to predict")
            for key in keys:
                part = npz_array(data, key, inputs)
                names += [f"{key.removesuffix('images').rstrip('_') or 'images'}_{i}"
                          for i in range(len(part))]
                images += list(model_pixels(part, volumetric))
        errors = [_shape_problem(image.shape, input_shape) for image in images]
    else:
        files = input_image_files(inputs)
        if not files:
            raise InputFileError(inputs, "no image files to predict (a MedMNIST-style .npz, "
                                 "PNG, JPEG, TIFF or DICOM files, or a volume file)")
        for path in files:
            names.append(path.name)
            try:
                array = read_array(path)
                if np.issubdtype(array.dtype, np.integer) and array.dtype != np.uint8:
                    raise MedilabError(f"{array.dtype} pixels; the model was trained on "
                                       "8-bit MedMNIST pixels")
                image = model_pixels(array[None], volumetric)[0]
                if not volumetric and input_shape[0] != image.shape[0]:
                    image = _match_channels(image, input_shape[0])
                images.append(image)
                errors.append(_shape_problem(image.shape, input_shape))
            except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad input file
                images.append(None)
                errors.append(f"cannot read image ({one_line(exc)})")
    usable = [image for image, error in zip(images, errors, strict=True) if error is None]
    return NewInputs(names, np.stack(usable) if usable else None, errors)


def _match_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """A grey image repeated to 3 channels, or a colour one averaged to 1."""
    if channels == 3 and image.shape[0] == 1:
        return np.repeat(image, 3, axis=0)
    if channels == 1 and image.shape[0] in (3, 4):
        return image[:3].mean(axis=0, keepdims=True)
    return image


def _shape_problem(shape: tuple[int, ...], expected: tuple[int, ...]) -> str | None:
    if tuple(shape) == tuple(expected):
        return None
    return (f"shape {'x'.join(map(str, shape[1:]))} with {shape[0]} channel(s); the model was "
            f"trained on {'x'.join(map(str, expected[1:]))} with {expected[0]} (MedMNIST "
            "images are not resized)")


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
                                 test_fraction=data.test_fraction,  # when the file has no test
                                 given=own if splits is None else splits)
        found = int(arrays.labels.max()) + 1 if len(arrays.labels) else 0
        return classification_datamodule(
            config, arrays, splits,
            class_names=data.class_names or medmnist_class_names(data.path, found))

    def sample_table(self, config: ExperimentConfig, *, pixels: bool = True
                     ) -> SampleTable | None:
        if not pixels:  # building the datamodule already checks the file
            return None
        data = config.data
        assert isinstance(data, MedMNISTData)
        arrays, own = medmnist_arrays(data)
        return array_sample_table(arrays, given=own)

    def predict_table(
        self, module: Any, config: ExperimentConfig, inputs: Path, out: Path,
        trainer: L.Trainer, **options: Any,
    ) -> Path:
        """``image, prediction, prob_<class>…, error`` for an npz or image files
        (:func:`new_inputs`)."""
        found = new_inputs(inputs, tuple(module.input_shape))
        return write_predictions(module, trainer, found, inputs, out, config.data.batch_size)

    def explain_inputs(
        self, config: ExperimentConfig, inputs: Path, covariate_state: dict[str, Any] | None,
        input_shape: tuple[int, ...] = (),
    ) -> list[tuple[str, torch.Tensor, np.ndarray, None]]:
        """2D runs: (name, image, pixels to display, None) per input; an unusable one is an
        error naming it."""
        shape = tuple(input_shape)
        if len(shape) == 4:
            raise MedilabError("explain: CAM overlays are for 2D images; this run's model "
                               "takes 3D volumes (predict works on them)")
        found = new_inputs(inputs, shape)
        bad = next(((n, e) for n, e in zip(found.names, found.errors, strict=True) if e), None)
        if bad is not None:
            raise InputFileError(inputs, f"{bad[0]}: {bad[1]}")
        assert found.images is not None
        return [(name, torch.from_numpy(image), np.moveaxis(image, 0, -1).squeeze(-1)
                 if image.shape[0] == 1 else np.moveaxis(image, 0, -1), None)
                for name, image in zip(found.names, found.images, strict=True)]


"""The ``slice_table`` source (2.5D): each sample is one slice of a volume with its neighbours
as channels (k = 3: previous, current, next; edges replicated), labelled per slice.

Volumes (NIfTI, NRRD, DICOM series folders) and their labels come from either
- ``table``: a CSV ``volume, slice, label[, patient_id]`` (one row per labelled slice), or
- label maps: ``<name><image_suffix>`` beside ``<name><label_suffix>`` under ``root``
  (default ``*_image.nrrd`` / ``*_label.nrrd``); a slice is positive when it holds foreground.
The split and the bootstrap are grouped by the table's ``patient_id`` column when it has one
(else by volume), so no patient (volume) is in two splits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from medilab.config import DataCommon, ExperimentConfig
from medilab.data.cache import ArrayCache, cached, data_cache
from medilab.data.datamodules.classification import (
    ArrayClassificationDataModule,
    classification_datamodule,
)
from medilab.data.formats.arrays import ImageArrays
from medilab.data.sample_table import SampleTable
from medilab.data.sources.base import DataSource, register_source
from medilab.data.splits import training_splits
from medilab.data.transforms.prep import stack_slices
from medilab.errors import InputFileError
from medilab.io.intensity import percentile_normalise, resize
from medilab.io.reader import read_image
from medilab.io.tables import read_csv_table


class SliceTableData(DataCommon):
    """2.5D slices of volumes under ``root``."""

    source: Literal["slice_table"] = "slice_table"
    root: Path
    table: str | None = None  # CSV volume, slice, label[, patient_id]; None: label maps
    image_suffix: str = "_image.nrrd"
    label_suffix: str = "_label.nrrd"
    slices: int = Field(3, ge=1)  # neighbours stacked as channels (odd)
    axis: int = Field(0, ge=0, le=2)  # slice axis of the (D, H, W) volume
    size: list[int] | None = None  # [H, W] in-plane resize (aspect kept)
    val_fraction: float = Field(0.34, gt=0.0, lt=1.0)


def _volume(path: Path) -> np.ndarray:
    array = np.asarray(read_image(path).array, dtype=np.float32)
    if array.ndim != 3:
        raise InputFileError(path, f"expected a volume (D, H, W), got shape {array.shape}")
    return array


def _labelled_volumes(
    data: SliceTableData, cache: ArrayCache | None = None
) -> list[tuple[str, Path, dict[int, int], str]]:
    """(volume id, path, {slice: label}, patient) for every volume; the patient is the table's
    ``patient_id`` when it has that column, else the volume itself."""
    if data.table is not None:
        csv = data.root / data.table
        table = read_csv_table(csv)
        for column in ("volume", "slice", "label"):
            if column not in table.columns:
                raise InputFileError(csv, f"missing column {column!r}")
        out = []
        for volume, rows in table.groupby("volume", sort=True):
            labels = dict(zip(rows["slice"].astype(int), rows["label"].astype(int), strict=True))
            name = Path(str(volume)).name.split(".")[0]
            patient = name
            if "patient_id" in rows.columns:
                patients = set(rows["patient_id"].astype(str))
                if len(patients) != 1:
                    raise InputFileError(csv, f"volume {volume!r} has rows of {len(patients)} "
                                         "patients in column 'patient_id' (one per volume)")
                patient = patients.pop()
            out.append((name, data.root / str(volume), labels, patient))
        return out
    images = sorted(data.root.glob(f"*{data.image_suffix}"))
    if not images:
        raise InputFileError(data.root, f"no volumes named *{data.image_suffix}")
    out = []
    for image in images:
        name = image.name[: -len(data.image_suffix)]
        label_path = image.with_name(name + data.label_suffix)
        if not label_path.is_file():
            raise InputFileError(image, f"no label map {label_path.name} beside it")
        positive = cached(cache, label_path, {"step": "slice_table.positive", "axis": data.axis},
                          lambda path=label_path: _positive_slices(path, data.axis))
        out.append((name, image, {i: int(v) for i, v in enumerate(positive)}, name))
    return out


def _positive_slices(label_path: Path, axis: int) -> np.ndarray:
    """Per slice along ``axis`` of a label map: 1 when it holds foreground."""
    label_map = np.moveaxis(_volume(label_path), axis, 0)
    return np.array([label_map[i].any() for i in range(label_map.shape[0])], np.int64)


def _volume_stacks(data: SliceTableData, path: Path, indices: list[int]) -> np.ndarray:
    """The stacked slices (n, k, H, W) of one volume at ``indices`` (resized to ``data.size``)."""
    volume = percentile_normalise(_volume(path), 0.5, 99.5)
    depth = np.moveaxis(volume, data.axis, 0).shape[0]
    stacks = []
    for index in indices:
        if not 0 <= index < depth:
            raise InputFileError(path, f"slice {index} outside 0..{depth - 1}")
        stack = stack_slices(volume, index, data.slices, data.axis)
        if data.size is not None:
            stack = np.stack([resize(s, tuple(data.size))[0] for s in stack])
        stacks.append(stack.astype(np.float32))
    return np.stack(stacks)


def slice_arrays(
    data: SliceTableData, cache: ArrayCache | None = None
) -> tuple[ImageArrays, pd.DataFrame]:
    """Stacked slices (N, k, H, W), labels and the ``sample_id, patient_id, label`` table;
    each volume is decoded and sliced once, then served from ``cache`` when given."""
    images, labels, ids, volumes = [], [], [], []
    shape = None
    for name, path, slice_labels, patient in _labelled_volumes(data, cache):
        indices = sorted(slice_labels)
        if not indices:
            continue
        params = {"step": "slice_table.stacks", "slices": data.slices, "axis": data.axis,
                  "size": data.size, "indices": indices}
        stacks = cached(cache, path, params,
                        lambda path=path, indices=indices: _volume_stacks(data, path, indices))
        for index, stack in zip(indices, stacks, strict=True):
            label = slice_labels[index]
            if shape is not None and stack.shape != shape:
                raise InputFileError(path, f"slices of {stack.shape[1:]} differ from the first "
                                     f"volume's {shape[1:]} (set data.size to resize)")
            shape = stack.shape
            images.append(stack.astype(np.float32))
            labels.append(label)
            ids.append(f"{name}_{index:04d}")
            volumes.append(patient)
    table = pd.DataFrame({"sample_id": ids, "patient_id": volumes, "label": labels})
    arrays = ImageArrays(np.stack(images), np.asarray(labels, dtype=np.int64), ids)
    return arrays, table


@register_source
class SliceTableSource(DataSource):
    name = "slice_table"
    tasks = ("classification",)
    Config = SliceTableData

    def build_datamodule(
        self, config: ExperimentConfig, splits: pd.DataFrame | None
    ) -> ArrayClassificationDataModule:
        data = config.data
        assert isinstance(data, SliceTableData)
        arrays, table = slice_arrays(data, data_cache(data))
        splits = training_splits(table, seed=config.seed, val_fraction=data.val_fraction,
                                 test_fraction=data.test_fraction, given=splits)
        return classification_datamodule(config, arrays, splits, table=table)

    def sample_table(self, config: ExperimentConfig, *, pixels: bool = True) -> SampleTable:
        data = config.data
        assert isinstance(data, SliceTableData)
        volumes = _labelled_volumes(data)
        table = pd.DataFrame({"sample_id": [name for name, *_ in volumes],
                              "patient_id": [patient for *_, patient in volumes],
                              "image": [str(path) for _, path, *_ in volumes]})
        if data.table is None:
            table["mask"] = [str(path.with_name(name + data.label_suffix))
                             for name, path, *_ in volumes]
        slices = [(f"{name}_{index:04d}", patient, label)
                  for name, _, labels, patient in volumes
                  for index, label in sorted(labels.items())]
        split_table = pd.DataFrame(slices, columns=["sample_id", "patient_id", "label"])
        return SampleTable(table, split_table)

"""torch Datasets over a manifest: 2D images, 2.5D slice stacks, 3D volumes, masks and boxes.

Classification / segmentation samples are dicts (collated by torch's default collate)::

    {"image": float32 (C, H, W) or (1, D, H, W), "label": int64 (), "covariates": float32 (F,),
     "mask": int64 (H, W) or (D, H, W), "sample_id": str}

(keys present when the manifest has them). Detection samples follow torchvision:
``(image, {"boxes": float32 (N, 4) x1y1x2y2, "labels": int64 (N,), "image_id": int})`` with
labels 1..C (0 is background); batch them with :func:`detection_collate`.

Images are read with ``reader`` (default :func:`medilab.data.sources.loader.read_array`, which
handles files, DICOM series folders and MedMNIST npz references); pass a
:class:`medilab.data.cache.CachedReader` to decode each file once. uint8 pixels are scaled to
0..1, other types are kept as float32; an alpha channel is dropped and ``channels=1|3`` makes
grey / RGB. ``transform`` is applied to the image tensor;
``joint_transform`` to the whole sample dict (use it for augmentations that must move the image
and mask together, e.g. MONAI dictionary transforms).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from medilab.data.covariates import CovariateEncoder
from medilab.errors import MedilabError

Reader = Callable[[str], np.ndarray]


def _default_reader() -> Reader:
    from medilab.data.sources.loader import read_array

    return read_array


def to_float(array: np.ndarray) -> np.ndarray:
    """float32 pixels; uint8 is scaled to 0..1, booleans to 0/1."""
    array = np.asarray(array)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    return array.astype(np.float32)


def channels_first(array: np.ndarray, channels: int | None = None) -> np.ndarray:
    """(H, W) → (1, H, W); (H, W, C) with C ≤ 4 → (C, H, W); an alpha channel is dropped.

    ``channels`` 1 averages colour channels, 3 repeats a grey channel; None keeps them.
    """
    if array.ndim == 2:
        array = array[None]
    elif array.ndim == 3 and array.shape[-1] <= 4 and array.shape[0] > 4:
        array = np.moveaxis(array, -1, 0)
    elif not (array.ndim == 3 and array.shape[0] <= 4):
        raise MedilabError(f"expected a 2D image (H, W) or (H, W, C), got shape {array.shape}")
    if array.shape[0] in (2, 4):  # grey + alpha or RGBA
        array = array[: array.shape[0] - 1]
    if channels == 1 and array.shape[0] == 3:
        array = array.mean(axis=0, keepdims=True)
    elif channels == 3 and array.shape[0] == 1:
        array = np.repeat(array, 3, axis=0)
    elif channels is not None and array.shape[0] != channels:
        raise MedilabError(f"cannot make {channels} channels from shape {array.shape}")
    return array


def stack_slices(volume: np.ndarray, index: int, k: int = 3, axis: int = 0) -> np.ndarray:
    """The ``k`` slices centred on ``index`` along ``axis`` as channels (k, H, W).

    k=3 gives previous, current, next; slices beyond the edges repeat the edge slice.
    """
    if k < 1 or k % 2 == 0:
        raise MedilabError(f"2.5D: k={k} must be an odd number of slices")
    volume = np.moveaxis(np.asarray(volume), axis, 0)
    depth = volume.shape[0]
    if not 0 <= index < depth:
        raise MedilabError(f"2.5D: slice {index} outside 0..{depth - 1}")
    positions = np.clip(np.arange(index - k // 2, index + k // 2 + 1), 0, depth - 1)
    return volume[positions]


def _mask_tensor(array: np.ndarray, binary: bool) -> torch.Tensor:
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[-1] in (3, 4):  # an RGB(A) mask: use the first channel
        array = array[..., 0]
    return torch.from_numpy((array > 0) if binary else array.astype(np.int64)).long()


class ManifestDataset(Dataset):
    """2D images (and labels, covariates) of a manifest."""

    spatial_dims = 2

    def __init__(
        self,
        manifest: pd.DataFrame,
        *,
        reader: Reader | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        joint_transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        covariates: CovariateEncoder | None = None,
        label_column: str | None = "label",
        mask_columns: Sequence[str] = (),
        binary_masks: bool = True,
        channels: int | None = None,
    ) -> None:
        self.channels = channels
        self.manifest = manifest.reset_index(drop=True)
        if "image" not in self.manifest.columns:
            raise MedilabError("dataset: manifest has no 'image' column")
        self.reader = reader or _default_reader()
        self.transform = transform
        self.joint_transform = joint_transform
        self.label_column = label_column if label_column in self.manifest.columns else None
        self.mask_columns = [c for c in mask_columns if c in self.manifest.columns]
        missing = set(mask_columns) - set(self.mask_columns)
        if missing:
            raise MedilabError(f"dataset: manifest has no mask column(s) {sorted(missing)}")
        self.binary_masks = binary_masks
        self.covariates = (
            torch.from_numpy(covariates.transform(self.manifest)) if covariates else None
        )

    def __len__(self) -> int:
        return len(self.manifest)

    def _image(self, row: pd.Series, position: int) -> np.ndarray:
        return channels_first(to_float(self.reader(row["image"])), self.channels)

    def _masks(self, row: pd.Series, position: int) -> dict[str, torch.Tensor]:
        return {c: _mask_tensor(self.reader(row[c]), self.binary_masks) for c in self.mask_columns}

    def _row(self, index: int) -> tuple[pd.Series, int]:
        return self.manifest.iloc[index], index

    def __getitem__(self, index: int) -> dict[str, Any]:
        row, position = self._row(index)
        image = torch.from_numpy(np.ascontiguousarray(self._image(row, position)))
        if self.transform is not None:
            image = self.transform(image)
        sample: dict[str, Any] = {"image": image, "sample_id": str(row.get("sample_id", index))}
        if self.label_column is not None:
            sample["label"] = torch.as_tensor(row[self.label_column]).long()
        if self.covariates is not None:
            sample["covariates"] = self.covariates[position]
        sample.update(self._masks(row, position))
        if self.joint_transform is not None:
            sample = self.joint_transform(sample)
        return sample


class SegmentationDataset(ManifestDataset):
    """2D image + ``mask`` (int64, binary by default); ``extra_masks`` (e.g. DRIVE's ``fov``)
    are returned under their column names."""

    def __init__(self, manifest: pd.DataFrame, *, extra_masks: Sequence[str] = (), **kwargs):
        kwargs.setdefault("label_column", None)
        super().__init__(manifest, mask_columns=("mask", *extra_masks), **kwargs)


class VolumeDataset(ManifestDataset):
    """3D volumes (volume file, DICOM series folder or MedMNIST 3D npz reference) as
    (1, D, H, W), with labels, covariates and optional ``mask`` volumes."""

    spatial_dims = 3

    def _image(self, row: pd.Series, position: int) -> np.ndarray:
        volume = to_float(self.reader(row["image"]))
        if volume.ndim != 3:
            raise MedilabError(f"{row['image']}: expected a volume (D, H, W), got {volume.shape}")
        return volume[None]


class SliceDataset(ManifestDataset):
    """2.5D: every slice (or the centre slice) of each volume with its ``k`` neighbours as
    channels (k=3: previous, current, next; edges replicated). The label is the volume's label;
    a ``mask`` column gives the mask slice."""

    def __init__(
        self,
        manifest: pd.DataFrame,
        *,
        k: int = 3,
        axis: int = 0,
        slices: str = "all",
        **kwargs,
    ) -> None:
        super().__init__(manifest, **kwargs)
        if k < 1 or k % 2 == 0:
            raise MedilabError(f"2.5D: k={k} must be an odd number of slices")
        if slices not in ("all", "center"):
            raise MedilabError(f"2.5D: slices={slices!r}: expected 'all' or 'center'")
        self.k, self.axis = k, axis
        self._volume_key: object = None
        self._volume: np.ndarray | None = None
        self.index: list[tuple[int, int]] = []
        for position in range(len(self.manifest)):
            depth = self._read_volume(position).shape[axis]
            chosen = range(depth) if slices == "all" else [depth // 2]
            self.index += [(position, s) for s in chosen]

    def _read_volume(self, position: int) -> np.ndarray:
        if self._volume_key != position:
            self._volume = np.asarray(self.reader(self.manifest["image"].iloc[position]))
            self._volume_key = position
        return self._volume

    def __len__(self) -> int:
        return len(self.index)

    def _row(self, index: int) -> tuple[pd.Series, int]:
        position, _ = self.index[index]
        return self.manifest.iloc[position], position

    def __getitem__(self, index: int) -> dict[str, Any]:
        self._slice = self.index[index][1]
        sample = super().__getitem__(index)
        sample["slice"] = self._slice
        return sample

    def _image(self, row: pd.Series, position: int) -> np.ndarray:
        return to_float(stack_slices(self._read_volume(position), self._slice, self.k, self.axis))

    def _masks(self, row: pd.Series, position: int) -> dict[str, torch.Tensor]:
        out = {}
        for column in self.mask_columns:
            volume = np.moveaxis(np.asarray(self.reader(row[column])), self.axis, 0)
            out[column] = _mask_tensor(volume[self._slice], self.binary_masks)
        return out


class DetectionDataset(Dataset):
    """Images with boxes as torchvision detection targets.

    ``classes`` lists the box class names; box label ``classes[i]`` becomes ``i + 1``.
    Default: the sorted names found in the manifest's ``box_labels``.
    """

    def __init__(
        self,
        manifest: pd.DataFrame,
        *,
        classes: Sequence[str] | None = None,
        reader: Reader | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        channels: int | None = None,
    ) -> None:
        self.channels = channels
        self.manifest = manifest.reset_index(drop=True)
        for column in ("image", "boxes"):
            if column not in self.manifest.columns:
                raise MedilabError(f"detection dataset: manifest has no {column!r} column")
        if "box_labels" not in self.manifest.columns:
            self.manifest["box_labels"] = [["object"] * len(b) for b in self.manifest["boxes"]]
        found = sorted({str(lab) for labels in self.manifest["box_labels"] for lab in labels})
        self.classes = list(classes) if classes is not None else found
        unknown = set(found) - set(self.classes)
        if unknown:
            name = sorted(unknown)[0]
            raise MedilabError(f"detection dataset: box label {name!r} not in classes")
        self.reader = reader or _default_reader()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.manifest)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        row = self.manifest.iloc[index]
        array = channels_first(to_float(self.reader(row["image"])), self.channels)
        image = torch.from_numpy(np.ascontiguousarray(array))
        if self.transform is not None:
            image = self.transform(image)
        boxes = torch.tensor(row["boxes"], dtype=torch.float32).reshape(-1, 4)
        labels = torch.tensor([self.classes.index(str(x)) + 1 for x in row["box_labels"]],
                              dtype=torch.int64)
        return image, {"boxes": boxes, "labels": labels, "image_id": index}


def detection_collate(batch: list) -> tuple[tuple, tuple]:
    """Keep images and targets as tuples (detection models take lists of any size)."""
    images, targets = zip(*batch, strict=True)
    return images, targets


class ArrayDataset(Dataset):
    """In-memory arrays (e.g. a MedMNIST split): images (N, H, W[, C]) or (N, D, H, W) for
    ``spatial_dims=3``, labels (N,)."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray | None = None,
        *,
        spatial_dims: int = 2,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        covariates: np.ndarray | None = None,
    ) -> None:
        if labels is not None and len(labels) != len(images):
            raise MedilabError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels = images, labels
        self.spatial_dims, self.transform = spatial_dims, transform
        self.covariates = covariates

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        array = to_float(self.images[index])
        array = array[None] if self.spatial_dims == 3 else channels_first(array)
        image = torch.from_numpy(np.ascontiguousarray(array))
        if self.transform is not None:
            image = self.transform(image)
        sample: dict[str, Any] = {"image": image, "sample_id": str(index)}
        if self.labels is not None:
            sample["label"] = torch.as_tensor(np.asarray(self.labels[index])).long()
        if self.covariates is not None:
            sample["covariates"] = torch.as_tensor(self.covariates[index], dtype=torch.float32)
        return sample


DATASET_KINDS: dict[str, type[Dataset]] = {
    "2d": ManifestDataset,
    "2.5d": SliceDataset,
    "3d": VolumeDataset,
    "segmentation": SegmentationDataset,
    "detection": DetectionDataset,
}


def make_datasets(
    manifest: pd.DataFrame,
    splits: pd.DataFrame | None = None,
    *,
    kind: str = "2d",
    numeric: Sequence[str] = (),
    categorical: Sequence[str] = (),
    train_split: str = "train",
    **dataset_kwargs: Any,
) -> tuple[dict[str, Dataset], CovariateEncoder | None]:
    """One dataset per split name, and the covariate encoder fitted on the training rows.

    ``splits`` (``sample_id, split``) is joined on ``sample_id``; without it the manifest's own
    ``split`` column is used. ``kind``: "2d", "2.5d", "3d", "segmentation" or "detection";
    ``dataset_kwargs`` go to the dataset class (reader, transform, k, ...). A ``transform``
    given as a dict ``{split: transform}`` is applied per split (e.g. augmentation on train).
    """
    from medilab.data.covariates import fit_covariates
    from medilab.data.splits import apply_splits

    if kind not in DATASET_KINDS:
        raise MedilabError(f"dataset kind {kind!r}: expected one of {list(DATASET_KINDS)}")
    table = apply_splits(manifest, splits) if splits is not None else manifest
    if "split" not in table.columns:
        raise MedilabError("datasets: no splits given and the manifest has no 'split' column")
    encoder = None
    if numeric or categorical:
        encoder = fit_covariates(table, numeric, categorical, train_split=train_split)
        dataset_kwargs["covariates"] = encoder
    transforms = dataset_kwargs.pop("transform", None)
    out: dict[str, Dataset] = {}
    for name in sorted(table["split"].astype(str).unique()):
        kwargs = dict(dataset_kwargs)
        transform = transforms.get(name) if isinstance(transforms, dict) else transforms
        if transform is not None:
            kwargs["transform"] = transform
        part = table[table["split"].astype(str) == name].reset_index(drop=True)
        out[name] = DATASET_KINDS[kind](part, **kwargs)
    return out, encoder

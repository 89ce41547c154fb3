"""Segmentation data: image + mask pairs read once into memory, seeded train/val split, random
patches (augmented by :mod:`medilab.data.transforms.segmentation_augment`) for training and
whole images for validation.

Arrays are channels-first: images ``(C, H, W)`` or ``(C, D, H, W)`` float32, masks ``(H, W)`` /
``(D, H, W)`` int64 class indices, and a ``valid`` map (1 inside the field of view and the
image, 0 outside) that loss and metrics respect.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from medilab.config import AugmentConfig
from medilab.data.cache import ArrayCache, cached
from medilab.data.formats.pixels import read_array
from medilab.data.loading import loader_options, resolve_workers
from medilab.data.transforms.prep import RULES_VERSION, to_grey, to_unit_range
from medilab.errors import ConfigError, InputFileError, MedilabError

if TYPE_CHECKING:
    from medilab.data.transforms.segmentation_augment import SegmentationAugment


@runtime_checkable
class SegmentationData(Protocol):
    """What the segmentation data pipeline reads from a source's ``data:`` section: a source
    whose config provides these trains through it (no concrete source is imported here)."""

    root: Path
    channels: str
    spatial_dims: int
    normalize: str
    num_classes: int
    patch_size: list[int]
    patches_per_image: int
    augment: AugmentConfig
    batch_size: int
    num_workers: int | str

    @property
    def mask_inverted(self) -> bool:
        """Whether mask value 0 is the foreground (ISBI membranes)."""
        ...



@dataclass
class SegSample:
    """One image in memory: normalised pixels, class-index mask, valid map, display copy."""

    sample_id: str
    path: str
    image: np.ndarray  # float32 (C, *S)
    mask: np.ndarray | None  # int64 (*S)
    valid: np.ndarray  # float32 (*S): 1 where loss/metrics count
    display: np.ndarray  # uint8 (H, W) or (H, W, 3): for overlays (middle slice of volumes)


# ----------------------------------------------------------------------------- pixels
def prepare_image(
    array: np.ndarray, channels: str = "auto", spatial_dims: int = 2, normalize: str = "zscore",
    path: object = "image",
) -> np.ndarray:
    """Raw pixels → float32 ``(C, *S)``: 0..1 scaling
    (:func:`~medilab.data.transforms.prep.to_unit_range`), channel choice (rgb / green / grey
    by :func:`~medilab.data.transforms.prep.to_grey`), then per-image z-score."""
    array = np.asarray(array)
    if spatial_dims == 2:
        if array.ndim == 2:
            array = array[None]
        elif array.ndim == 3 and array.shape[-1] in (3, 4):
            array = np.moveaxis(array[..., :3], -1, 0)
        else:
            raise InputFileError(path, f"expected a 2D image (H, W[, 3]), got shape {array.shape}")
    elif array.ndim == 3:
        array = array[None]
    else:
        raise InputFileError(path, f"expected a volume (D, H, W), got shape {array.shape}")
    image = to_unit_range(array)
    if channels == "green" and image.shape[0] == 3:
        image = image[1:2]
    elif channels == "grey" and image.shape[0] == 3:
        image = to_grey(image, 0)[None]
    elif channels == "rgb" and image.shape[0] == 1:
        image = np.repeat(image, 3, axis=0)
    if normalize == "zscore":
        image = (image - image.mean()) / max(float(image.std()), 1e-6)
    return np.ascontiguousarray(image, dtype=np.float32)


def prepare_mask(
    array: np.ndarray, num_classes: int = 2, invert: bool = False, path: object = "mask"
) -> np.ndarray:
    """Raw mask → int64 class indices. Binary (``num_classes`` 2): > 0 is foreground, or == 0
    with ``invert``; otherwise the values are the classes and must lie in 0..num_classes-1."""
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        array = array[..., 0]
    if num_classes == 2:
        foreground = array == 0 if invert else array > 0
        return foreground.astype(np.int64)
    if array.min() < 0 or array.max() >= num_classes:
        raise InputFileError(
            path, f"mask values {int(array.min())}..{int(array.max())} outside 0..{num_classes - 1}"
        )
    return array.astype(np.int64)


def display_copy(array: np.ndarray, spatial_dims: int) -> np.ndarray:
    """An 8-bit copy for overlays (the middle slice of a volume)."""
    array = np.asarray(array)
    if spatial_dims == 3:
        array = array[array.shape[0] // 2]
    if array.ndim == 3:
        array = array[..., :3]
    if array.dtype == np.uint8:
        return array.copy()
    low, high = float(array.min()), float(array.max())
    scaled = (array.astype(np.float32) - low) / max(high - low, 1e-6)
    return (scaled * 255).round().astype(np.uint8)


def load_sample(
    data: SegmentationData, sample_id: str, image_path: str,
    mask_path: str | None = None, fov_path: str | None = None,
    cache: ArrayCache | None = None,
) -> SegSample:
    """Read and prepare one image with its mask and field of view (sizes must agree); each
    file is decoded once and then served from ``cache`` when given."""
    raw = functools.cache(lambda: read_array(image_path))
    image = _in_memory(cached(
        cache, image_path, {"step": "segmentation.image", "rules": RULES_VERSION,
                            "channels": data.channels,
                            "spatial_dims": data.spatial_dims, "normalize": data.normalize},
        lambda: prepare_image(raw(), data.channels, data.spatial_dims, data.normalize,
                              image_path)))
    display = _in_memory(cached(
        cache, image_path, {"step": "segmentation.display", "spatial_dims": data.spatial_dims},
        lambda: display_copy(raw(), data.spatial_dims)))
    shape = image.shape[1:]
    mask = None
    if mask_path:
        invert = data.mask_inverted
        mask = _in_memory(cached(
            cache, mask_path, {"step": "segmentation.mask", "num_classes": data.num_classes,
                               "invert": invert},
            lambda: prepare_mask(read_array(mask_path), data.num_classes, invert, mask_path)))
        _check_size(mask_path, mask.shape, image_path, shape)
    valid = np.ones(shape, np.float32)
    if fov_path:
        valid = _in_memory(cached(cache, fov_path, {"step": "segmentation.fov", "dims": len(shape)},
                                  lambda: fov_valid_map(read_array(fov_path), len(shape))))
        _check_size(fov_path, valid.shape, image_path, shape)
    return SegSample(sample_id, str(image_path), image, mask, valid, display)


def fov_valid_map(array: np.ndarray, dims: int) -> np.ndarray:
    """A field-of-view file as the valid map: 1 where it is > 0 (first channel of RGB)."""
    fov = np.asarray(array)
    if fov.ndim == dims + 1 and fov.shape[-1] in (3, 4):
        fov = fov[..., 0]
    return (fov > 0).astype(np.float32)


def _in_memory(array: np.ndarray) -> np.ndarray:
    """A writable in-memory copy of a cached (memory-mapped, read-only) array."""
    return array if array.flags.writeable else np.array(array)


def _check_size(path: object, shape: Sequence[int], image: object, image_shape: Sequence[int]):
    if tuple(shape) != tuple(image_shape):
        raise InputFileError(
            path, f"size {'x'.join(map(str, shape))} differs from its image "
            f"{Path(str(image)).name} ({'x'.join(map(str, image_shape))})"
        )


# ----------------------------------------------------------------------------- datasets
class PatchDataset(Dataset):
    """``patches_per_image`` random patches of each image per epoch (images smaller than the
    patch are zero-padded; padding is outside the valid map)."""

    def __init__(
        self, samples: Sequence[SegSample], patch_size: Sequence[int], patches_per_image: int,
        augment: SegmentationAugment | None = None,
    ) -> None:
        if any(s.mask is None for s in samples):
            raise MedilabError("training patches need masks for every image")
        self.samples = list(samples)
        self.patch_size = tuple(int(p) for p in patch_size)
        self.patches_per_image = patches_per_image
        self.augment = augment
        dims = samples[0].image.ndim - 1 if samples else len(self.patch_size)
        if len(self.patch_size) != dims:
            raise ConfigError(f"data.patch_size: {list(self.patch_size)} is not {dims}D")

    def __len__(self) -> int:
        return len(self.samples) * self.patches_per_image

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = self.samples[index % len(self.samples)]
        image, mask, valid = sample.image, sample.mask, sample.valid
        pads = [(0, max(0, p - s)) for p, s in zip(self.patch_size, mask.shape, strict=True)]
        if any(after for _, after in pads):
            image = np.pad(image, [(0, 0), *pads])
            mask, valid = np.pad(mask, pads), np.pad(valid, pads)
        starts = [int(torch.randint(0, s - p + 1, ()).item())
                  for s, p in zip(mask.shape, self.patch_size, strict=True)]
        window = tuple(slice(a, a + p) for a, p in zip(starts, self.patch_size, strict=True))
        out = (torch.from_numpy(np.ascontiguousarray(image[(slice(None), *window)])),
               torch.from_numpy(np.ascontiguousarray(mask[window])),
               torch.from_numpy(np.ascontiguousarray(valid[window])))
        if self.augment is not None:
            out = self.augment(*out)
        return {"image": out[0], "mask": out[1], "valid": out[2]}


class FullImageDataset(Dataset):
    """Whole images (batch size 1: sizes may differ) with mask and valid map."""

    def __init__(self, samples: Sequence[SegSample]) -> None:
        self.samples = list(samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = self.samples[index]
        item = {"image": torch.from_numpy(sample.image), "valid": torch.from_numpy(sample.valid),
                "index": torch.tensor(index)}
        if sample.mask is not None:
            item["mask"] = torch.from_numpy(sample.mask)
        return item


# ----------------------------------------------------------------------------- datamodule
class SegmentationDataModule(L.LightningDataModule):
    """Samples in memory, split into train (patches) and val (whole images)."""

    def __init__(self, samples: Sequence[SegSample], splits: pd.DataFrame,
                 data: SegmentationData, *, pin_memory: bool = False) -> None:
        super().__init__()
        self.data = data
        self.num_workers = resolve_workers(data.num_workers)
        self.pin_memory = pin_memory
        self.samples = {s.sample_id: s for s in samples}
        self.splits = splits.reset_index(drop=True)
        unknown = set(self.splits["sample_id"].astype(str)) - set(self.samples)
        if unknown:
            raise MedilabError(
                f"splits: sample_id {sorted(unknown)[0]!r} is not among the images in "
                f"{data.root}"
            )
        self.in_channels = int(samples[0].image.shape[0])
        self.num_classes = data.num_classes
        self.spatial_dims = data.spatial_dims

    @property
    def split_names(self) -> list[str]:
        return list(dict.fromkeys(self.splits["split"]))

    def split_samples(self, split: str) -> list[SegSample]:
        ids = self.splits.loc[self.splits["split"] == split, "sample_id"].astype(str)
        return [self.samples[i] for i in ids]

    def train_dataloader(self) -> DataLoader:
        from medilab.data.transforms.segmentation_augment import SegmentationAugment  # MONAI

        dataset = PatchDataset(
            self.split_samples("train"), self.data.patch_size, self.data.patches_per_image,
            SegmentationAugment(self.data.augment, self.spatial_dims, self.num_classes),
        )
        return DataLoader(dataset, batch_size=self.data.batch_size, shuffle=True,
                          drop_last=False, **self._loader_options(train=True))

    def val_dataloader(self) -> DataLoader:
        return DataLoader(FullImageDataset(self.split_samples("val")), batch_size=1,
                          **self._loader_options(train=False))

    def _loader_options(self, train: bool) -> dict:
        """Workers, pinned memory, persistence (training workers restart each epoch)."""
        return loader_options(self.num_workers, device_is_cuda=self.pin_memory, train=train)

"""Detection data: images with boxes from a manifest, preprocessed the same way for training,
evaluation and prediction, with augmentation that moves the boxes with the image.

A manifest has one row per image: ``image`` (path or reference), ``boxes`` (``[[x1, y1, x2, y2],
...]`` in pixels of the original image; empty for a negative image), ``box_labels`` (class names)
and optionally ``sample_id``, ``patient_id``, ``width``/``height``. Samples follow torchvision:
``(image (C, H, W) float 0..1, {"boxes", "labels" 1..C, "image_id", "resize"})`` where
``resize`` is ``[scale_x, scale_y, pad_left, pad_top]``, so predicted boxes map back to original
pixels with :func:`boxes_to_original`. Batch them with
:func:`medilab.data.datasets.detection_collate`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from medilab.config import AugmentConfig
from medilab.data.cache import ArrayCache, cached
from medilab.data.formats.pixels import read_array
from medilab.data.loading import loader_options, resolve_workers
from medilab.data.transforms.prep import RULES_VERSION, to_grey, to_unit_range
from medilab.errors import MedilabError
from medilab.io.intensity import (
    ResizeInfo,
    apply_window,
    log_transform,
    parse_window,
    resize,
    resize_info,
    simplest_color_balance,
)

_TOLERANCE = 1e-3  # pixels a box may stick out of the image (rounding in annotation tools)


# ----------------------------------------------------------------------------- pixels
@dataclass(frozen=True)
class Preprocess:
    """Per-image preprocessing, identical at training, evaluation and prediction.

    ``window`` (preset or ``"C,W"``, on the raw values) or else 0..1 scaling
    (:func:`~medilab.data.transforms.prep.to_unit_range`); then optional ``log`` transform and
    simplest ``color_balance`` (percent saturated); then ``channels`` (1 grey by
    :func:`~medilab.data.transforms.prep.to_grey`, 3 RGB); then resize to ``size`` keeping the
    aspect ratio (centred, zero padding).
    """

    size: int | tuple[int, int] = 512
    channels: int = 1
    log: bool = False
    color_balance: float | None = None
    window: str | tuple[float, float] | None = None


def prepare_pixels(
    array: np.ndarray, prep: Preprocess, name: object = "image"
) -> tuple[np.ndarray, ResizeInfo]:
    """Raw pixels → float32 ``(C, H, W)`` in 0..1 at ``prep.size``, and the resize mapping."""
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        array = array[..., :3]
    elif array.ndim != 2:
        raise MedilabError(f"{name}: expected a 2D image (H, W[, 3]), got shape {array.shape}")
    if prep.window is not None:
        center, width = parse_window(prep.window)
        image = apply_window(array, center, width)
    else:
        image = to_unit_range(array)
    if prep.log:
        image = log_transform(image)
    if prep.color_balance:
        axis = 2 if image.ndim == 3 else None
        image = simplest_color_balance(image, prep.color_balance, channel_axis=axis)
    image = _channels(np.asarray(image, np.float32), prep.channels, name)
    resized, info = resize(image, prep.size, keep_aspect=True)
    planes = resized[None] if resized.ndim == 2 else np.moveaxis(resized, -1, 0)
    return np.ascontiguousarray(planes, np.float32), info


def _channels(image: np.ndarray, channels: int, name: object) -> np.ndarray:
    if channels == 1:
        if image.ndim == 3:
            return to_grey(image, -1)
        return image
    if channels == 3:
        return image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
    raise MedilabError(f"{name}: channels must be 1 or 3, got {channels}")


def boxes_to_original(boxes: Any, resize: ResizeInfo | Sequence[float],
                      shape: tuple[int, int] | None = None) -> np.ndarray:
    """Boxes predicted on the preprocessed image, in original pixels (clipped to ``shape``,
    ``(H, W)``, when given). ``resize``: a ResizeInfo or ``[scale_x, scale_y, left, top]``."""
    b = np.asarray(boxes.detach().cpu() if torch.is_tensor(boxes) else boxes, np.float64)
    b = b.reshape(-1, 4)
    if isinstance(resize, ResizeInfo):
        sx, sy, left, top = resize.scale_x, resize.scale_y, resize.pad_left, resize.pad_top
    else:
        sx, sy, left, top = (float(v) for v in resize)
    out = (b - np.array([left, top, left, top])) / np.array([sx, sy, sx, sy])
    if shape is not None:
        out[:, 0::2] = out[:, 0::2].clip(0, shape[1])
        out[:, 1::2] = out[:, 1::2].clip(0, shape[0])
    return out


def prepare_for_prediction(
    image: str | Path | np.ndarray, prep: Preprocess
) -> tuple[torch.Tensor, ResizeInfo]:
    """One new image (path or array) as the model's input tensor and its resize mapping."""
    array = read_array(image) if isinstance(image, str | Path) else image
    pixels, info = prepare_pixels(array, prep, image if isinstance(image, str | Path) else "image")
    return torch.from_numpy(pixels), info


# ----------------------------------------------------------------------------- boxes
def parse_boxes(value: Any, name: object) -> np.ndarray:
    """A manifest ``boxes`` cell (list or JSON text) as float ``(N, 4)``."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError:
            raise MedilabError(f"{name}: column 'boxes' is not a JSON list of boxes") from None
    if value is None or (isinstance(value, float) and np.isnan(value)):
        value = []
    boxes = np.asarray(value, np.float64)
    if boxes.size == 0:
        return np.zeros((0, 4))
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise MedilabError(f"{name}: boxes must be [[x1, y1, x2, y2], ...], got shape "
                           f"{boxes.shape}")
    return boxes


def box_errors(boxes: np.ndarray, shape: tuple[int, int] | None = None) -> list[tuple[int, str]]:
    """``(box index, what is wrong)`` for every box with a missing coordinate, without area, or
    outside an image of ``shape`` (H, W) when given."""
    errors = []
    for i, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, np.float64).reshape(-1, 4)):
        where = f"box {i} [{x1:g}, {y1:g}, {x2:g}, {y2:g}]"
        if not np.isfinite([x1, y1, x2, y2]).all():
            errors.append((i, f"box {i} has a missing coordinate"))
        elif x2 <= x1 or y2 <= y1:
            errors.append((i, f"{where} needs x2 > x1 and y2 > y1"))
        elif shape is not None:
            height, width = shape
            if min(x1, y1) < -_TOLERANCE or x2 > width + _TOLERANCE or y2 > height + _TOLERANCE:
                errors.append((i, f"{where} lies outside the {width}x{height} image"))
    return errors


def check_boxes(boxes: np.ndarray, name: object, shape: tuple[int, int] | None = None) -> None:
    """One-line MedilabError naming the image for the first box :func:`box_errors` finds."""
    errors = box_errors(boxes, shape)
    if errors:
        raise MedilabError(f"{name}: {errors[0][1]}")


# ----------------------------------------------------------------------------- augmentation
def detection_augmentation(augment: AugmentConfig | None) -> v2.Compose | None:
    """Scale / translate / rotate (boxes move along), horizontal flip only when asked,
    brightness / contrast on the image; boxes pushed out of the image are dropped."""
    if augment is None:
        return None
    steps: list[v2.Transform] = []
    if augment.hflip:
        steps.append(v2.RandomHorizontalFlip())
    if augment.vflip:
        steps.append(v2.RandomVerticalFlip())
    if augment.scale or augment.translate or augment.rotate_degrees:
        steps.append(v2.RandomAffine(
            degrees=augment.rotate_degrees,
            translate=(augment.translate, augment.translate) if augment.translate else None,
            scale=(1 - augment.scale, 1 + augment.scale) if augment.scale else None,
        ))
    if augment.brightness or augment.contrast:
        steps.append(v2.ColorJitter(brightness=augment.brightness, contrast=augment.contrast))
    if not steps:
        return None
    steps += [v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes(min_size=1.0)]
    return v2.Compose(steps)


# ----------------------------------------------------------------------------- dataset
def box_classes(manifest: pd.DataFrame, class_agnostic: bool, agnostic_name: str) -> list[str]:
    """The class names (label ``i + 1`` is ``classes[i]``): sorted names found, or one merged."""
    if class_agnostic:
        return [agnostic_name]
    column = manifest["box_labels"] if "box_labels" in manifest.columns else []
    return sorted({str(label) for labels in column for label in _as_list(labels)}) or ["object"]


def _as_list(value: Any) -> list:
    if isinstance(value, str):
        return list(json.loads(value)) if value.strip() else []
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    return list(value)


class DetectionImages(Dataset):
    """Manifest rows as torchvision detection samples (see the module docstring). With a
    ``cache`` each image's original shape and prepared pixels are decoded once (the boxes are
    still checked against that shape on every read)."""

    def __init__(
        self,
        manifest: pd.DataFrame,
        classes: Sequence[str],
        prep: Preprocess,
        *,
        augment: v2.Transform | None = None,
        class_agnostic: bool = False,
        cache: ArrayCache | None = None,
    ) -> None:
        self.manifest = manifest.reset_index(drop=True)
        self.cache = cache
        self.classes, self.prep, self.augment = list(classes), prep, augment
        self.class_agnostic = class_agnostic
        self.boxes: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        index = {name: i + 1 for i, name in enumerate(self.classes)}
        for _, row in self.manifest.iterrows():
            name = row["image"]
            boxes = parse_boxes(row.get("boxes"), name)
            shape = _known_shape(row)
            check_boxes(boxes, name, shape)
            names = _as_list(row.get("box_labels")) or ["object"] * len(boxes)
            if len(names) != len(boxes):
                raise MedilabError(f"{name}: {len(boxes)} boxes but {len(names)} box_labels")
            if class_agnostic:
                labels = [1] * len(boxes)
            else:
                unknown = [n for n in map(str, names) if n not in index]
                if unknown:
                    raise MedilabError(f"{name}: box label {unknown[0]!r} is not a known class")
                labels = [index[str(n)] for n in names]
            self.boxes.append(boxes)
            self.labels.append(np.asarray(labels, np.int64))

    def __len__(self) -> int:
        return len(self.manifest)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        name = self.manifest.at[index, "image"]
        raw = functools.cache(lambda: np.asarray(read_array(name)))  # decoded at most once
        stored = cached(self.cache, name, {"step": "detection.raw_shape"},
                        lambda: np.array(raw().shape[:2], np.int64))
        shape = (int(stored[0]), int(stored[1]))
        check_boxes(self.boxes[index], name, shape)
        params = {"step": "detection.prepare_pixels", "rules": RULES_VERSION, **asdict(self.prep)}
        pixels = np.array(cached(self.cache, name, params,  # a writable in-memory copy
                                 lambda: prepare_pixels(raw(), self.prep, name)[0]), np.float32)
        info = resize_info(shape, self.prep.size, keep_aspect=True)
        boxes = info.boxes_to_output(self.boxes[index]).astype(np.float32)
        image = tv_tensors.Image(torch.from_numpy(pixels))
        sample = {
            "image": image,
            "boxes": tv_tensors.BoundingBoxes(
                torch.from_numpy(boxes), format="XYXY", canvas_size=tuple(image.shape[-2:])
            ),
            "labels": torch.from_numpy(self.labels[index]),
        }
        if self.augment is not None:
            sample = self.augment(sample)
        target = {
            "boxes": sample["boxes"].as_subclass(torch.Tensor).reshape(-1, 4).float(),
            "labels": sample["labels"].long(),
            "image_id": torch.tensor(index),
            "resize": torch.tensor(
                [info.scale_x, info.scale_y, info.pad_left, info.pad_top], dtype=torch.float64
            ),
            "orig_size": torch.tensor(info.in_shape),
        }
        return sample["image"].as_subclass(torch.Tensor).clamp(0, 1), target


def _known_shape(row: pd.Series) -> tuple[int, int] | None:
    """``(height, width)`` from the manifest's ``height``/``width`` columns, when present."""
    if {"width", "height"} <= set(row.index) and row[["width", "height"]].notna().all():
        return int(row["height"]), int(row["width"])
    return None


# ----------------------------------------------------------------------------- datamodule
class DetectionDataModule(L.LightningDataModule):
    """Train / val / test loaders over a manifest and a splits table (``sample_id, split``).

    Images without boxes are kept (negatives). ``class_agnostic`` merges every box class into
    ``agnostic_name``. Augmentation applies to the training split only.
    """

    def __init__(
        self,
        manifest: pd.DataFrame,
        splits: pd.DataFrame,
        *,
        prep: Preprocess | None = None,
        augment: AugmentConfig | None = None,
        classes: Sequence[str] | None = None,
        class_agnostic: bool = False,
        agnostic_name: str = "lesion",
        batch_size: int = 4,
        num_workers: int | Literal["auto"] = 0,
        pin_memory: bool = False,
        cache: ArrayCache | None = None,
    ) -> None:
        super().__init__()
        manifest = manifest.reset_index(drop=True).copy()
        if "image" not in manifest.columns:
            raise MedilabError("detection manifest: missing column 'image'")
        if "sample_id" not in manifest.columns:
            manifest["sample_id"] = [Path(str(p)).stem for p in manifest["image"]]
        if "boxes" not in manifest.columns:
            manifest["boxes"] = [[] for _ in range(len(manifest))]
        self.manifest = manifest
        self.splits = splits
        self.prep = prep or Preprocess()
        self.augment = augment
        self.class_agnostic = class_agnostic
        self.classes = list(classes) if classes else box_classes(
            manifest, class_agnostic, agnostic_name
        )
        self.batch_size = batch_size
        self.cache = cache
        self.num_workers = resolve_workers(num_workers)
        self.pin_memory = pin_memory
        self.datasets: dict[str, DetectionImages] = {}

    def split_manifest(self, split: str) -> pd.DataFrame:
        """The manifest rows of one split, in manifest order."""
        wanted = set(self.splits.loc[self.splits["split"] == split, "sample_id"].astype(str))
        return self.manifest[self.manifest["sample_id"].astype(str).isin(wanted)]

    def dataset(self, split: str) -> DetectionImages:
        """The dataset of ``split`` (augmented for ``train``), built once."""
        if split not in self.datasets:
            self.datasets[split] = DetectionImages(
                self.split_manifest(split), self.classes, self.prep,
                augment=detection_augmentation(self.augment) if split == "train" else None,
                class_agnostic=self.class_agnostic, cache=self.cache,
            )
        return self.datasets[split]

    def setup(self, stage: str | None = None) -> None:
        for split in sorted(set(self.splits["split"].astype(str))):
            self.dataset(split)  # validates every box up front

    def dataloader(self, split: str, shuffle: bool = False) -> DataLoader:
        """Batches of ``(images, targets)`` tuples for ``split``."""
        return DataLoader(
            self.dataset(split), batch_size=self.batch_size, shuffle=shuffle,
            collate_fn=detection_collate,
            **loader_options(self.num_workers, device_is_cuda=self.pin_memory, train=shuffle),
        )

    def train_dataloader(self) -> DataLoader:
        return self.dataloader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self.dataloader("val")

    def test_dataloader(self) -> DataLoader:
        return self.dataloader("test")

    def predict_dataloader(self) -> DataLoader:
        return self.dataloader("test")


def prediction_rows(
    image: str, output: dict[str, torch.Tensor], resize: ResizeInfo | Sequence[float],
    classes: Sequence[str], shape: tuple[int, int] | None = None,
) -> list[dict[str, Any]]:
    """One row per predicted box, ``image, label, score, x1, y1, x2, y2`` in original pixels."""
    boxes = boxes_to_original(output["boxes"], resize, shape)
    rows = []
    for box, score, label in zip(boxes, output["scores"].tolist(), output["labels"].tolist(),
                                 strict=True):
        name = classes[label - 1] if 1 <= label <= len(classes) else str(label)
        rows.append({"image": image, "label": name, "score": float(score),
                     **dict(zip(("x1", "y1", "x2", "y2"), map(float, box), strict=True))})
    return rows


def detection_collate(batch: list) -> tuple[tuple, tuple]:
    """Keep images and targets as tuples (detection models take lists of any size)."""
    images, targets = zip(*batch, strict=True)
    return images, targets

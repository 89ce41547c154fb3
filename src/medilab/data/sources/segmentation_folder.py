"""The ``segmentation_folder`` source: image + mask pairs from a folder layout or a manifest CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import Field, model_validator

from medilab.config import DataCommon, ExperimentConfig
from medilab.data.cache import data_cache
from medilab.data.datamodules.segmentation import SegmentationDataModule, load_sample
from medilab.data.formats.manifest import load_manifest
from medilab.data.formats.mask_folders import mask_folder_manifest
from medilab.data.loading import pins_memory
from medilab.data.sample_table import SampleTable
from medilab.data.sources.base import DataSource, register_source
from medilab.data.splits import training_splits
from medilab.errors import InputFileError

LAYOUTS = {  # layout → (images, masks, field-of-view) folder names
    "drive": ("images", "1st_manual", "mask"),
    "isbi": ("images", "labels", None),
    "folders": ("images", "masks", None),
}


class SegmentationFolderData(DataCommon):
    """Image + mask pairs: folders under ``root`` (``layout`` drive / isbi / folders) or a
    manifest CSV (``image, mask[, fov]``). Masks are binary (> 0 is foreground; ``invert_mask``
    swaps, ISBI default: membrane = 0 is the foreground) or class indices 0..num_classes-1."""

    source: Literal["segmentation_folder"] = "segmentation_folder"
    root: Path
    layout: Literal["drive", "isbi", "folders"] = "drive"
    manifest: Path | None = None  # CSV with image, mask[, fov] (relative to root)
    images: str | None = None  # folder names (layout defaults when None)
    masks: str | None = None
    fov: str | None = None
    key: str = "number"  # file pairing rule: number, stem or a regex
    num_classes: int = Field(2, ge=2)
    invert_mask: bool | None = None  # None: layout default (isbi True)
    channels: Literal["auto", "rgb", "green", "grey"] = "auto"
    spatial_dims: Literal[2, 3] = 2
    normalize: Literal["zscore", "none"] = "zscore"
    val_count: int | None = Field(None, ge=1)  # images held back (else val_fraction)
    patch_size: list[int] = Field(default_factory=lambda: [96, 96])
    patches_per_image: int = Field(8, ge=1)
    # sliding-window inference and mirror TTA live in the segmentation family's inference:
    # section (roi_size, overlap, ... here still load, moved there with a DeprecationWarning)

    @property
    def mask_inverted(self) -> bool:
        """``invert_mask``, or the layout's default (ISBI: membrane = 0 is the foreground)."""
        return self.invert_mask if self.invert_mask is not None else self.layout == "isbi"

    @property
    def uses_field_of_view(self) -> bool:
        """Whether predictions are blanked outside a field of view (DRIVE's FOV masks)."""
        return bool(self.fov or (self.layout == "drive" and self.manifest is None))

    @model_validator(mode="after")
    def _augment_fits_dims(self) -> SegmentationFolderData:
        augment = self.augment
        if self.spatial_dims == 3 and (augment.rotate_degrees or augment.translate
                                       or augment.scale or augment.elastic_magnitude):
            raise ValueError("augment rotate_degrees / translate / scale / elastic_magnitude "
                             "work on 2D images only; for 3D use flips (hflip, vflip)")
        return self


def segmentation_manifest(data: SegmentationFolderData) -> pd.DataFrame:
    """``sample_id, image, mask[, fov][, patient_id]`` from the folder layout or manifest CSV."""
    if data.manifest is not None:
        path = data.manifest if data.manifest.is_absolute() else data.root / data.manifest
        return load_manifest(path, root=data.root, required=("image", "mask"))
    images, masks, fov = LAYOUTS[data.layout]
    folders = {"mask": data.masks or masks}
    if data.fov or fov:
        folders["fov"] = data.fov or fov
    if not Path(data.root).is_dir():
        raise InputFileError(data.root, "data.root: folder not found")
    return mask_folder_manifest(data.root, images=data.images or images, masks=folders,
                                key=data.key)


@register_source
class SegmentationFolderSource(DataSource):
    """Every pair read once into memory; split grouped by patient when the manifest has one."""

    name = "segmentation_folder"
    tasks = ("segmentation",)
    Config = SegmentationFolderData

    def build_datamodule(
        self, config: ExperimentConfig, splits: pd.DataFrame | None
    ) -> SegmentationDataModule:
        data = config.data
        assert isinstance(data, SegmentationFolderData)
        manifest = segmentation_manifest(data)
        table = manifest[[c for c in ("sample_id", "patient_id") if c in manifest.columns]]
        splits = training_splits(table.assign(sample_id=table["sample_id"].astype(str)),
                                 seed=config.seed, val_fraction=data.val_fraction,
                                 val_count=data.val_count, test_fraction=data.test_fraction,
                                 given=splits)
        images = dict(zip(manifest["sample_id"].astype(str), manifest["image"], strict=True))
        splits = splits.assign(image=[Path(images[i]).name for i in splits["sample_id"]])
        cache = data_cache(data)
        samples = [
            load_sample(data, str(row["sample_id"]), row["image"], row.get("mask"),
                        row.get("fov") if isinstance(row.get("fov"), str) else None,
                        cache=cache)
            for _, row in manifest.iterrows()
        ]
        return SegmentationDataModule(samples, splits, data, pin_memory=pins_memory(config))

    def sample_table(self, config: ExperimentConfig, *, pixels: bool = True) -> SampleTable:
        data = config.data
        assert isinstance(data, SegmentationFolderData)
        manifest = segmentation_manifest(data).reset_index(drop=True)
        manifest["sample_id"] = manifest["sample_id"].astype(str)
        split_table = manifest[[c for c in ("sample_id", "patient_id") if c in manifest]]
        return SampleTable(manifest, split_table, {"val_count": data.val_count},
                           mask_classes=data.num_classes)

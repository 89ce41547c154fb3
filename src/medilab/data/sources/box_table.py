"""The ``box_table`` source (detection): an image folder, ``images.csv`` (every image, with an
optional patient column) and the boxes (``boxes.csv``: image, label, x1, y1, x2, y2 or x, y, w, h;
or COCO JSON). Images without boxes are negatives and are trained on. The split is grouped by
patient when the table has one (else by image), stratified by "has a box"."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import Field

from medilab.config import DataCommon, ExperimentConfig
from medilab.data.cache import data_cache
from medilab.data.datamodules.detection import DetectionDataModule, Preprocess, parse_boxes
from medilab.data.formats.boxes import boxes_csv_manifest, read_coco
from medilab.data.loading import pins_memory
from medilab.data.sample_table import SampleTable
from medilab.data.sources.base import DataSource, register_source
from medilab.data.splits import training_splits
from medilab.errors import InputFileError


class BoxTableData(DataCommon):
    """Images under ``root/image_dir``; boxes from ``root/boxes`` (CSV or COCO JSON)."""

    source: Literal["box_table"] = "box_table"
    root: Path
    images_csv: str | None = "images.csv"  # every image (negatives too); None: boxed only
    boxes: str = "boxes.csv"  # CSV or COCO .json
    image_dir: str = "images"
    box_format: Literal["auto", "xyxy", "xywh"] = "auto"
    group: str | None = "patient_id"  # used when the images table has it
    # the box classes; a box label outside them is an error (a typo is not a new class).
    # None: every label found is a class
    classes: list[str] | None = None
    class_agnostic: bool = False  # merge every box class into agnostic_name
    agnostic_name: str = "lesion"
    size: int = Field(512, ge=32)  # longer side after resizing (aspect kept, padded square)
    channels: Literal[1, 3] = 1
    log: bool = False  # the seed's log transform
    color_balance: float | None = Field(None, ge=0, lt=100)  # simplest color balance, percent
    window: str | None = None  # DICOM window preset or "C,W"
    batch_size: int = Field(4, ge=1)

    def preprocess(self) -> Preprocess:
        """The per-image steps shared by training, evaluation, prediction and explanation."""
        return Preprocess(size=self.size, channels=self.channels, log=self.log,
                          color_balance=self.color_balance, window=self.window)


def box_manifest(data: BoxTableData, *, check_files: bool = True, strict: bool = True
                 ) -> pd.DataFrame:
    """One row per image: image, boxes, box_labels, sample_id (+ images.csv columns);
    ``check_files`` False lists images that do not exist instead of refusing them; ``strict``
    False keeps bad boxes and unlisted images (``data verify`` lists them all)."""
    boxes = data.root / data.boxes
    images_dir = data.root / data.image_dir
    if not boxes.is_file():
        raise InputFileError(boxes, "boxes file not found (set data.boxes)")
    if boxes.suffix.lower() == ".json":
        manifest = read_coco(boxes, images_dir)
    else:
        images_csv = data.root / data.images_csv if data.images_csv else None
        if images_csv is not None and not images_csv.is_file():
            raise InputFileError(images_csv, "images table not found (set data.images_csv, or "
                                 "null to use only images that have boxes)")
        manifest = boxes_csv_manifest(boxes, images_dir, images_csv=images_csv,
                                      box_format=data.box_format, check_files=check_files,
                                      strict=strict)
    if manifest.empty:
        raise InputFileError(data.root, "no images listed")
    if data.group and data.group in manifest.columns:
        manifest = manifest.rename(columns={data.group: "patient_id"})
    if "sample_id" not in manifest.columns:
        manifest["sample_id"] = [Path(str(p)).stem for p in manifest["image"]]
    return manifest


@register_source
class BoxTableSource(DataSource):
    name = "box_table"
    tasks = ("detection",)
    Config = BoxTableData

    def build_datamodule(
        self, config: ExperimentConfig, splits: pd.DataFrame | None
    ) -> DetectionDataModule:
        data = config.data
        assert isinstance(data, BoxTableData)
        manifest = box_manifest(data)
        table = split_table(manifest)
        splits = training_splits(table, seed=config.seed, val_fraction=data.val_fraction,
                                 test_fraction=data.test_fraction, given=splits)
        datamodule = DetectionDataModule(
            manifest, splits, prep=data.preprocess(), augment=data.augment,
            classes=None if data.class_agnostic else data.classes,
            class_agnostic=data.class_agnostic, agnostic_name=data.agnostic_name,
            batch_size=data.batch_size, num_workers=data.num_workers,
            pin_memory=pins_memory(config), cache=data_cache(data),
        )
        datamodule.setup()  # every box checked before a run folder exists
        return datamodule

    def sample_table(self, config: ExperimentConfig, *, pixels: bool = True) -> SampleTable:
        data = config.data
        assert isinstance(data, BoxTableData)
        manifest = box_manifest(data, check_files=False, strict=False).reset_index(drop=True)
        manifest["sample_id"] = manifest["sample_id"].astype(str)
        manifest["boxes"] = [parse_boxes(b, i) for b, i in zip(manifest["boxes"],
                                                                manifest["image"], strict=True)]
        return SampleTable(manifest, split_table(manifest),
                           box_classes=None if data.class_agnostic else data.classes,
                           label_names=BOX_LABEL_NAMES)


BOX_LABEL_NAMES = {"0": "no box", "1": "has box"}  # the split's stratification label


def split_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """``sample_id[, patient_id], label`` (has a box) for the split; no label when every
    image is boxed (or none is)."""
    table = pd.DataFrame({
        "sample_id": manifest["sample_id"].astype(str),
        "label": [int(len(b) > 0) for b in manifest["boxes"]],
    })
    if "patient_id" in manifest.columns:
        table["patient_id"] = manifest["patient_id"].astype(str).to_numpy()
    if table["label"].nunique() < 2:  # every image boxed (or none): split unstratified
        table = table.drop(columns="label")
    return table

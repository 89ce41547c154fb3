"""Readers of on-disk layouts, each to a manifest or arrays: pixel tables (Kaggle CSV, MNIST
idx), MedMNIST npz, image folder + metadata CSV, image/mask folders, boxes from CSV / COCO JSON,
and the pixels a manifest entry points to (``read_array``). Nothing here knows a config."""

from medilab.data.formats.boxes import (
    boxes_csv_manifest,
    boxes_manifest,
    read_boxes_csv,
    read_coco,
)
from medilab.data.formats.image_folder import image_folder_manifest
from medilab.data.formats.mask_folders import mask_folder_manifest, pair_files
from medilab.data.formats.medmnist import load_medmnist, medmnist_manifest
from medilab.data.formats.pixels import read_array

__all__ = [
    "boxes_csv_manifest",
    "boxes_manifest",
    "image_folder_manifest",
    "load_medmnist",
    "mask_folder_manifest",
    "medmnist_manifest",
    "pair_files",
    "read_array",
    "read_boxes_csv",
    "read_coco",
]

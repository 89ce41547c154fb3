"""Sources that turn files on disk into manifests (and arrays): MedMNIST npz, image folder + CSV,
mask folders, boxes from CSV / COCO JSON."""

from medilab.data.sources.boxes import (
    boxes_csv_manifest,
    boxes_manifest,
    read_boxes_csv,
    read_coco,
)
from medilab.data.sources.image_folder import image_folder_manifest
from medilab.data.sources.loader import read_array
from medilab.data.sources.masks import mask_folder_manifest, pair_files
from medilab.data.sources.medmnist import load_medmnist, medmnist_manifest

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

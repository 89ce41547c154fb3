"""Importing this module registers every built-in data source."""

from medilab.data.sources import (  # noqa: F401
    box_table,
    digits,
    image_table,
    medmnist,
    segmentation_folder,
    slice_table,
)

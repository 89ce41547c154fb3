"""Importing this module registers every built-in data source."""

from medilab.data.sources import (  # noqa: F401
    box_table,
    digits,
    image_table,
    medmnist_data,
    segmentation_folder,
    slice_table,
)

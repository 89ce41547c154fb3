"""Importing this module registers every built-in data source."""

from medilab.data.sources import digits, segmentation_folder  # noqa: F401

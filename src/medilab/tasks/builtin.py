"""Importing this module registers every built-in task family."""

from medilab.tasks import classification, detection, segmentation  # noqa: F401

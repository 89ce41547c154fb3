"""Importing this module registers every built-in task family."""

from medilab.tasks import classification, segmentation  # noqa: F401

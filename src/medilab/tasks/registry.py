"""Task family name → implementation."""

from __future__ import annotations

from medilab.errors import ConfigError
from medilab.tasks.base import TaskFamily


def get_task_family(name: str) -> TaskFamily:
    """The task family for ``config.task``."""
    if name == "classification":
        from medilab.tasks.classification import ClassificationFamily

        return ClassificationFamily()
    if name == "segmentation":
        from medilab.tasks.segmentation import SegmentationFamily

        return SegmentationFamily()
    raise ConfigError(f"task: {name!r} is not implemented yet")

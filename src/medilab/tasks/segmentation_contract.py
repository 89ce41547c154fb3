"""What the segmentation family needs from a data source: the data pipeline's fields
(:class:`medilab.data.datamodules.segmentation.SegmentationData`) plus sliding-window
inference, mirror TTA and the field-of-view rule for new images."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from medilab.config import ExperimentConfig
from medilab.data.datamodules.segmentation import SegmentationData
from medilab.tasks.contract import require


@runtime_checkable
class SegmentationInputs(SegmentationData, Protocol):
    """A segmentation source's ``data:`` section, as the family reads it."""

    roi_size: list[int] | None  # sliding-window size (None: patch_size)
    overlap: float
    blend_mode: str
    sw_batch_size: int
    mirror_tta: bool
    mirror_tta_axes: list[int] | None
    key: str  # how a new image's field-of-view file is paired with it

    @property
    def uses_field_of_view(self) -> bool:
        """Whether predictions are blanked outside a field of view."""
        ...


def segmentation_inputs(config: ExperimentConfig) -> SegmentationInputs:
    """``config.data`` checked against :class:`SegmentationInputs` (one-line error if not)."""
    return require(config.data, SegmentationInputs, "segmentation")

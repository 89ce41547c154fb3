"""What the segmentation family needs from a data source (the data pipeline's fields of
:class:`medilab.data.datamodules.segmentation.SegmentationData` plus the field-of-view rule for
new images) and the ``inference:`` section it owns: sliding-window inference and mirror TTA."""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

from pydantic import Field

from medilab.config import ExperimentConfig, Strict
from medilab.data.datamodules.segmentation import SegmentationData
from medilab.tasks.contract import owned_section, require


class SegmentationInference(Strict):
    """The ``inference:`` section: how evaluate/predict run the network over whole images."""

    roi_size: list[int] | None = None  # sliding-window size; None: data.patch_size
    overlap: float = Field(0.25, ge=0, lt=1)
    blend_mode: Literal["gaussian", "constant"] = "gaussian"
    sw_batch_size: int = Field(4, ge=1)
    mirror_tta: bool = False  # average over all spatial flips (= evaluation.tta: flips)
    # only these spatial axes (0 = rows, i.e. vertical flips; 1 = columns; 2 = …); None = all
    mirror_tta_axes: list[int] | None = None


# where these options lived before: a segmentation source's data: section
MOVED_INFERENCE_KEYS = {f"data.{name}": f"inference.{name}"
                        for name in SegmentationInference.model_fields}


@runtime_checkable
class SegmentationInputs(SegmentationData, Protocol):
    """A segmentation source's ``data:`` section, as the family reads it."""

    key: str  # how a new image's field-of-view file is paired with it

    @property
    def uses_field_of_view(self) -> bool:
        """Whether predictions are blanked outside a field of view."""
        ...


def segmentation_inputs(config: ExperimentConfig) -> SegmentationInputs:
    """``config.data`` checked against :class:`SegmentationInputs` (one-line error if not)."""
    return require(config.data, SegmentationInputs, "segmentation")


def segmentation_inference(config: ExperimentConfig) -> SegmentationInference:
    """The config's ``inference:`` section (present on every validated segmentation config)."""
    return owned_section(config, "inference", SegmentationInference, "segmentation")


def check_inference(config: ExperimentConfig) -> None:
    """The ``inference:`` options fit the data's spatial dimensions (ValueError naming them)."""
    dims = segmentation_inputs(config).spatial_dims
    inference = segmentation_inference(config)
    if inference.roi_size is not None and len(inference.roi_size) != dims:
        raise ValueError(f"inference.roi_size: {inference.roi_size} is not {dims}D")
    if any(not 0 <= axis < dims for axis in inference.mirror_tta_axes or []):
        raise ValueError(f"inference.mirror_tta_axes {inference.mirror_tta_axes} names an axis "
                         f"outside 0..{dims - 1}")

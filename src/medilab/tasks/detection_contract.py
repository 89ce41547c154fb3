"""What the detection family needs from a data source: the image size and channels the model
is built for, and the per-image preprocessing (with its mapping back to original pixels)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from medilab.config import ExperimentConfig
from medilab.data.datamodules.detection import Preprocess
from medilab.tasks.contract import require


@runtime_checkable
class DetectionInputs(Protocol):
    """A detection source's ``data:`` section, as the family reads it."""

    size: int  # square model input side (images are resized and padded to it)
    channels: int

    def preprocess(self) -> Preprocess:
        """The per-image steps shared by training, evaluation, prediction and explanation."""
        ...


def detection_inputs(config: ExperimentConfig) -> DetectionInputs:
    """``config.data`` checked against :class:`DetectionInputs` (one-line error if not)."""
    return require(config.data, DetectionInputs, "detection")

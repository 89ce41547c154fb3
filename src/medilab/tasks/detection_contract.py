"""What the detection family needs from a data source (the image size and channels the model
is built for, and the per-image preprocessing with its mapping back to original pixels) and the
``warmup:`` section it owns."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from pydantic import Field

from medilab.config import ExperimentConfig, Strict
from medilab.data.datamodules.detection import Preprocess
from medilab.tasks.contract import owned_section, require


class DetectionWarmup(Strict):
    """The ``warmup:`` section: a linear learning-rate warm-up over the first optimiser steps
    (from 0.001 × the learning rate; it should end within the first epoch)."""

    steps: int = Field(0, ge=0)  # 0: no warm-up


# where the option lived before: the scheduler: section every task shares
MOVED_WARMUP_KEYS = {"scheduler.warmup_steps": "warmup.steps"}


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


def detection_warmup(config: ExperimentConfig) -> DetectionWarmup:
    """The config's ``warmup:`` section (present on every validated detection config)."""
    return owned_section(config, "warmup", DetectionWarmup, "detection")

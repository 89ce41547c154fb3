"""Class activation maps (pytorch-grad-cam) for medilab classifiers and Faster R-CNN detectors.

``explain_classifier`` (gradcam | eigencam | ablationcam) and ``explain_detector``
(eigencam | ablationcam) return maps in [0, 1] at the model input's size; ``overlay_png`` draws
one over the image at its original size, with detector boxes.
"""

from __future__ import annotations

from medilab.explain.classifier import CLASSIFIER_METHODS, FixedCovariates, explain_classifier
from medilab.explain.detector import (
    DETECTOR_METHODS,
    DetectorExplanation,
    explain_detector,
    find_detector,
    is_detector,
)
from medilab.explain.layers import TargetLayer, find_target_layer
from medilab.explain.overlay import overlay_png, scale_boxes

__all__ = [
    "CLASSIFIER_METHODS",
    "DETECTOR_METHODS",
    "DetectorExplanation",
    "FixedCovariates",
    "TargetLayer",
    "explain_classifier",
    "explain_detector",
    "find_detector",
    "find_target_layer",
    "is_detector",
    "overlay_png",
    "scale_boxes",
]

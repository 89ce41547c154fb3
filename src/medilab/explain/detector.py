"""EigenCAM / AblationCAM for torchvision Faster R-CNN detectors (grad-cam's Faster R-CNN recipe).

The CAM looks at ``model.backbone`` (the FPN): its levels are cropped to the un-padded image,
resized to the finest level, and stacked as channels. The target scores the predicted boxes
(``FasterRCNNBoxScoreTarget``). AblationCAM with no box above ``min_score`` has nothing to ablate
against, so it falls back to EigenCAM, says so in ``DetectorExplanation.notice`` and reports
``method`` "eigencam" (the overlay is then named for EigenCAM, not AblationCAM).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_grad_cam import AblationCAM
from pytorch_grad_cam.ablation_layer import AblationLayerFasterRCNN
from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget
from torch import nn
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN

from medilab.errors import MedilabError
from medilab.explain.classifier import check_method, eval_mode, no_progress_bars
from medilab.explain.eigen import SignedEigenCAM

DETECTOR_METHODS = ("eigencam", "ablationcam")


@dataclass
class DetectorExplanation:
    """A detector CAM (H, W) in [0, 1] with the boxes (x1, y1, x2, y2) it explains.

    Unpacks as ``cam, boxes, labels, scores = explain_detector(...)``.
    """

    cam: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    method: str
    notice: str | None = None

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter((self.cam, self.boxes, self.labels, self.scores))


class FpnAblationLayer(AblationLayerFasterRCNN):
    """grad-cam's Faster R-CNN ablation layer for any FPN: levels and widths read from the maps.

    (grad-cam's own assumes five 256-channel levels named 0-3 and pool; MobileNet FPNs have three.)
    """

    def __call__(self, x: object) -> OrderedDict[str, torch.Tensor]:
        result = self.activations
        keys = list(result)
        ends = np.cumsum([result[key].shape[1] for key in keys])
        for row in range(result[keys[0]].shape[0]):
            channel = int(self.indices[row])
            level = int(np.searchsorted(ends, channel, side="right"))
            start = int(ends[level - 1]) if level else 0
            result[keys[level]][row, channel - start] = -1000
        return result


def is_detector(model: nn.Module) -> bool:
    """True when ``model`` is, or wraps, a torchvision R-CNN detector."""
    return any(isinstance(module, GeneralizedRCNN) for module in model.modules())


def find_detector(model: nn.Module) -> GeneralizedRCNN:
    """The torchvision R-CNN inside ``model`` (``model`` itself when it is one)."""
    for module in model.modules():
        if isinstance(module, GeneralizedRCNN):
            return module
    raise MedilabError(f"{type(model).__name__} is not a torchvision Faster R-CNN detector")


def fpn_reshape(valid_fraction: tuple[float, float]) -> Callable[[dict], torch.Tensor]:
    """FPN levels → one (N, sum C, h, w) map over the un-padded part of the resized image."""
    fraction_h, fraction_w = valid_fraction

    def reshape(levels: dict[str, torch.Tensor]) -> torch.Tensor:
        cropped = [
            value[
                ...,
                : math.ceil(value.shape[-2] * fraction_h),
                : math.ceil(value.shape[-1] * fraction_w),
            ]
            for value in levels.values()
        ]
        size = max((c.shape[-2:] for c in cropped), key=lambda s: s[0] * s[1])
        resized = [F.interpolate(c.abs(), size=tuple(size), mode="bilinear") for c in cropped]
        return torch.cat(resized, dim=1)

    return reshape


def _valid_fraction(detector: GeneralizedRCNN, image: torch.Tensor) -> tuple[float, float]:
    with torch.no_grad():
        image_list, _ = detector.transform([image])
    height, width = image_list.image_sizes[0]
    padded_h, padded_w = image_list.tensors.shape[-2:]
    return height / padded_h, width / padded_w


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()


def explain_detector(
    model: nn.Module,
    image: torch.Tensor,
    method: str = "eigencam",
    min_score: float = 0.5,
    batch_size: int = 16,
    ratio_channels_to_ablate: float = 0.1,
) -> DetectorExplanation:
    """CAM of a Faster R-CNN on ``image`` (C, H, W, values 0..1) for boxes scoring ≥ ``min_score``.

    Boxes are in ``image`` pixel coordinates. AblationCAM ablates the top and bottom
    ``ratio_channels_to_ablate`` of FPN channels (1.0 = all, slow), ``batch_size`` at a time.
    """
    if method.lower() == "gradcam":
        raise MedilabError(
            f"gradcam does not apply to Faster R-CNN detectors; use one of {DETECTOR_METHODS}"
        )
    method = check_method(method, DETECTOR_METHODS, "detectors")
    if image.ndim != 3:
        raise MedilabError(f"explain_detector: image must be (C, H, W), got {tuple(image.shape)}")
    detector = find_detector(model)
    device = next(detector.parameters()).device
    image = image.detach().to(device=device, dtype=torch.float32)
    with eval_mode(detector):
        with torch.no_grad():
            prediction = detector([image])[0]
        keep = prediction["scores"] >= min_score
        boxes, labels = prediction["boxes"][keep], prediction["labels"][keep]
        scores = prediction["scores"][keep]
        targets = [FasterRCNNBoxScoreTarget(labels=labels, bounding_boxes=boxes)]
        reshape = fpn_reshape(_valid_fraction(detector, image))
        notice = None
        if method == "ablationcam" and len(boxes) == 0:
            method = "eigencam"
            notice = f"no box scored ≥ {min_score}: AblationCAM has no target, showing EigenCAM"
        if method == "eigencam":
            cam = SignedEigenCAM(detector, [detector.backbone], reshape_transform=reshape)
        else:
            cam = AblationCAM(
                detector,
                [detector.backbone],
                reshape_transform=reshape,
                ablation_layer=FpnAblationLayer(),
                batch_size=batch_size,
                ratio_channels_to_ablate=ratio_channels_to_ablate,
            )
        with cam, no_progress_bars():
            grayscale = cam(input_tensor=image.unsqueeze(0), targets=targets)
    return DetectorExplanation(
        cam=np.clip(np.nan_to_num(grayscale[0]), 0.0, 1.0).astype(np.float32),
        boxes=_numpy(boxes).astype(np.float32),
        labels=_numpy(labels).astype(np.int64),
        scores=_numpy(scores).astype(np.float32),
        method=method,
        notice=notice,
    )

"""Faster R-CNN detectors (torchvision) behind the model registry.

Every builder takes the same keyword arguments:

- ``num_classes``: foreground classes (torchvision's background class is added here);
- ``in_channels``: 1 (grey, repeated to 3 inside the model, so RGB weights apply) or 3;
- ``min_size`` / ``max_size``: the size torchvision resizes images to;
- ``anchor_sizes``: one size per feature level (``[32, 64, 128]``) or a list per level;
  ``aspect_ratios``: the ratios used at every level;
- ``weights``: ``"none"``, ``"coco"`` (torchvision's COCO file from the torch hub cache, offline
  only) or a path to a state dict / Lightning checkpoint;
- ``box_loss``: ``"smooth_l1"`` (torchvision's) or ``"giou"`` (generalised IoU on decoded boxes);
- ``frozen_batchnorm``: replace the backbone's BatchNorm by frozen statistics (advisable when
  fine-tuning COCO weights with small batches). It is part of the architecture, so it must be the
  same when a checkpoint is rebuilt.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import detection as tv_detection
from torchvision.models import resnet18
from torchvision.models.detection import (
    FasterRCNN,
    FasterRCNN_MobileNet_V3_Large_FPN_Weights,
    FasterRCNN_ResNet50_FPN_V2_Weights,
)
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import MultiScaleRoIAlign, generalized_box_iou_loss
from torchvision.ops.misc import FrozenBatchNorm2d

from medilab.errors import ConfigError
from medilab.models.registry import register_model
from medilab.models.weights import named_weights_file, read_state_dict, torchvision_state_dict

BOX_LOSSES = ("smooth_l1", "giou")
# proposal counts of fasterrcnn_small: a tenth of torchvision's, for small images
SMALL_SAMPLING = {
    "rpn_pre_nms_top_n_train": 200, "rpn_post_nms_top_n_train": 100,
    "rpn_pre_nms_top_n_test": 200, "rpn_post_nms_top_n_test": 100,
    "rpn_batch_size_per_image": 64, "box_batch_size_per_image": 64,
}


# ----------------------------------------------------------------------------- model parts
class GreyAwareTransform(GeneralizedRCNNTransform):
    """torchvision's resize + normalise, repeating a one-channel image to three channels first."""

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        if image.shape[0] == 1 and len(self.image_mean) == 3:
            image = image.expand(3, -1, -1)
        return super().normalize(image)


class GIoURoIHeads(RoIHeads):
    """Box heads whose regression loss is the generalised IoU loss on decoded boxes.

    Classification is torchvision's cross entropy; the box loss is summed over positive
    proposals and divided by the number of sampled proposals, as torchvision does.
    """

    @classmethod
    def from_heads(cls, heads: RoIHeads) -> GIoURoIHeads:
        """The same heads (same modules and settings) with the GIoU box loss."""
        return cls(
            heads.box_roi_pool, heads.box_head, heads.box_predictor,
            fg_iou_thresh=heads.proposal_matcher.high_threshold,
            bg_iou_thresh=heads.proposal_matcher.low_threshold,
            batch_size_per_image=heads.fg_bg_sampler.batch_size_per_image,
            positive_fraction=heads.fg_bg_sampler.positive_fraction,
            bbox_reg_weights=heads.box_coder.weights,
            score_thresh=heads.score_thresh, nms_thresh=heads.nms_thresh,
            detections_per_img=heads.detections_per_img,
        )

    def forward(self, features, proposals, image_shapes, targets=None):  # noqa: D102
        if not self.training:
            return super().forward(features, proposals, image_shapes, targets)
        proposals, _, labels, regression_targets = self.select_training_samples(
            proposals, targets
        )
        pooled = self.box_roi_pool(features, proposals, image_shapes)
        class_logits, box_regression = self.box_predictor(self.box_head(pooled))
        labels_all = torch.cat(labels)
        loss_classifier = F.cross_entropy(class_logits, labels_all)
        positive = torch.where(labels_all > 0)[0]
        deltas = box_regression.reshape(len(labels_all), -1, 4)[positive, labels_all[positive]]
        anchors = torch.cat(proposals)[positive]
        predicted = self.box_coder.decode_single(deltas, anchors)
        matched = self.box_coder.decode_single(torch.cat(regression_targets)[positive], anchors)
        loss_box = generalized_box_iou_loss(predicted, matched, reduction="sum")
        loss_box = loss_box / max(labels_all.numel(), 1)
        return [], {"loss_classifier": loss_classifier, "loss_box_reg": loss_box}


# ----------------------------------------------------------------------------- helpers
# torchvision FasterRCNN options a config may set (the rest are built here)
DETECTOR_OPTIONS = tuple(
    name for name in inspect.signature(FasterRCNN.__init__).parameters
    if name not in ("self", "backbone", "num_classes", "min_size", "max_size", "kwargs")
    and not name.startswith(("rpn_anchor_generator", "box_roi_pool", "box_head",
                             "box_predictor", "rpn_head"))
)


def _check_args(num_classes: int, in_channels: int, box_loss: str,
                detector_kwargs: dict[str, Any] | None = None, name: str = "") -> None:
    unknown = [key for key in detector_kwargs or {} if key not in DETECTOR_OPTIONS]
    if unknown:  # torchvision passes unknown ones on to its transform, which ignores them
        raise ConfigError(f"model.kwargs.{unknown[0]}: unknown argument for model {name!r} "
                          "(it takes its own arguments and torchvision FasterRCNN's: "
                          f"{', '.join(DETECTOR_OPTIONS)})")
    if num_classes < 1:
        raise ConfigError(f"model.kwargs.num_classes: must be at least 1, got {num_classes}")
    if in_channels not in (1, 3):
        raise ConfigError(f"model.kwargs.in_channels: must be 1 or 3, got {in_channels}")
    if box_loss not in BOX_LOSSES:
        raise ConfigError(f"model.kwargs.box_loss: expected one of {BOX_LOSSES}, got {box_loss!r}")


def anchor_generator(
    sizes: Sequence[int] | Sequence[Sequence[int]], aspect_ratios: Sequence[float], levels: int
) -> AnchorGenerator:
    """Anchors for ``levels`` feature maps: one size per level, or a list of sizes per level."""
    per_level = [tuple(s) if isinstance(s, Sequence) else (s,) for s in sizes]
    if len(per_level) != levels:
        raise ConfigError(
            f"model.kwargs.anchor_sizes: this model has {levels} feature levels, got "
            f"{len(per_level)} entries"
        )
    if len({len(s) for s in per_level}) != 1:
        raise ConfigError("model.kwargs.anchor_sizes: every level needs the same number of sizes")
    ratios = tuple(float(r) for r in aspect_ratios)
    return AnchorGenerator(tuple(per_level), (ratios,) * levels)


def _set_anchors(
    model: FasterRCNN, sizes: Any, aspect_ratios: Sequence[float] | None, rpn_conv_depth: int
) -> None:
    """Replace the anchor generator (and the RPN head when the anchor count changes)."""
    if sizes is None and aspect_ratios is None:
        return
    current = model.rpn.anchor_generator
    levels = len(current.sizes)
    sizes = sizes if sizes is not None else [list(s) for s in current.sizes]
    ratios = aspect_ratios if aspect_ratios is not None else current.aspect_ratios[0]
    generator = anchor_generator(sizes, ratios, levels)
    if generator.num_anchors_per_location()[0] != current.num_anchors_per_location()[0]:
        channels = model.backbone.out_channels
        model.rpn.head = RPNHead(
            channels, generator.num_anchors_per_location()[0], conv_depth=rpn_conv_depth
        )
    model.rpn.anchor_generator = generator


def _freeze_batchnorm(module: nn.Module) -> None:
    """Swap every BatchNorm2d below ``module`` for a FrozenBatchNorm2d with the same statistics."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            frozen.weight.copy_(child.weight.detach())
            frozen.bias.copy_(child.bias.detach())
            frozen.running_mean.copy_(child.running_mean)
            frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            _freeze_batchnorm(child)


def _load_matching(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load the entries of ``state`` whose name and shape match ``model``."""
    if state and all(k.startswith("model.") for k in state):  # a medilab Lightning checkpoint
        state = {k.removeprefix("model."): v for k, v in state.items()}
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise ConfigError(f"model.kwargs.weights: {source} holds no weights for this model")
    model.load_state_dict(usable, strict=False)


def _finish(
    model: FasterRCNN, *, num_classes: int, in_channels: int, weights: str, coco: Any,
    anchor_sizes: Any, aspect_ratios: Any, rpn_conv_depth: int, box_loss: str,
    frozen_batchnorm: bool,
) -> FasterRCNN:
    """Weights, anchors, class count, grey input and box loss applied to a built detector."""
    loaded_coco = weights == "coco"
    if loaded_coco:
        _load_matching(model, torchvision_state_dict(coco), "coco")
    _set_anchors(model, anchor_sizes, aspect_ratios, rpn_conv_depth)
    predictor = model.roi_heads.box_predictor
    if loaded_coco or predictor.cls_score.out_features != num_classes + 1:
        model.roi_heads.box_predictor = FastRCNNPredictor(
            predictor.cls_score.in_features, num_classes + 1
        )
    transform = model.transform
    model.transform = GreyAwareTransform(
        transform.min_size, transform.max_size, transform.image_mean, transform.image_std,
        size_divisible=transform.size_divisible, fixed_size=transform.fixed_size,
    )
    if box_loss == "giou":
        model.roi_heads = GIoURoIHeads.from_heads(model.roi_heads)
    if frozen_batchnorm:
        _freeze_batchnorm(model.backbone)
    if weights not in ("none", "coco"):
        path = named_weights_file(weights, ("none", "coco"))
        _load_matching(model, read_state_dict(path), str(weights))
    model.in_channels = in_channels  # type: ignore[attr-defined]
    return model


# ----------------------------------------------------------------------------- builders
@register_model("fasterrcnn_mobilenet_v3_large_fpn")
def fasterrcnn_mobilenet_v3_large_fpn(
    num_classes: int = 1, in_channels: int = 3, min_size: int = 512, max_size: int = 512,
    anchor_sizes: Sequence[Any] | None = None, aspect_ratios: Sequence[float] | None = None,
    weights: str = "none", box_loss: str = "smooth_l1", frozen_batchnorm: bool = False,
    **detector_kwargs: Any,
) -> FasterRCNN:
    """Faster R-CNN with a MobileNetV3-Large FPN backbone (3 levels); fast enough for CPU.

    ``detector_kwargs`` go to torchvision's ``FasterRCNN`` (e.g. ``box_score_thresh``).
    """
    _check_args(num_classes, in_channels, box_loss, detector_kwargs,
                "fasterrcnn_mobilenet_v3_large_fpn")
    model = tv_detection.fasterrcnn_mobilenet_v3_large_fpn(
        weights=None, weights_backbone=None,
        num_classes=91 if weights == "coco" else num_classes + 1,
        min_size=min_size, max_size=max_size, **detector_kwargs,
    )
    return _finish(
        model, num_classes=num_classes, in_channels=in_channels, weights=weights,
        coco=FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1, anchor_sizes=anchor_sizes,
        aspect_ratios=aspect_ratios, rpn_conv_depth=1, box_loss=box_loss,
        frozen_batchnorm=frozen_batchnorm,
    )


@register_model("fasterrcnn_resnet50_fpn_v2")
def fasterrcnn_resnet50_fpn_v2(
    num_classes: int = 1, in_channels: int = 3, min_size: int = 512, max_size: int = 512,
    anchor_sizes: Sequence[Any] | None = None, aspect_ratios: Sequence[float] | None = None,
    weights: str = "none", box_loss: str = "smooth_l1", frozen_batchnorm: bool = False,
    **detector_kwargs: Any,
) -> FasterRCNN:
    """Faster R-CNN v2 with a ResNet-50 FPN backbone (5 levels; Li et al. 2021 recipe)."""
    _check_args(num_classes, in_channels, box_loss, detector_kwargs, "fasterrcnn_resnet50_fpn_v2")
    model = tv_detection.fasterrcnn_resnet50_fpn_v2(
        weights=None, weights_backbone=None,
        num_classes=91 if weights == "coco" else num_classes + 1,
        min_size=min_size, max_size=max_size, **detector_kwargs,
    )
    return _finish(
        model, num_classes=num_classes, in_channels=in_channels, weights=weights,
        coco=FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1, anchor_sizes=anchor_sizes,
        aspect_ratios=aspect_ratios, rpn_conv_depth=2, box_loss=box_loss,
        frozen_batchnorm=frozen_batchnorm,
    )


@register_model("fasterrcnn_small")
def fasterrcnn_small(
    num_classes: int = 1, in_channels: int = 3, min_size: int = 128, max_size: int = 128,
    anchor_sizes: Sequence[Any] | None = None, aspect_ratios: Sequence[float] | None = None,
    weights: str = "none", box_loss: str = "smooth_l1", frozen_batchnorm: bool = False,
    fpn_channels: int = 64, representation_size: int = 256, **detector_kwargs: Any,
) -> FasterRCNN:
    """A small Faster R-CNN for tests and quick CPU runs: ResNet-18 up to ``layer3`` (strides 8
    and 16, plus a max-pooled level at 32), a ``fpn_channels`` FPN, a slim box head and fewer
    sampled proposals (:data:`SMALL_SAMPLING`, overridable). Default anchors: 16, 32 and 64 px.
    No pretrained weights (``weights``: none or a path)."""
    _check_args(num_classes, in_channels, box_loss, detector_kwargs, "fasterrcnn_small")
    detector_kwargs = {**SMALL_SAMPLING, **detector_kwargs}
    if weights == "coco":
        raise ConfigError("model.kwargs.weights: fasterrcnn_small has no COCO weights")
    trunk = resnet18(weights=None)
    backbone = BackboneWithFPN(
        trunk, return_layers={"layer2": "0", "layer3": "1"}, in_channels_list=[128, 256],
        out_channels=fpn_channels,
    )
    model = FasterRCNN(
        backbone, num_classes=None, min_size=min_size, max_size=max_size,
        rpn_anchor_generator=anchor_generator([16, 32, 64], (0.5, 1.0, 2.0), 3),
        box_roi_pool=MultiScaleRoIAlign(["0", "1"], output_size=7, sampling_ratio=2),
        box_head=TwoMLPHead(fpn_channels * 7 * 7, representation_size),
        box_predictor=FastRCNNPredictor(representation_size, num_classes + 1),
        **detector_kwargs,
    )
    return _finish(
        model, num_classes=num_classes, in_channels=in_channels, weights=weights, coco=None,
        anchor_sizes=anchor_sizes, aspect_ratios=aspect_ratios, rpn_conv_depth=1,
        box_loss=box_loss, frozen_batchnorm=frozen_batchnorm,
    )

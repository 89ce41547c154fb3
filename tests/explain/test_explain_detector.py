"""Faster R-CNN CAMs (medilab.explain.detector) on a tiny untrained MobileNet-FPN detector."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

from medilab.errors import MedilabError
from medilab.explain.detector import (
    FpnAblationLayer,
    explain_detector,
    find_detector,
    fpn_reshape,
    is_detector,
)
from medilab.explain.overlay import overlay_png


@pytest.fixture(scope="module")
def detector() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(
        weights=None,
        weights_backbone=None,
        num_classes=2,
        min_size=128,
        max_size=128,
        rpn_pre_nms_top_n_test=100,
        rpn_post_nms_top_n_test=20,
        box_detections_per_img=5,
        box_score_thresh=0.0,
    )


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.rand(3, 100, 80, generator=generator)


def test_eigencam_needs_no_box(detector, image):
    result = explain_detector(detector, image, "eigencam", min_score=0.99)
    assert result.cam.shape == (100, 80) and result.method == "eigencam"
    assert len(result.boxes) == 0 and result.notice is None
    assert np.isfinite(result.cam).all() and result.cam.max() == pytest.approx(1.0, abs=1e-4)


def test_ablationcam_without_boxes_falls_back_to_eigencam(detector, image):
    result = explain_detector(detector, image, "ablationcam", min_score=0.99)
    assert result.method == "eigencam" and "no box scored" in result.notice
    eigen = explain_detector(detector, image, "eigencam", min_score=0.99)
    np.testing.assert_allclose(result.cam, eigen.cam, atol=1e-5)


def test_ablationcam_explains_the_predicted_boxes(detector, image, tmp_path):
    cam, boxes, labels, scores = explain_detector(
        detector, image, "ablationcam", min_score=0.0, batch_size=32, ratio_channels_to_ablate=0.02
    )
    assert cam.shape == (100, 80) and np.isfinite(cam).all() and cam.max() > cam.min()
    assert boxes.shape == (len(labels), 4) and len(scores) == len(labels) > 0
    assert (boxes[:, 2] <= 80 + 1e-3).all() and (boxes[:, 3] <= 100 + 1e-3).all()
    # shown at the original 200×160 image the detector input was resized from
    original = np.random.default_rng(0).random((200, 160))
    out = overlay_png(original, cam, tmp_path / "cam.png", boxes=boxes)
    with Image.open(out) as png:
        assert png.size == (160, 200) and png.mode == "RGB"


def test_gradcam_and_unknown_methods_are_refused(detector, image):
    with pytest.raises(MedilabError, match="eigencam"):
        explain_detector(detector, image, "gradcam")
    with pytest.raises(MedilabError, match="ablationcam"):
        explain_detector(detector, image, "layercam")


def test_a_wrapped_detector_is_found(detector):
    wrapper = nn.ModuleDict({"net": detector})
    assert is_detector(wrapper) and find_detector(wrapper) is detector
    assert not is_detector(nn.Conv2d(1, 1, 1))
    with pytest.raises(MedilabError, match="not a torchvision Faster R-CNN"):
        find_detector(nn.Conv2d(1, 1, 1))


def test_fpn_levels_are_cropped_to_the_image_and_stacked():
    levels = OrderedDict(
        [
            ("0", -torch.ones(1, 4, 8, 8)),
            ("1", torch.ones(1, 3, 4, 4)),
            ("pool", torch.ones(1, 2, 2, 2)),
        ]
    )
    stacked = fpn_reshape((1.0, 0.5))(levels)  # the right half of the padded image is padding
    assert tuple(stacked.shape) == (1, 9, 8, 4)
    assert (stacked >= 0).all()  # magnitudes, as in grad-cam's fasterrcnn_reshape_transform


def test_the_ablation_layer_finds_each_channel_s_fpn_level():
    layer = FpnAblationLayer()
    levels = OrderedDict([("0", torch.ones(1, 4, 2, 2)), ("pool", torch.ones(1, 2, 1, 1))])
    layer.set_next_batch(input_batch_index=0, activations=levels, num_channels_to_ablate=2)
    layer.indices = np.array([1, 5])  # level "0" channel 1, then level "pool" channel 1
    result = layer(None)
    assert (result["0"][0, 1] == -1000).all() and (result["0"][0, [0, 2, 3]] == 1).all()
    assert (result["pool"][1, 1] == -1000).all() and (result["pool"][1, 0] == 1).all()
    assert (result["0"][1] == 1).all() and (result["pool"][0] == 1).all()

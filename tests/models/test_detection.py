from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models.detection import FasterRCNN_MobileNet_V3_Large_FPN_Weights

from medilab.errors import ConfigError, WeightsUnavailableError
from medilab.models import create_model
from medilab.models.detection import (
    GIoURoIHeads,
    fasterrcnn_mobilenet_v3_large_fpn,
    fasterrcnn_resnet50_fpn_v2,
    fasterrcnn_small,
)
from medilab.models.weights import hub_file


def _targets() -> list[dict[str, torch.Tensor]]:
    return [
        {"boxes": torch.tensor([[8.0, 8.0, 28.0, 30.0]]), "labels": torch.tensor([2])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},  # negative
    ]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_registered_and_counts_background() -> None:
    model = create_model("fasterrcnn_small", num_classes=2, in_channels=1, min_size=48,
                         max_size=48)
    predictor = model.roi_heads.box_predictor
    assert predictor.cls_score.out_features == 3  # background + 2 classes
    assert predictor.bbox_pred.out_features == 12


@pytest.mark.parametrize("box_loss", ["smooth_l1", "giou"])
def test_grey_images_train_and_predict(box_loss: str) -> None:
    torch.manual_seed(0)
    model = fasterrcnn_small(num_classes=2, in_channels=1, min_size=48, max_size=48,
                             box_loss=box_loss)
    assert isinstance(model.roi_heads, GIoURoIHeads) == (box_loss == "giou")
    images = [torch.rand(1, 48, 48), torch.rand(1, 48, 48)]
    model.train()
    losses = model(images, _targets())
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness",
                           "loss_rpn_box_reg"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert model.backbone.body.conv1.weight.grad is not None
    model.eval()
    with torch.no_grad():
        outputs = model(images)
    assert len(outputs) == 2 and outputs[0]["boxes"].shape[1] == 4


def test_giou_box_loss_is_zero_for_perfect_regression() -> None:
    model = fasterrcnn_small(num_classes=1, min_size=48, max_size=48, box_loss="giou")
    head = model.roi_heads.box_predictor.bbox_pred
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)  # predicted boxes = proposals
    model.train()
    heads = model.roi_heads
    features = model.backbone(torch.rand(1, 3, 48, 48))
    truth = torch.tensor([[8.0, 8.0, 28.0, 30.0]])
    # the ground-truth box itself is the only proposal (torchvision adds it anyway)
    _, losses = heads(features, [truth.clone()], [(48, 48)],
                      [{"boxes": truth, "labels": torch.tensor([1])}])
    assert float(losses["loss_box_reg"]) == pytest.approx(0.0, abs=1e-6)
    shifted = truth + torch.tensor([[4.0, 0.0, 4.0, 0.0]])  # IoU 16/24 with the truth
    _, losses = heads(features, [shifted], [(48, 48)],
                      [{"boxes": truth, "labels": torch.tensor([1])}])
    # proposals: the shifted box (loss 1 - 2/3) and the truth (0), averaged over both
    assert float(losses["loss_box_reg"]) == pytest.approx((1 - 16 / 24) / 2, abs=1e-4)


def test_anchor_sizes_and_frozen_batchnorm() -> None:
    model = fasterrcnn_small(num_classes=1, anchor_sizes=[[8, 12], [24, 32], [48, 64]],
                             frozen_batchnorm=True)
    assert model.rpn.anchor_generator.sizes == ((8, 12), (24, 32), (48, 64))
    assert model.rpn.head.cls_logits.out_channels == 6  # 2 sizes x 3 ratios
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.backbone.modules())
    with pytest.raises(ConfigError, match="anchor_sizes: this model has 3 feature levels"):
        fasterrcnn_small(anchor_sizes=[16, 32])


def test_bad_arguments_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="in_channels"):
        fasterrcnn_small(in_channels=2)
    with pytest.raises(ConfigError, match="box_loss"):
        fasterrcnn_small(box_loss="l2")
    with pytest.raises(ConfigError, match="num_classes"):
        fasterrcnn_small(num_classes=0)


def test_weights_from_a_checkpoint_file(tmp_path: Path) -> None:
    trained = fasterrcnn_small(num_classes=2, in_channels=1)
    state = {f"model.{k}": v for k, v in trained.state_dict().items()}
    torch.save({"state_dict": state}, tmp_path / "best.ckpt")
    rebuilt = fasterrcnn_small(num_classes=2, in_channels=1, weights=str(tmp_path / "best.ckpt"))
    for key, value in trained.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value), key
    with pytest.raises(WeightsUnavailableError, match="missing.pth: weights file not found"):
        fasterrcnn_small(weights=str(tmp_path / "missing.pth"))


def test_coco_weights_come_from_the_hub_cache_only(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # undone after the test
    with pytest.raises(WeightsUnavailableError, match="not available offline"):
        fasterrcnn_mobilenet_v3_large_fpn(weights="coco")
    coco = fasterrcnn_mobilenet_v3_large_fpn(num_classes=90)  # 91 outputs, like COCO
    path = hub_file(FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1)
    path.parent.mkdir(parents=True)
    torch.save(coco.state_dict(), path)
    model = fasterrcnn_mobilenet_v3_large_fpn(num_classes=1, in_channels=1, weights="coco")
    key = "backbone.body.0.0.weight"
    assert torch.equal(model.state_dict()[key], coco.state_dict()[key])
    assert model.roi_heads.box_predictor.cls_score.out_features == 2  # new head


def test_resnet50_fpn_v2_builds_with_five_levels() -> None:
    model = fasterrcnn_resnet50_fpn_v2(num_classes=2, anchor_sizes=[16, 32, 64, 128, 256])
    assert model.roi_heads.box_predictor.cls_score.out_features == 3
    assert model.rpn.anchor_generator.sizes == ((16,), (32,), (64,), (128,), (256,))

"""A small Faster R-CNN learns to find bright squares on CPU within a few dozen steps."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader
from torchvision.ops import box_iou

from medilab.config import ExperimentConfig
from medilab.data.datamodules.detection import DetectionDataModule, Preprocess, detection_collate
from medilab.models.detection import fasterrcnn_small
from medilab.tasks.detection_metrics import detection_scores
from medilab.tasks.detection_module import (
    DetectionModule,
    predict_files,
    prediction_frame,
    split_predictions,
)


def squares(n: int, rng: np.random.Generator, size: int = 64) -> list[tuple]:
    """Noisy dark images; three of four hold one bright square (12-19 px), the rest none."""
    samples = []
    for i in range(n):
        image = rng.normal(0.2, 0.05, (size, size)).astype(np.float32)
        boxes = []
        if i % 4:
            side = int(rng.integers(12, 20))
            x, y = (int(v) for v in rng.integers(2, size - 2 - side, 2))
            image[y:y + side, x:x + side] = 0.9
            boxes = [[x, y, x + side, y + side]]
        target = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                  "labels": torch.ones(len(boxes), dtype=torch.long),
                  "image_id": torch.tensor(i),
                  "resize": torch.tensor([0.5, 0.5, 0.0, 0.0], dtype=torch.float64)}
        samples.append((torch.from_numpy(image.clip(0, 1))[None], target))
    return samples


def _config() -> ExperimentConfig:
    return ExperimentConfig(
        task="detection", data={"source": "sklearn_digits"}, model={"name": "fasterrcnn_small"},
        optimizer={"name": "adam", "lr": 1e-3},
    )


def test_small_detector_learns_bright_squares(one_torch_thread) -> None:
    L.seed_everything(0, verbose=False)
    rng = np.random.default_rng(0)
    train, val = squares(32, rng), squares(8, rng)
    model = fasterrcnn_small(num_classes=1, in_channels=1, min_size=64, max_size=64)
    module = DetectionModule(_config(), model, classes=["square"], warmup_steps=4)
    trainer = L.Trainer(
        max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        gradient_clip_val=10.0, log_every_n_steps=1,
    )
    loader = DataLoader(train, batch_size=4, shuffle=True, collate_fn=detection_collate)
    trainer.fit(module, loader, DataLoader(val, batch_size=4, collate_fn=detection_collate))
    metrics = trainer.callback_metrics
    assert {"train/loss_classifier", "train/loss_box_reg", "train/loss_objectness",
            "train/loss_rpn_box_reg", "val/map"} <= set(metrics)
    assert float(metrics["val/ap50"]) > 0.5  # 0.77 when written
    assert float(metrics["train/loss"]) < 0.5  # untrained: about 1.8

    batches = trainer.predict(module, DataLoader(val, batch_size=4, collate_fn=detection_collate))
    records = [r for batch in batches for r in batch]
    assert [r["image_id"] for r in records] == list(range(8))
    found = 0
    for record, (_, target) in zip(records, val, strict=True):
        if len(target["boxes"]):
            # predictions come back in "original" pixels: the resize said the input was halved
            top = record["boxes"][:1] / 2
            found += bool(len(top)) and float(box_iou(top, target["boxes"]).max()) >= 0.5
    assert found >= 4  # of the 6 images with a square


def test_warmup_raises_the_learning_rate_linearly(one_torch_thread) -> None:
    model = fasterrcnn_small(num_classes=1, in_channels=1, min_size=32, max_size=32)
    module = DetectionModule(_config(), model, warmup_steps=4, warmup_factor=0.0)
    seen = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, *args) -> None:
            seen.append(trainer.optimizers[0].param_groups[0]["lr"])

    trainer = L.Trainer(max_steps=6, accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[Record()])
    data = squares(6, np.random.default_rng(1), size=32)
    trainer.fit(module, DataLoader(data, batch_size=1, collate_fn=detection_collate))
    assert seen == pytest.approx([0.0, 2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3])


class FixedBox(nn.Module):
    """A stand-in detector: one box at input pixels 16..32 with score 0.9 on every image."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, images):
        return [{"boxes": torch.tensor([[16.0, 16.0, 32.0, 32.0]]),
                 "scores": torch.tensor([0.9]), "labels": torch.tensor([1])} for _ in images]


def test_split_predictions_are_in_original_pixels(tmp_path: Path) -> None:
    rows = []
    for name, boxes in (("hit", [[32, 32, 64, 64]]), ("miss", [[0, 64, 30, 100]]), ("none", [])):
        path = tmp_path / f"{name}.png"
        Image.fromarray(np.zeros((128, 128), np.uint8)).save(path)
        rows.append({"sample_id": name, "image": str(path), "boxes": boxes,
                     "box_labels": ["x"] * len(boxes), "patient_id": "p"})
    manifest = pd.DataFrame(rows)
    module = DetectionDataModule(manifest, pd.DataFrame({"sample_id": manifest["sample_id"],
                                                         "split": "test"}),
                                 prep=Preprocess(size=64), batch_size=2)
    preds, truths, table = split_predictions(FixedBox(), module, "test")
    assert preds[0]["boxes"].tolist() == [[32.0, 32.0, 64.0, 64.0]]  # 64 px input, halved
    assert truths[1]["boxes"].tolist() == [[0, 64, 30, 100]]
    scores = detection_scores(preds, truths, table["patient_id"], num_bootstraps=0)
    assert scores["ap50"]["value"] == pytest.approx(51 / 101)  # 1 of 2 boxes found first
    assert scores["froc@1"]["value"] == pytest.approx(0.5)  # 1 FP per image at most: 2 / 3
    frame = prediction_frame(preds, table["image"], module.classes)
    assert list(frame.columns) == ["image", "label", "score", "x1", "y1", "x2", "y2"]
    assert frame["label"].tolist() == ["x"] * 3
    files = predict_files(FixedBox(), [manifest.at[0, "image"]], Preprocess(size=64), ["x"])
    assert files[["x1", "y1", "x2", "y2"]].to_numpy().tolist() == [[32.0, 32.0, 64.0, 64.0]]


def test_inference_stays_float32_under_bf16_autocast(one_torch_thread) -> None:
    model = fasterrcnn_small(num_classes=1, in_channels=1, min_size=32, max_size=32)
    module = DetectionModule(_config(), model).eval()
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        outputs = module([torch.rand(1, 32, 32)])
    assert outputs[0]["boxes"].dtype == torch.float32

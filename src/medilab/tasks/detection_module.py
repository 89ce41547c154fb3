"""The detection LightningModule: torchvision detectors train on the sum of their losses,
validate with COCO AP (torchmetrics) and predict boxes in original image pixels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from torchmetrics.detection import MeanAveragePrecision

from medilab.config import ExperimentConfig
from medilab.data.datamodules.detection import (
    DetectionDataModule,
    Preprocess,
    boxes_to_original,
    detection_collate,
    prediction_rows,
    prepare_for_prediction,
)
from medilab.tasks.base import BaseModule

PREDICTION_COLUMNS = ["image", "label", "score", "x1", "y1", "x2", "y2"]

Batch = tuple[Sequence[torch.Tensor], Sequence[dict[str, torch.Tensor]] | None]


def _model_targets(targets: Sequence[dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
    """Only what the detector reads (the rest, e.g. ``resize``, stays with the batch)."""
    return [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]


class DetectionModule(BaseModule):
    """Trains on the sum of the detector's losses (each logged as ``train/<name>``, the sum as
    ``train/loss``); logs ``val/map`` (COCO mAP@[.5:.95]) and ``val/ap50`` every epoch, so
    monitor ``val/ap50`` (mode max): torchvision detectors give no validation loss.

    ``warmup_steps`` raises the learning rate linearly from ``warmup_factor`` times its value
    over the first optimiser steps (it should end within the first epoch; the configured
    scheduler steps per epoch).
    """

    def __init__(
        self,
        config: ExperimentConfig,
        model: nn.Module,
        classes: Sequence[str] = ("object",),
        warmup_steps: int = 0,
        warmup_factor: float = 0.001,
    ) -> None:
        super().__init__(config, model)
        self.classes = list(classes)
        self.warmup_steps, self.warmup_factor = warmup_steps, warmup_factor
        self.val_map = MeanAveragePrecision(iou_type="bbox", backend="pycocotools")

    def forward(self, images: Sequence[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Detections (``boxes``, ``scores``, ``labels``) in model-input pixels (eval mode).

        Runs in float32 even under bf16 autocast: bf16 boxes would be rounded to 2-4 pixels
        at 512 px. Training steps keep the configured precision.
        """
        device_type = images[0].device.type if len(images) else "cpu"
        with torch.autocast(device_type, enabled=False):
            return self.model([image.float() for image in images])

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        images, targets = batch
        losses = self.model(list(images), _model_targets(targets))
        loss = sum(losses.values())
        size = len(images)
        for name, value in losses.items():
            self.log(f"train/{name}", value, on_step=False, on_epoch=True, batch_size=size,
                     sync_dist=True)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=size, sync_dist=True)
        return loss

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any,
                       optimizer_closure: Any = None) -> None:
        step = self.trainer.global_step
        for group in optimizer.param_groups:
            if step < self.warmup_steps:
                base = group.setdefault("warmup_base_lr", group["lr"])
                fraction = step / self.warmup_steps
                group["lr"] = base * (self.warmup_factor + (1 - self.warmup_factor) * fraction)
            elif "warmup_base_lr" in group:
                group["lr"] = group.pop("warmup_base_lr")
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        images, targets = batch
        self.val_map.update(self(images), _model_targets(targets))

    def on_validation_epoch_end(self) -> None:
        scores = self.val_map.compute()
        self.log("val/map", scores["map"].float(), prog_bar=False, sync_dist=True)
        self.log("val/ap50", scores["map_50"].float(), prog_bar=True, sync_dist=True)
        self.val_map.reset()

    def predict_step(self, batch: Batch, batch_idx: int) -> list[dict[str, Any]]:
        """One dict per image: ``boxes`` (in original pixels when the targets carry ``resize``
        and ``orig_size``), ``scores``, ``labels`` (1..C) and ``image_id`` when known."""
        images, targets = batch
        outputs = self(images)
        records = []
        for i, output in enumerate(outputs):
            record = {k: output[k].detach().cpu() for k in ("boxes", "scores", "labels")}
            target = targets[i] if targets is not None else {}
            if "resize" in target:
                shape = tuple(target["orig_size"].tolist()) if "orig_size" in target else None
                mapped = boxes_to_original(record["boxes"], target["resize"].tolist(), shape)
                record["boxes"] = torch.as_tensor(mapped, dtype=torch.float32)
            if "image_id" in target:
                record["image_id"] = int(target["image_id"])
            records.append(record)
        return records


@torch.inference_mode()
def split_predictions(
    model: nn.Module, datamodule: DetectionDataModule, split: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], pd.DataFrame]:
    """Predictions and ground truth of one split, both in original pixels, with the split's
    manifest rows (for image names and ``patient_id`` groups); ready for
    :func:`medilab.tasks.detection_metrics.detection_scores`."""
    dataset = datamodule.dataset(split)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=datamodule.batch_size, collate_fn=detection_collate,
        num_workers=datamodule.num_workers,
        pin_memory=datamodule.pin_memory,
    )
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    preds: list[dict[str, Any]] = []
    for images, targets in loader:
        outputs = model([image.to(device) for image in images])
        for output, target in zip(outputs, targets, strict=True):
            boxes = boxes_to_original(output["boxes"], target["resize"].tolist(),
                                      tuple(target["orig_size"].tolist()))
            preds.append({"boxes": boxes, "scores": output["scores"].cpu().numpy(),
                          "labels": output["labels"].cpu().numpy()})
    model.train(was_training)
    truths = [{"boxes": b, "labels": lab}
              for b, lab in zip(dataset.boxes, dataset.labels, strict=True)]
    return preds, truths, dataset.manifest


def prediction_frame(
    preds: Sequence[dict[str, Any]], images: Sequence[str], classes: Sequence[str]
) -> pd.DataFrame:
    """The predictions CSV body: one row per box, ``image, label, score, x1, y1, x2, y2``
    (boxes already in original pixels, as :func:`split_predictions` gives them)."""
    rows = []
    for name, pred in zip(images, preds, strict=True):
        output = {k: torch.as_tensor(pred[k]) for k in ("boxes", "scores", "labels")}
        rows += prediction_rows(name, output, [1.0, 1.0, 0.0, 0.0], classes)
    return pd.DataFrame(rows, columns=PREDICTION_COLUMNS)


@torch.inference_mode()
def predict_files(
    model: nn.Module, files: Sequence[str | Path], prep: Preprocess, classes: Sequence[str]
) -> pd.DataFrame:
    """Detect boxes in new image files (preprocessed as in training) → prediction rows in
    original pixels; an image without detections adds no row."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    rows = []
    for path in files:
        tensor, info = prepare_for_prediction(path, prep)
        output = {k: v.cpu() for k, v in model([tensor.to(device)])[0].items()}
        rows += prediction_rows(str(path), output, info, classes, info.in_shape)
    model.train(was_training)
    return pd.DataFrame(rows, columns=PREDICTION_COLUMNS)

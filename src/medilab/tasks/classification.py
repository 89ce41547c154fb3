"""Image classification: LightningModule, evaluation with intervals, predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
import torchmetrics
from torch import nn

from medilab.config import ExperimentConfig
from medilab.data import classification as classification_data
from medilab.data.array_datamodule import ArrayClassificationDataModule, ArrayImageDataset
from medilab.errors import InputFileError
from medilab.io.atomic import write_csv
from medilab.models import create_model
from medilab.tasks.base import BaseModule, TaskFamily
from medilab.tasks.metrics import MetricFactory, metric_table


class ClassificationModule(BaseModule):
    """Cross-entropy training; logs loss, accuracy and macro-F1 (and AUROC) per epoch."""

    def __init__(
        self,
        config: ExperimentConfig,
        model: nn.Module,
        num_classes: int,
        input_shape: tuple[int, ...],
    ) -> None:
        super().__init__(config, model)
        self.num_classes = num_classes
        self.input_shape = tuple(input_shape)
        weights = config.loss.class_weights
        self.loss_fn = nn.CrossEntropyLoss(
            weight=torch.tensor(weights, dtype=torch.float32) if weights else None,
            label_smoothing=config.loss.label_smoothing,
        )
        metrics = torchmetrics.MetricCollection(
            {
                "accuracy": torchmetrics.Accuracy("multiclass", num_classes=num_classes),
                "f1_macro": torchmetrics.F1Score(
                    "multiclass", num_classes=num_classes, average="macro"
                ),
            }
        )
        self.val_metrics = metrics.clone(prefix="val/")
        self.train_metrics = metrics.clone(prefix="train/")

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if "covariates" in batch:
            return self.model(batch["image"], batch["covariates"])
        return self.model(batch["image"])

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self(batch)
        loss = self.loss_fn(logits, batch["label"])
        self.train_metrics.update(logits, batch["label"])
        size = len(batch["label"])
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=size, sync_dist=True)
        return loss

    def on_train_epoch_end(self) -> None:
        self.log_dict(self.train_metrics.compute(), sync_dist=True)
        self.train_metrics.reset()

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits = self(batch)
        loss = self.loss_fn(logits, batch["label"])
        self.val_metrics.update(logits, batch["label"])
        size = len(batch["label"])
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, batch_size=size, sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.val_metrics.compute(), prog_bar=True, sync_dist=True)
        self.val_metrics.reset()

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict:
        return {"probs": torch.softmax(self(batch), dim=1), "index": batch["index"]}


def predict_probabilities(module: nn.Module, loader: torch.utils.data.DataLoader) -> np.ndarray:
    """Class probabilities for every sample of ``loader``, in loader order (eval mode, no grad)."""
    module.eval()
    chunks = []
    with torch.inference_mode():
        for batch in loader:
            chunks.append(torch.softmax(module(batch), dim=1).float())
    return torch.cat(chunks).numpy()


def classification_metrics(num_classes: int) -> dict[str, MetricFactory]:
    """The metrics reported in metrics.json for a classifier."""
    task = "binary" if num_classes == 2 else "multiclass"
    factories: dict[str, MetricFactory] = {
        "accuracy": lambda: torchmetrics.Accuracy("multiclass", num_classes=num_classes),
        "f1_macro": lambda: torchmetrics.F1Score(
            "multiclass", num_classes=num_classes, average="macro"
        ),
    }
    if task == "binary":
        factories["auroc"] = lambda: _BinaryFromProbs(torchmetrics.AUROC("binary"))
        factories["sensitivity"] = lambda: _BinaryFromProbs(torchmetrics.Recall("binary"))
        factories["specificity"] = lambda: _BinaryFromProbs(torchmetrics.Specificity("binary"))
    else:
        factories["auroc"] = lambda: torchmetrics.AUROC("multiclass", num_classes=num_classes)
    return factories


class _BinaryFromProbs(torchmetrics.Metric):
    """Feeds the positive-class column of (N, 2) probabilities to a binary metric."""

    full_state_update = False

    def __init__(self, metric: torchmetrics.Metric) -> None:
        super().__init__()
        self.metric = metric

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        self.metric.update(preds[:, 1], target)

    def compute(self) -> torch.Tensor:
        return self.metric.compute()

    def reset(self) -> None:
        super().reset()
        self.metric.reset()


def prediction_frame(
    sample_ids: list[str], probs: np.ndarray, labels: np.ndarray | None
) -> pd.DataFrame:
    """``sample_id, [label], prediction, prob_0..prob_{K-1}``."""
    frame = pd.DataFrame({"sample_id": sample_ids})
    if labels is not None:
        frame["label"] = labels
    frame["prediction"] = probs.argmax(axis=1)
    for k in range(probs.shape[1]):
        frame[f"prob_{k}"] = probs[:, k].round(6)
    return frame


def write_submission(
    module: BaseModule, config: ExperimentConfig, inputs: Path, out: Path
) -> Path:
    """Kaggle submission ``ImageId,Label`` (ImageId from 1) for an unlabelled pixel CSV."""
    arrays = classification_data.read_unlabelled(config, inputs)
    assert isinstance(module, ClassificationModule)
    expected = module.input_shape
    if arrays.image_shape != expected:
        raise InputFileError(
            inputs,
            f"images are {arrays.image_shape[1]}x{arrays.image_shape[2]} pixels, "
            f"the model was trained on {expected[1]}x{expected[2]}",
        )
    dataset = ArrayImageDataset(arrays.images, None, np.arange(len(arrays.images)))
    loader = torch.utils.data.DataLoader(dataset, batch_size=256)
    predictions = predict_probabilities(module, loader).argmax(axis=1)
    frame = pd.DataFrame({"ImageId": np.arange(1, len(predictions) + 1), "Label": predictions})
    return write_csv(frame, out)


class ClassificationFamily(TaskFamily):
    """Classification of whole images (digits and medical images)."""

    name = "classification"

    def build_datamodule(
        self, config: ExperimentConfig, splits: pd.DataFrame | None
    ) -> ArrayClassificationDataModule:
        return classification_data.build_datamodule(config, splits)

    def model_args(self, config: ExperimentConfig, datamodule: L.LightningDataModule) -> dict:
        assert isinstance(datamodule, ArrayClassificationDataModule)
        args = {
            "in_channels": datamodule.in_channels,
            "num_classes": datamodule.num_classes,
            "image_size": list(datamodule.image_size),
        }
        return {**args, **config.model.kwargs}

    def build_module(self, config: ExperimentConfig, model_args: dict) -> ClassificationModule:
        model = create_model(config.model.name, **model_args)
        return ClassificationModule(
            config,
            model,
            num_classes=int(model_args["num_classes"]),
            input_shape=(model_args["in_channels"], *model_args["image_size"]),
        )

    def evaluate(
        self, module: BaseModule, datamodule: L.LightningDataModule, config: ExperimentConfig,
        run_dir: Path,
    ) -> dict[str, Any]:
        assert isinstance(datamodule, ArrayClassificationDataModule)
        assert isinstance(module, ClassificationModule)
        splits_out: dict[str, Any] = {}
        counts: dict[str, int] = {}
        for split in datamodule.split_names:
            if split == "train":
                continue
            probs = predict_probabilities(module, datamodule.loader(split))
            labels = datamodule.labels(split)
            write_csv(
                prediction_frame(datamodule.sample_ids(split), probs, labels),
                run_dir / f"predictions_{split}.csv",
            )
            splits_out[split] = metric_table(
                classification_metrics(module.num_classes),
                torch.from_numpy(probs),
                torch.from_numpy(labels),
                num_bootstraps=config.evaluation.bootstrap_samples,
                confidence=config.evaluation.confidence,
                seed=config.seed,
            )
            counts[split] = len(labels)
        return {
            "splits": splits_out,
            "n": counts,
            "class_names": [str(k) for k in range(module.num_classes)],
        }

    def predict(
        self, module: BaseModule, config: ExperimentConfig, inputs: Path, out: Path,
        **options: Any,
    ) -> Path:
        return write_submission(module, config, inputs, out)

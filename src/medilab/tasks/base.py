"""What every task family shares: optimiser/scheduler from config, and the family interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
import torch
from torch import nn

from medilab.config import ExperimentConfig, OptimizerConfig, SchedulerConfig


def build_optimizer(params: Any, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD (with momentum and optional Nesterov) from config."""
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(
        params,
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
        weight_decay=cfg.weight_decay,
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: SchedulerConfig, max_epochs: int, monitor: str,
    monitor_mode: str,
) -> dict[str, Any] | None:
    """A Lightning lr-scheduler dict (stepped once per epoch), or None."""
    if cfg.name == "none":
        return None
    if cfg.name == "plateau":
        scheduler: Any = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=monitor_mode, factor=cfg.factor, patience=cfg.patience,
            min_lr=cfg.min_lr,
        )
        return {"scheduler": scheduler, "monitor": monitor, "interval": "epoch"}
    if cfg.name == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max_epochs, eta_min=cfg.min_lr
        )
    else:
        scheduler = torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=cfg.step_size, gamma=cfg.factor
        )
    return {"scheduler": scheduler, "interval": "epoch"}


class BaseModule(L.LightningModule):
    """A LightningModule holding ``model``, with optimiser and scheduler taken from ``config``."""

    def __init__(self, config: ExperimentConfig, model: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.model = model

    def configure_optimizers(self) -> Any:
        optimizer = build_optimizer(
            [p for p in self.parameters() if p.requires_grad], self.config.optimizer
        )
        trainer_cfg = self.config.trainer
        scheduler = build_scheduler(
            optimizer, self.config.scheduler, trainer_cfg.max_epochs, trainer_cfg.monitor,
            trainer_cfg.monitor_mode,
        )
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


class TaskFamily(ABC):
    """One family of tasks (classification, segmentation, detection): data, model, evaluation.

    The engine calls these in order: ``build_datamodule`` → ``model_args`` (saved beside the
    checkpoints, so prediction needs no training data) → ``build_module`` → fit →
    ``evaluate`` / ``predict``.
    """

    name: str

    @abstractmethod
    def build_datamodule(
        self, config: ExperimentConfig, splits: pd.DataFrame | None
    ) -> L.LightningDataModule:
        """The data, split by ``splits`` when given, else split anew (``datamodule.splits``)."""

    @abstractmethod
    def model_args(self, config: ExperimentConfig, datamodule: L.LightningDataModule) -> dict:
        """Keyword arguments for ``create_model`` (config kwargs plus what the data implies)."""

    @abstractmethod
    def build_module(self, config: ExperimentConfig, model_args: dict) -> BaseModule:
        """The LightningModule with a freshly built model."""

    @abstractmethod
    def evaluate(
        self, module: BaseModule, datamodule: L.LightningDataModule, config: ExperimentConfig,
        run_dir: Path,
    ) -> dict[str, Any]:
        """Write ``predictions_<split>.csv`` (and task plots); return the metrics.json body."""

    @abstractmethod
    def predict(
        self, module: BaseModule, config: ExperimentConfig, inputs: Path, out: Path,
        **options: Any,
    ) -> Path:
        """Predict for new inputs and write them to ``out``; return the path written."""

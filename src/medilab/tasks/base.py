"""What every task family shares: optimiser/scheduler from config, the family interface and
the one evaluation loop."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import pandas as pd
import torch
from pydantic import BaseModel
from torch import nn

from medilab.config import ExperimentConfig, OptimizerConfig, SchedulerConfig
from medilab.errors import MedilabError
from medilab.io.atomic import write_csv


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
        scheduler = ReplannableCosine(optimizer, horizon=max_epochs, eta_min=cfg.min_lr)
    else:
        scheduler = torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=cfg.step_size, gamma=cfg.factor
        )
    return {"scheduler": scheduler, "interval": "epoch"}


class ReplannableCosine(torch.optim.lr_scheduler.LRScheduler):
    """Cosine decay, per epoch, from the learning rate at ``start_epoch`` to ``eta_min`` at
    ``horizon``. On resume with a new ``max_epochs`` the decay is re-planned from the current
    rate to the new horizon (:meth:`replan`), so the rate never rises again."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, horizon: int, eta_min: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        self.horizon, self.eta_min, self.start_epoch = horizon, eta_min, 0
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        span = max(1, self.horizon - self.start_epoch)
        t = min(max(self.last_epoch - self.start_epoch, 0), span)
        factor = (1 + math.cos(math.pi * t / span)) / 2
        return [self.eta_min + (base - self.eta_min) * factor for base in self.base_lrs]

    def replan(self, horizon: int) -> None:
        """Decay to ``eta_min`` at epoch ``horizon`` instead, continuing from the rate of the
        last trained epoch (so a finished decay does not leave the new epochs at ``eta_min``)."""
        if horizon == self.horizon:
            return
        last_trained = max(self.last_epoch - 1, self.start_epoch)
        span = max(1, self.horizon - self.start_epoch)
        t = min(max(last_trained - self.start_epoch, 0), span)
        factor = (1 + math.cos(math.pi * t / span)) / 2
        self.base_lrs = [self.eta_min + (base - self.eta_min) * factor for base in self.base_lrs]
        self.start_epoch, self.horizon = last_trained, horizon
        for group, rate in zip(self.optimizer.param_groups, self.get_lr(), strict=True):
            group["lr"] = rate
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]


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

    def on_train_start(self) -> None:
        """After a resume, re-plan a cosine decay to this run's ``max_epochs``."""
        for scheduler_config in self.trainer.lr_scheduler_configs:
            if isinstance(scheduler_config.scheduler, ReplannableCosine):
                scheduler_config.scheduler.replan(self.trainer.max_epochs)


class TaskFamily(ABC):
    """One family of tasks (classification, segmentation, detection): model, scoring, outputs.

    The data comes from the configured source (:mod:`medilab.data.sources`). The engine calls
    ``build_datamodule`` → ``model_args`` (saved beside the checkpoints, so prediction needs no
    training data) → ``build_module(for_training=True)`` → fit; a trained run is rebuilt with
    ``build_module(for_training=False)`` (no pretrained weights are looked for) and evaluated by
    :meth:`evaluate`, one loop for every family through ``Trainer.predict`` on the configured
    accelerator and precision. A family says only how to score one split
    (:meth:`score_split`) and how to predict new inputs (:meth:`predict`).
    """

    name: ClassVar[str]
    # What the rest of medilab asks a family instead of testing its name:
    # study summary and CLI lines; the last one is the headline (marked best on study pages)
    summary_metrics: ClassVar[tuple[str, ...]] = ()
    # per-split plots the report draws from predictions_<split>.csv (names of reports.plots
    # drawers: confusion_matrix, f1_per_class, roc, calibration, scores)
    report_plots: ClassVar[tuple[str, ...]] = ()
    overlay_legend: ClassVar[str] = ""  # what the colours of its overlay images mean
    # dotted config keys it ignores: left out of the report's config summary, and a warning
    # when a config sets one to other than its default
    unused_config_keys: ClassVar[tuple[str, ...]] = ()
    # export: "per_sample" (class probabilities), "dense" (per-pixel, any spatial size) or
    # "" (refused, saying ``export_refusal``)
    export_kind: ClassVar[str] = ""
    export_refusal: ClassVar[str] = "cannot be exported"
    onnx_predict: ClassVar[bool] = False  # predict --engine onnxruntime
    # top-level config sections this family owns (name → pydantic model; defaulted when
    # absent, an unknown key under any other task), and deprecated dotted keys moved into them
    # on load (old → new, e.g. ``data.roi_size`` → ``inference.roi_size``)
    config_sections: ClassVar[dict[str, type[BaseModel]]] = {}
    moved_config_keys: ClassVar[dict[str, str]] = {}
    # whether evaluate / predict honour ``evaluation.tta`` (test-time augmentation)
    supports_tta: ClassVar[bool] = False

    @classmethod
    def check_config(cls, config: ExperimentConfig) -> None:
        """Rules across sections, run after validation; a ValueError names the field."""
        return None

    def build_datamodule(
        self, config: ExperimentConfig, splits: pd.DataFrame | None
    ) -> L.LightningDataModule:
        """The configured source's data, split by ``splits`` when given, else split anew."""
        from medilab.data.sources.base import get_source

        return get_source(config.data.source).build_datamodule(config, splits)

    @abstractmethod
    def model_args(self, config: ExperimentConfig, datamodule: L.LightningDataModule) -> dict:
        """Keyword arguments for ``create_model`` (config kwargs plus what the data implies)."""

    @abstractmethod
    def build_module(
        self, config: ExperimentConfig, model_args: dict, *, for_training: bool
    ) -> BaseModule:
        """The LightningModule with a fresh model. ``for_training=False`` rebuilds a trained
        model whose weights come from a checkpoint: pretrained weights are not loaded."""

    def held_out_splits(self, datamodule: L.LightningDataModule) -> list[str]:
        """The splits evaluation scores: every split but ``train``."""
        names = dict.fromkeys(datamodule.splits["split"].astype(str))
        return [s for s in names if s != "train"]

    @abstractmethod
    def prediction_loader(
        self, datamodule: L.LightningDataModule, split: str
    ) -> torch.utils.data.DataLoader:
        """The samples of ``split`` in a fixed order, for ``Trainer.predict``."""

    @abstractmethod
    def score_split(
        self, module: BaseModule, datamodule: L.LightningDataModule, split: str,
        outputs: list[Any], config: ExperimentConfig, run_dir: Path,
    ) -> tuple[pd.DataFrame, dict[str, Any]]:
        """(``predictions_<split>.csv`` rows, ``{metric: {value, low, high}}``) from the
        module's ``predict_step`` outputs; may write task plots under ``run_dir``."""

    def summary(
        self, module: BaseModule, datamodule: L.LightningDataModule, config: ExperimentConfig
    ) -> dict[str, Any]:
        """Extra top-level metrics.json entries (class names, notes, ...)."""
        return {}

    def fitted_state(self, module: BaseModule) -> dict[str, Any]:
        """What :meth:`evaluate` fitted on val and the deployed model uses (temperature,
        threshold, fusion weights; saved in the run folder's ``fitted.json``)."""
        return {}

    def apply_fitted(self, module: BaseModule, state: dict[str, Any]) -> None:
        """Put a saved :meth:`fitted_state` back into a rebuilt module (nothing by default)."""
        return None

    def split_size(
        self, datamodule: L.LightningDataModule, split: str, frame: pd.DataFrame
    ) -> int:
        """The number of scored samples of ``split`` (``n`` in metrics.json): one per
        prediction row unless the family's rows are finer (detection: boxes)."""
        return len(frame)

    def evaluate(
        self, module: BaseModule, datamodule: L.LightningDataModule, config: ExperimentConfig,
        run_dir: Path, trainer: L.Trainer,
    ) -> dict[str, Any]:
        """Score every held-out split: write ``predictions_<split>.csv``; return the metrics.json
        body (``splits``, ``n`` and the family's :meth:`summary`)."""
        scores: dict[str, Any] = {}
        counts: dict[str, int] = {}
        for split in self.held_out_splits(datamodule):
            outputs = trainer.predict(module, dataloaders=self.prediction_loader(datamodule, split))
            check_finite_outputs(outputs or [], split)
            frame, metrics = self.score_split(module, datamodule, split, outputs or [], config,
                                              run_dir)
            write_csv(frame, run_dir / f"predictions_{split}.csv")
            scores[split], counts[split] = metrics, self.split_size(datamodule, split, frame)
        return {"splits": scores, "n": counts, **self.summary(module, datamodule, config)}

    @abstractmethod
    def predict(
        self, module: BaseModule, config: ExperimentConfig, inputs: Path, out: Path,
        trainer: L.Trainer, **options: Any,
    ) -> Path:
        """Predict for new inputs and write them to ``out``; return the path written."""

    def explain(
        self, module: BaseModule, config: ExperimentConfig, inputs: Path, out: Path,
        method: str, **options: Any,
    ) -> list[Path]:
        """CAM overlays of ``inputs`` in the folder ``out``; families without CAMs refuse."""
        from medilab.errors import MedilabError

        raise MedilabError(f"explain: task {self.name!r} has no CAM explanations")


def _tensors(value: Any) -> list[torch.Tensor]:
    """Every floating-point tensor inside a predict output (tensors, dicts, lists, tuples)."""
    if isinstance(value, torch.Tensor):
        return [value] if value.is_floating_point() else []
    if isinstance(value, dict):
        return [t for item in value.values() for t in _tensors(item)]
    if isinstance(value, list | tuple):
        return [t for item in value for t in _tensors(item)]
    return []


def check_finite_outputs(outputs: list[Any], split: str) -> None:
    """Refuse, in one line, model outputs with NaN or infinite values (a diverged model):
    no metric or plot can be computed from them."""
    bad = sum(1 for batch in outputs if any(not bool(torch.isfinite(t).all())
                                            for t in _tensors(batch)))
    if bad:
        raise MedilabError(
            f"{split}: the model's outputs are NaN or infinite in {bad} of {len(outputs)} "
            "batches (training diverged): retrain with a lower optimizer.lr, "
            "trainer.gradient_clip_val or trainer.precision=32-true")

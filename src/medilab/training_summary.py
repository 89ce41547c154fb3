"""What a user reads when training ends: one line per epoch without a terminal, and a summary
(epochs run, best epoch, why training stopped, the monitored metric)."""

from __future__ import annotations

import math
import time
from typing import Any

import lightning as L
import pandas as pd
from lightning.pytorch import callbacks as cb

from medilab.config import ExperimentConfig

PROGRESS_EVERY_S = 30.0  # off a terminal: a progress line inside a long epoch at most this often


class EpochLines(cb.Callback):
    """Off a terminal (logs, CI): a start banner (samples and batches per split, device,
    precision), one line per finished epoch with that epoch's train and val metrics, and a
    progress line at most every :data:`PROGRESS_EVERY_S` seconds inside a long epoch.

    An epoch's line is printed once all of its metrics are logged: when the next epoch starts,
    or when training ends (the module logs its epoch metrics after the callbacks' epoch-end
    hooks, so printing there would show the previous epoch's values).
    """

    def __init__(self) -> None:
        self.finished: int | None = None  # the 1-based epoch whose line is due
        self.last_line = 0.0
        self.epoch_start = 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            print(start_banner(trainer), flush=True)
        self.last_line = time.monotonic()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.print_finished(trainer)
        self.epoch_start = time.monotonic()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.finished = trainer.current_epoch + 1

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.print_finished(trainer)

    def print_finished(self, trainer: L.Trainer) -> None:
        if self.finished is None or not trainer.is_global_zero:
            return
        shown = {k: float(v) for k, v in trainer.callback_metrics.items()
                 if k.startswith(("train/", "val/")) and v.numel() == 1}
        values = "  ".join(f"{k} {v:.4f}" for k, v in sorted(shown.items()))
        seconds = time.monotonic() - self.epoch_start
        print(f"epoch {self.finished}/{trainer.max_epochs}  {values}  ({seconds:.0f} s)",
              flush=True)
        self.finished = None
        self.last_line = time.monotonic()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        self.progress(trainer, f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}: "
                      f"training batch {batch_idx + 1}/{_count(trainer.num_training_batches)}")

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                                outputs: Any, batch: Any, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        if not trainer.sanity_checking:
            total = _count(sum(trainer.num_val_batches))
            self.progress(trainer, f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}: "
                          f"validation batch {batch_idx + 1}/{total}")

    def progress(self, trainer: L.Trainer, text: str) -> None:
        now = time.monotonic()
        if trainer.is_global_zero and now - self.last_line >= PROGRESS_EVERY_S:
            print(f"{text} ({now - self.epoch_start:.0f} s into the epoch)", flush=True)
            self.last_line = now


class PredictLines(cb.Callback):
    """Evaluation and prediction: a progress line at most every :data:`PROGRESS_EVERY_S`
    seconds (scoring a large split on a CPU takes minutes)."""

    def __init__(self, what: str = "scoring") -> None:
        self.what = what
        self.start = self.last_line = 0.0

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = self.last_line = time.monotonic()

    def on_predict_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                             outputs: Any, batch: Any, batch_idx: int,
                             dataloader_idx: int = 0) -> None:
        now = time.monotonic()
        if now - self.last_line >= PROGRESS_EVERY_S:
            total = _count(sum(trainer.num_predict_batches))
            print(f"{self.what}: batch {batch_idx + 1}/{total} ({now - self.start:.0f} s)",
                  flush=True)
            self.last_line = now


def start_banner(trainer: L.Trainer) -> str:
    """``training: N train / M val samples (B / V batches per epoch), device, precision``."""
    def samples(loader: Any) -> str:
        dataset = getattr(loader, "dataset", None)
        try:
            return str(len(dataset)) if dataset is not None else "?"
        except TypeError:
            return "?"

    val = trainer.val_dataloaders
    val_loader = val[0] if isinstance(val, list | tuple) and val else val
    return (f"training: {samples(trainer.train_dataloader)} train / {samples(val_loader)} val "
            f"samples ({_count(trainer.num_training_batches)} / "
            f"{_count(sum(trainer.num_val_batches))} batches per epoch), "
            f"{trainer.max_epochs} epochs, device {trainer.strategy.root_device}, "
            f"precision {trainer.precision}")


def _count(value: float) -> str:
    return str(int(value)) if math.isfinite(value) else "?"


def training_summary(
    trainer: L.Trainer, config: ExperimentConfig, curves: pd.DataFrame | None
) -> dict[str, Any]:
    """``epochs_run``, ``best_epoch`` (1-based), ``best_score``, ``monitor``, ``stop_reason``."""
    tcfg = config.trainer
    epochs_run = int(trainer.current_epoch)
    summary: dict[str, Any] = {"epochs_run": epochs_run, "max_epochs": tcfg.max_epochs,
                               "monitor": tcfg.monitor, "monitor_mode": tcfg.monitor_mode}
    if curves is not None and tcfg.monitor in curves.columns and "epoch" in curves.columns:
        series = curves.dropna(subset=[tcfg.monitor])
        if len(series):
            pick = series[tcfg.monitor].idxmax() if tcfg.monitor_mode == "max" \
                else series[tcfg.monitor].idxmin()
            summary["best_epoch"] = int(series.loc[pick, "epoch"]) + 1
            summary["best_score"] = float(series.loc[pick, tcfg.monitor])
    summary["stop_reason"] = stop_reason(trainer, config)
    return summary


def stop_reason(trainer: L.Trainer, config: ExperimentConfig) -> str:
    """Why fitting ended: early stopping, the time limit, or max_epochs."""
    for callback in trainer.callbacks:
        if isinstance(callback, cb.EarlyStopping) and callback.stopped_epoch > 0:
            return (f"early stopping: {callback.monitor} did not improve for "
                    f"{callback.patience} epochs")
    if trainer.current_epoch >= config.trainer.max_epochs:
        return "max_epochs reached"
    if config.trainer.max_time:
        return f"time limit {config.trainer.max_time} reached"
    return "stopped"


def summary_lines(summary: dict[str, Any], report: str | None = None) -> list[str]:
    """The summary as a few lines for the terminal."""
    lines = [f"epochs run: {summary.get('epochs_run')} of {summary.get('max_epochs')} "
             f"({summary.get('stop_reason')})"]
    score = summary.get("best_score")
    if score is not None and math.isfinite(score):
        lines.append(f"best epoch: {summary.get('best_epoch')} "
                     f"({summary.get('monitor')} {score:.4f})")
    if summary.get("next"):
        lines.append(str(summary["next"]))
    if report:
        lines.append(f"report: {report}")
    return lines


ENVIRONMENT_PACKAGES = ("torch", "lightning", "torchvision", "torchmetrics", "monai", "timm")


def run_environment(trainer: L.Trainer) -> dict[str, Any]:
    """Where and with what the run trained (for status.json and the model card): medilab and
    library versions, Python, the device and its name, the CPU model and the device count."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    import torch

    from medilab.version import package_version

    versions = {"medilab": package_version(), "python": platform.python_version()}
    for name in ENVIRONMENT_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    device = trainer.strategy.root_device
    name = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else _cpu_model() or platform.machine())
    return {"versions": versions, "device": str(device), "device_name": name,
            "devices": int(trainer.num_devices) * int(trainer.num_nodes),
            "platform": platform.platform(terse=True)}


def _cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (Linux), else None."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None

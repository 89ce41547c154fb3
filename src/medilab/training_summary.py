"""What a user reads when training ends: one line per epoch without a terminal, and a summary
(epochs run, best epoch, why training stopped, the monitored metric)."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import pandas as pd
from lightning.pytorch import callbacks as cb

from medilab.config import ExperimentConfig


class EpochLines(cb.Callback):
    """Print one line per epoch (for logs and CI, where a progress bar wraps into many)."""

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        shown = {k: float(v) for k, v in trainer.callback_metrics.items()
                 if k.startswith(("train/", "val/")) and v.numel() == 1}
        values = "  ".join(f"{k} {v:.4f}" for k, v in sorted(shown.items()))
        print(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}  {values}", flush=True)


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

"""The engine: run folders, the Lightning Trainer from config, train / evaluate / predict."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
import torch
from lightning.pytorch import callbacks as cb
from lightning.pytorch import loggers
from lightning.pytorch.utilities import rank_zero_only

from medilab.config import (
    ExperimentConfig,
    apply_overrides,
    config_to_yaml,
    load_config,
    read_yaml,
    validate_config,
)
from medilab.data.splits import load_splits
from medilab.errors import InputFileError, MedilabError
from medilab.io.atomic import write_text
from medilab.tasks.base import BaseModule, TaskFamily
from medilab.tasks.registry import get_task_family

# The run folder holds config.yaml and splits.csv before Lightning writes into it: not a problem.
warnings.filterwarnings("ignore", message=r".*exists and is not empty")

CONFIG_FILE = "config.yaml"
SPLITS_FILE = "splits.csv"
MODEL_ARGS_FILE = "checkpoints/model.json"
CURVES_FILE = "metrics.csv"
ENSEMBLE_FILE = "ensemble.json"
RUN_DIR_ENV = "MEDILAB_RUN_DIR"


def default_run_dir(config: ExperimentConfig, root: Path = Path("runs")) -> Path:
    """``runs/<experiment>/<timestamp>``."""
    stamp = dt.datetime.now().strftime("%Y-%m-%dT%H-%M-%S")
    candidate = root / config.experiment / stamp
    number = 1
    while candidate.exists():  # two runs started within the same second
        number += 1
        candidate = root / config.experiment / f"{stamp}-{number}"
    return candidate


class ChannelsLast(cb.Callback):
    """Put the model's 4D weights in channels-last layout when fitting starts."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.to(memory_format=torch.channels_last)


def build_trainer(config: ExperimentConfig, run_dir: Path, **overrides: Any) -> L.Trainer:
    """A Trainer with checkpoints (best + last), early stopping, loggers and devices from config."""
    tcfg = config.trainer
    best = cb.ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best",
        monitor=tcfg.monitor,
        mode=tcfg.monitor_mode,
        enable_version_counter=False,
    )
    # every epoch (Lightning's save_last only writes when the best checkpoint changes)
    latest = cb.ModelCheckpoint(
        dirpath=run_dir / "checkpoints", filename="last", enable_version_counter=False
    )
    callbacks: list[cb.Callback] = [best, latest, cb.LearningRateMonitor("epoch")]
    if tcfg.early_stopping.enabled:
        callbacks.append(
            cb.EarlyStopping(
                monitor=tcfg.monitor,
                mode=tcfg.monitor_mode,
                patience=tcfg.early_stopping.patience,
                min_delta=tcfg.early_stopping.min_delta,
            )
        )
    if tcfg.channels_last:
        callbacks.append(ChannelsLast())
    if tcfg.progress_bar:
        callbacks.append(cb.RichProgressBar(leave=True))
    run_loggers: list[loggers.Logger] = [loggers.CSVLogger(run_dir, name="", version="")]
    if tcfg.tensorboard:
        run_loggers.append(loggers.TensorBoardLogger(run_dir, name="tensorboard", version=""))
    options: dict[str, Any] = {
        "default_root_dir": run_dir,
        "max_epochs": tcfg.max_epochs,
        "max_time": tcfg.max_time,
        "accelerator": tcfg.accelerator,
        "devices": tcfg.devices,
        "strategy": tcfg.strategy,
        "num_nodes": tcfg.num_nodes,
        "precision": tcfg.precision,
        "deterministic": "warn" if tcfg.deterministic else False,
        "gradient_clip_val": tcfg.gradient_clip_val,
        "accumulate_grad_batches": tcfg.accumulate_grad_batches,
        "log_every_n_steps": tcfg.log_every_n_steps,
        "callbacks": callbacks,
        "logger": run_loggers,
        "enable_progress_bar": tcfg.progress_bar,
        "enable_model_summary": False,
    }
    if tcfg.limit_train_batches is not None:
        options["limit_train_batches"] = tcfg.limit_train_batches
    if tcfg.limit_val_batches is not None:
        options["limit_val_batches"] = tcfg.limit_val_batches
    options.update(overrides)
    return L.Trainer(**options)


def train(
    config: ExperimentConfig | str | Path,
    overrides: list[str] | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
) -> Path:
    """Train an experiment into a run folder and return the folder.

    With ``resume=True`` the run folder's saved config and split are reused and training continues
    from ``checkpoints/last.ckpt`` (overrides such as ``trainer.max_epochs`` still apply).
    """
    inherited = os.environ.get(RUN_DIR_ENV)  # set for the extra processes of a DDP run
    if resume:
        if run_dir is None:
            raise MedilabError("--resume needs --run-dir: the run folder to continue")
        run_dir = Path(run_dir)
        config = load_run_config(run_dir, overrides)
        last = run_dir / "checkpoints" / "last.ckpt"
        if not last.is_file():
            raise InputFileError(last, "no last checkpoint to resume from")
        splits = load_splits(run_dir / SPLITS_FILE)
    else:
        config = resolve_config(config, overrides)
        run_dir = Path(run_dir or inherited or default_run_dir(config))
        last = None
        splits = load_splits(config.data.splits_csv) if config.data.splits_csv else None

    L.seed_everything(config.seed, workers=True, verbose=False)
    family = get_task_family(config.task)
    # Everything that can fail on bad input happens before the run folder is made.
    datamodule = family.build_datamodule(config, splits)
    model_args = family.model_args(config, datamodule)
    module = family.build_module(config, model_args)

    # DDP re-runs this command in each extra process: they share the first one's run folder.
    launched = inherited == str(run_dir)
    os.environ[RUN_DIR_ENV] = str(run_dir)
    created = not run_dir.exists()
    if not (resume or launched) and run_dir.exists() and any(run_dir.iterdir()):
        raise MedilabError(f"{run_dir}: run folder exists and is not empty (use --resume)")
    earlier_curves = _read_curves(run_dir) if resume else None
    try:
        if not launched:
            _write_run_files(run_dir, config, datamodule.splits, model_args)
        trainer = build_trainer(config, run_dir)
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(last) if last else None)
        if earlier_curves is not None and is_primary_process():
            _prepend_curves(run_dir, earlier_curves)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()  # evaluation runs in one process
    except MedilabError:
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        if not launched:
            os.environ.pop(RUN_DIR_ENV, None)
    return run_dir


def resolve_config(
    config: ExperimentConfig | str | Path, overrides: list[str] | None = None
) -> ExperimentConfig:
    """A validated config from a YAML path or a config object, with ``overrides`` applied."""
    if not isinstance(config, ExperimentConfig):
        return load_config(config, overrides)
    if overrides:
        return validate_config(apply_overrides(config.model_dump(mode="json"), overrides), "config")
    return config


def is_primary_process() -> bool:
    """False in the extra processes of a multi-process (DDP) run."""
    return rank_zero_only.rank == 0


def evaluate(run_dir: str | Path, checkpoint: str = "best") -> dict[str, Any]:
    """Evaluate a run's checkpoint on its held-out splits; writes metrics.json and predictions."""
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    family = get_task_family(config.task)
    datamodule = family.build_datamodule(config, load_splits(run_dir / SPLITS_FILE))
    module = load_module(run_dir, family, config, checkpoint)
    body = family.evaluate(module, datamodule, config, run_dir)
    metrics = {
        "experiment": config.experiment,
        "task": config.task,
        "model": config.model.name,
        "checkpoint": checkpoint,
        "confidence": config.evaluation.confidence,
        **body,
    }
    write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics


def predict(
    run_dir: str | Path, inputs: str | Path, out: str | Path, checkpoint: str = "best",
    **options: Any,
) -> Path:
    """Predict new inputs with a trained run; the task decides the output format."""
    run_dir = Path(run_dir)
    inputs = Path(inputs)
    if not inputs.exists():
        raise InputFileError(inputs, "not found")
    config = load_run_config(run_dir)
    family = get_task_family(config.task)
    module = load_module(run_dir, family, config, checkpoint)
    return family.predict(module, config, inputs, Path(out), **options)


def load_run_config(run_dir: Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """The resolved config saved in a run folder."""
    path = run_dir / CONFIG_FILE
    if not run_dir.is_dir():
        raise InputFileError(run_dir, "run folder not found")
    raw = read_yaml(path)
    return validate_config(apply_overrides(raw, overrides or []), str(path))


def read_model_args(run_dir: Path) -> dict[str, Any]:
    """The resolved model arguments the run was trained with (checkpoints/model.json)."""
    path = run_dir / MODEL_ARGS_FILE
    if not path.is_file():
        raise InputFileError(path, "missing: is this a medilab run folder?")
    return json.loads(path.read_text(encoding="utf-8"))["kwargs"]


def load_module(
    run_dir: Path, family: TaskFamily, config: ExperimentConfig, checkpoint: str = "best"
) -> BaseModule:
    """Rebuild the module from the saved model arguments and load the checkpoint's weights
    (for an ensemble folder: every member's, averaged)."""
    if (run_dir / ENSEMBLE_FILE).is_file():
        from medilab.ensemble import load_ensemble_module  # an ensemble is a run of runs

        return load_ensemble_module(run_dir, family, config)
    module = family.build_module(config, read_model_args(run_dir))
    ckpt = run_dir / "checkpoints" / f"{checkpoint}.ckpt"
    if not ckpt.is_file():
        raise InputFileError(ckpt, "checkpoint not found (did training finish an epoch?)")
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling problem is a bad file
        raise InputFileError(ckpt, f"not a readable checkpoint ({type(exc).__name__})") from None
    module.load_state_dict(state["state_dict"])
    module.eval()
    return module


def _read_curves(run_dir: Path) -> pd.DataFrame | None:
    path = run_dir / CURVES_FILE
    return pd.read_csv(path) if path.is_file() else None


def _prepend_curves(run_dir: Path, earlier: pd.DataFrame) -> None:
    """Lightning's CSV logger starts metrics.csv afresh on resume: put the earlier epochs back."""
    latest = _read_curves(run_dir)
    if latest is None or latest.empty:
        return
    first_new_epoch = latest["epoch"].min()
    kept = earlier[earlier["epoch"] < first_new_epoch]
    merged = pd.concat([kept, latest], ignore_index=True)
    write_text(run_dir / CURVES_FILE, merged.to_csv(index=False))


def _write_run_files(
    run_dir: Path, config: ExperimentConfig, splits: pd.DataFrame, model_args: dict
) -> None:
    (run_dir / "plots").mkdir(parents=True, exist_ok=True)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    write_text(run_dir / CONFIG_FILE, config_to_yaml(config))
    write_text(run_dir / SPLITS_FILE, splits.to_csv(index=False))
    saved = {"name": config.model.name, "kwargs": model_args}
    write_text(run_dir / MODEL_ARGS_FILE, json.dumps(saved, indent=2) + "\n")

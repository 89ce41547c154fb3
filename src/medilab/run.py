"""The engine: the Lightning Trainer from config, and train / evaluate / predict entry points."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import time
import warnings
from collections.abc import Generator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch import callbacks as cb
from lightning.pytorch import loggers
from lightning.pytorch.plugins.precision import MixedPrecision
from lightning.pytorch.utilities import rank_zero_only

from medilab.config import (
    ExperimentConfig,
    apply_overrides,
    check_data_paths,
    load_config,
    validate_config,
)
from medilab.data.splits import load_splits
from medilab.data.verify import check_before_training
from medilab.errors import (
    InputFileError,
    MedilabError,
    NonFiniteLossError,
    TrainingFailedError,
    storage_error_line,
)
from medilab.precision import (
    PrecisionChoice,
    choose_precision,
    to_channels_last,
    uses_cuda,
)
from medilab.precision_probe import choice_record, phase_choice
from medilab.runfolder import (
    LOCK_FILE,
    PRECISION_PROBE_FILE,
    SPLITS_FILE,
    acquire_lock,
    checkpoint_path,
    clear_fitted,
    curves_to_resume,
    default_run_dir,
    load_run_config,
    load_run_splits,
    prepend_curves,
    read_logged_rows,
    read_status,
    release_lock,
    split_roles,
    write_fitted,
    write_metrics,
    write_run_files,
    write_status,
)
from medilab.tasks.registry import get_task_family
from medilab.trained import load_module, read_checkpoint_state
from medilab.training_summary import (
    EpochLines,
    PredictLines,
    run_environment,
    training_summary,
)

RUN_DIR_ENV = "MEDILAB_RUN_DIR"
EXTERNAL_LAUNCH_ENV = ("TORCHELASTIC_RUN_ID", "SLURM_NTASKS")


def quiet_lightning(verbose: bool = False) -> None:
    """Keep Lightning's hardware lines, tips and known harmless warnings out of a user's
    terminal unless ``verbose``."""
    if verbose:
        return
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                 "lightning.pytorch.accelerators.cuda", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (r".*exists and is not empty", r".*log_every_n_steps.*",
                    r".*does not have many workers.*", r".*LeafSpec.*", r".*litlogger.*",
                    r".*The number of training batches.*", r".*is not writable.*"):
        warnings.filterwarnings("ignore", message=pattern)


quiet_lightning(os.environ.get("MEDILAB_VERBOSE") == "1")


class ChannelsLast(cb.Callback):
    """Put the model's convolution weights in channels-last layout when fitting or predicting
    starts (:func:`to_channels_last`)."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        to_channels_last(pl_module)

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        to_channels_last(pl_module)


class StopOnNonFiniteLoss(cb.Callback):
    """Stop training at once when a step's loss is NaN or infinite (a diverged run would
    otherwise train on, and checkpoint, garbage for the remaining epochs)."""

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss.detach()).all()):
            raise NonFiniteLossError(
                f"training loss is {loss.detach().float().item()} at epoch "
                f"{trainer.current_epoch + 1}, step {batch_idx + 1} (precision "
                f"{trainer.precision}): lower optimizer.lr, set trainer.gradient_clip_val, "
                "or train with trainer.precision=32-true")


def compile_network(module: L.LightningModule) -> None:
    """``trainer.compile``: the module's network (``module.model``) compiled with torch.compile
    in place, so parameters and state-dict keys stay as they are (no ``_orig_mod.`` prefix) and
    its checkpoints load into an uncompiled model."""
    network = getattr(module, "model", None)
    if not isinstance(network, torch.nn.Module):
        raise MedilabError(f"trainer.compile: {type(module).__name__} has no network to compile")
    network.compile()


class EpochSeeds(cb.Callback):
    """Seed every training epoch from ``(seed, epoch)``: the shuffling order (the training
    loader's generator and the global RNGs), dropout and augmentation then depend only on the
    epoch, so a run resumed from ``last.ckpt`` trains exactly like an uninterrupted one.

    The state for epoch ``e + 1`` is set when epoch ``e`` ends; for the first epoch of a fit
    (0, or the resumed one) when the training loader is made, before Lightning iterates it.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.start_epoch = 0

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """The epoch a resumed fit starts with (Lightning restores its own count later)."""
        try:
            progress = checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]
            self.start_epoch = int(progress["processed"])
        except (KeyError, TypeError, ValueError):
            self.start_epoch = int(checkpoint.get("epoch", -1)) + 1

    def epoch_seed(self, epoch: int) -> int:
        return int(np.random.SeedSequence([self.seed, epoch]).generate_state(1)[0])

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        datamodule = trainer.datamodule
        if stage != "fit" or datamodule is None:
            return
        make_loader = datamodule.train_dataloader

        def seeded_loader() -> Any:
            loader = make_loader()
            self.reseed(trainer, max(trainer.current_epoch, self.start_epoch), loader)
            return loader

        datamodule.train_dataloader = seeded_loader

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.reseed(trainer, trainer.current_epoch + 1, trainer.train_dataloader)

    def reseed(self, trainer: L.Trainer, epoch: int, loaders: Any) -> None:
        seed = self.epoch_seed(epoch)
        L.seed_everything(seed, workers=True, verbose=False)
        for loader in _flatten(loaders):
            if getattr(loader, "generator", None) is not None:
                loader.generator.manual_seed(seed)


def _flatten(loaders: Any) -> list[Any]:
    """The loaders of a loader, or of a list / dict of them."""
    if isinstance(loaders, dict):
        return [x for value in loaders.values() for x in _flatten(value)]
    if isinstance(loaders, list | tuple):
        return [x for value in loaders for x in _flatten(value)]
    return [] if loaders is None else [loaders]


def build_trainer(
    config: ExperimentConfig, run_dir: Path, model: torch.nn.Module | None = None,
    choice: PrecisionChoice | None = None, extra_callbacks: list[cb.Callback] | None = None,
    **overrides: Any,
) -> L.Trainer:
    """A Trainer with checkpoints (best + last), early stopping, loggers and devices from config;
    the precision is ``choice`` (see :func:`precision_choice`) or chosen for ``model`` when given
    (:func:`medilab.precision.choose_precision`). ``extra_callbacks`` join the usual ones (e.g.
    ``medilab tune``'s pruning callback).
    """
    tcfg = config.trainer
    choice = choice or choose_precision(config, model)
    precision, channels_last = choice.precision, choice.channels_last
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
    callbacks: list[cb.Callback] = [best, latest, cb.LearningRateMonitor("epoch"),
                                    EpochSeeds(config.seed), StopOnNonFiniteLoss()]
    if tcfg.early_stopping.enabled:
        callbacks.append(
            cb.EarlyStopping(
                monitor=tcfg.monitor,
                mode=tcfg.monitor_mode,
                patience=tcfg.early_stopping.patience,
                min_delta=tcfg.early_stopping.min_delta,
            )
        )
    if channels_last:
        callbacks.append(ChannelsLast())
    callbacks.extend(extra_callbacks or [])
    if tcfg.freeze_backbone_epochs:
        callbacks.append(cb.BackboneFinetuning(
            unfreeze_backbone_at_epoch=tcfg.freeze_backbone_epochs,
            backbone_initial_ratio_lr=tcfg.backbone_lr_factor, lambda_func=lambda epoch: 1.0,
            should_align=False, train_bn=True))
    bar = tcfg.progress_bar and sys.stdout.isatty()
    if bar:
        callbacks.append(cb.RichProgressBar(leave=True))
    elif tcfg.progress_bar:
        callbacks.append(EpochLines())  # logs and CI: one line per epoch
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
        "precision": precision,
        "sync_batchnorm": tcfg.sync_batchnorm,
        "deterministic": "warn" if tcfg.deterministic else False,
        "gradient_clip_val": tcfg.gradient_clip_val,
        "accumulate_grad_batches": tcfg.accumulate_grad_batches,
        "log_every_n_steps": tcfg.log_every_n_steps,
        "callbacks": callbacks,
        "logger": run_loggers,
        "enable_progress_bar": bar,
        "enable_model_summary": False,
    }
    if tcfg.limit_train_batches is not None:
        options["limit_train_batches"] = tcfg.limit_train_batches
    if tcfg.limit_val_batches is not None:
        options["limit_val_batches"] = tcfg.limit_val_batches
    options.update(overrides)
    return L.Trainer(**options)


def build_inference_trainer(
    config: ExperimentConfig, model: torch.nn.Module | None = None,
    choice: PrecisionChoice | None = None,
) -> L.Trainer:
    """A Trainer for ``Trainer.predict`` on the configured accelerator and precision (``choice``,
    or chosen for ``model`` when given), in one process (every held-out sample is scored exactly
    once). Under mixed precision the weights are cast to the low precision once per ``predict``,
    not per batch (:class:`CastWeightsOnce`)."""
    tcfg = config.trainer
    choice = choice or choose_precision(config, model)
    precision = choice.precision
    callbacks: list[cb.Callback] = [ChannelsLast()] if choice.channels_last else []
    callbacks.append(PredictLines())
    options: dict[str, Any] = {"precision": precision}
    mixed = precision in MIXED_PRECISIONS
    if mixed:
        device = "cuda" if uses_cuda(tcfg.accelerator) else "cpu"
        options = {"plugins": [CachedCastPrecision(precision, device)]}  # type: ignore[arg-type]
        callbacks.append(CastWeightsOnce())
    return L.Trainer(
        accelerator=tcfg.accelerator,
        devices=1,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        inference_mode=not mixed,  # autocast keeps no casts under inference_mode
        **options,
    )


MIXED_PRECISIONS = ("bf16-mixed", "16-mixed")


class CachedCastPrecision(MixedPrecision):
    """Lightning's mixed precision whose prediction steps let autocast keep its casts of the
    weights (Lightning turns autocast's cache off in every step)."""

    @contextlib.contextmanager
    def predict_step_context(self) -> Generator[None, None, None]:
        dtype = torch.bfloat16 if self.precision == "bf16-mixed" else torch.half
        with torch.autocast(self.device, dtype=dtype, cache_enabled=True):
            yield


class CastWeightsOnce(cb.Callback):
    """Keep autocast's casts of the weights for a whole ``predict`` call.

    Through Lightning every prediction batch cast every weight to the low precision again
    (ResNet-50: 63 copies of 25 M parameters per batch, counted with torch.profiler): its
    autocast regions cache nothing, and autocast drops its cache whenever the outermost region
    ends. With :class:`CachedCastPrecision` and an outer, disabled autocast region around the
    predict loop, the weights are cast once per ``predict`` call, with the same numbers.
    Autocast caches nothing under ``inference_mode``, hence ``no_grad`` for mixed precision.
    """

    def __init__(self) -> None:
        self.region: torch.autocast | None = None

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.region = torch.autocast(trainer.strategy.root_device.type, enabled=False)
        self.region.__enter__()

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._leave()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule,
                     exception: BaseException) -> None:
        self._leave()

    def _leave(self) -> None:
        if self.region is not None:
            region, self.region = self.region, None
            region.__exit__(None, None, None)  # the cache is dropped here


def precision_choice(config: ExperimentConfig, phase: str, run_dir: Path,
                     module: L.LightningModule | None = None,
                     loader: Any = None) -> PrecisionChoice:
    """``phase``'s precision and weight layout (:func:`medilab.precision_probe.phase_choice`):
    on a CPU with native bf16 ``auto`` times fp32 against bf16 + channels-last on the first
    batch of ``loader`` (cached in the run folder)."""
    return phase_choice(config, phase, run_dir / PRECISION_PROBE_FILE, module,
                        (lambda: first_batch(loader)) if loader is not None else None)


def first_batch(loader: Any) -> Any:
    """The first samples of a map-style loader's dataset as one batch, made in this process
    (no workers started, no shuffling RNG drawn)."""
    count = min(loader.batch_size or 1, len(loader.dataset))
    return loader.collate_fn([loader.dataset[i] for i in range(count)])


def _val_loader(datamodule: L.LightningDataModule) -> Any:
    """The validation loader (fixed order, no augmentation) for a precision probe, or None."""
    try:
        return datamodule.val_dataloader()
    except Exception:  # noqa: BLE001 - no validation data: no probe
        return None


def train(
    config: ExperimentConfig | str | Path | None,
    overrides: list[str] | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    callbacks: list[cb.Callback] | None = None,
) -> Path:
    """Train an experiment into a run folder and return the folder.

    With ``resume=True`` the run folder's saved config and split are reused and training continues
    from ``checkpoints/last.ckpt`` (overrides such as ``trainer.max_epochs`` still apply); a run
    stopped before its first checkpoint starts again from epoch 0 in the same folder.
    ``callbacks``: Lightning callbacks added to the Trainer's own.
    """
    inherited = os.environ.get(RUN_DIR_ENV)  # set for the extra processes of a DDP run
    if run_dir is None and inherited is None and _externally_launched():
        raise MedilabError("multi-process launch (torchrun / SLURM): give --run-dir on a shared "
                           "file system so every process writes the same run folder")
    if resume:
        if run_dir is None:
            raise MedilabError("--resume needs --run-dir: the run folder to continue")
        run_dir = Path(run_dir)
        config = load_run_config(run_dir, overrides)
        last = checkpoint_path(run_dir, "last")
        splits: pd.DataFrame | None = load_run_splits(run_dir)
        if not last.is_file():
            last = None  # stopped before the first epoch ended: start again in place
        else:
            read_checkpoint_state(last)  # refuses a file carrying pickled code before Lightning
    else:
        if config is None:
            raise MedilabError("give an experiment YAML, or --resume with --run-dir")
        config = resolve_config(config, overrides)
        run_dir = Path(run_dir or inherited or default_run_dir(config))
        last = None
        splits = load_splits(config.data.splits_csv) if config.data.splits_csv else None

    if config.trainer.seeds:
        raise MedilabError(f"trainer.seeds {config.trainer.seeds}: a seed ensemble is trained "
                           "by `medilab train` (medilab.api.train), one run per seed; studies "
                           "and cross-validation train one seed each")
    check_data_paths(config)
    if not resume and is_primary_process():
        check_before_training(config)  # duplicates, labels, leakage, missing files, balance
    L.seed_everything(config.seed, workers=True, verbose=False)
    family = get_task_family(config.task)
    # Everything that can fail on bad input happens before the run folder is made.
    datamodule = family.build_datamodule(config, splits)
    model_args = family.model_args(config, datamodule)
    module = family.build_module(config, model_args, for_training=True)
    if config.trainer.compile:
        compile_network(module)

    # DDP re-runs this command in each extra process (Lightning's launcher passes the folder;
    # under torchrun / SLURM every rank runs it with the same --run-dir): only rank 0 writes.
    launched = inherited == str(run_dir) or (_externally_launched()
                                             and os.environ.get("RANK", "0") != "0")
    os.environ[RUN_DIR_ENV] = str(run_dir)
    created = not run_dir.exists()
    if not launched:
        try:
            acquire_lock(run_dir)  # a second training into this folder is refused
        except BaseException:
            os.environ.pop(RUN_DIR_ENV, None)  # else a later run would pass as a DDP process
            raise
        try:
            if not resume:
                _check_fresh_folder(run_dir)
        except BaseException:
            os.environ.pop(RUN_DIR_ENV, None)
            _release(run_dir, created)
            raise
    earlier_curves = curves_to_resume(run_dir) if resume and last and not launched else None
    primary = is_primary_process()
    try:
        if not launched:  # status first: a folder killed from here on is known as a run
            write_status(run_dir, "running", precision={"configured": config.trainer.precision})
            clear_fitted(run_dir)  # fitted for checkpoints this training replaces
            write_run_files(run_dir, config, datamodule.splits, model_args)
        choice = precision_choice(config, "train", run_dir, module, _val_loader(datamodule))
        if not launched:
            write_status(run_dir, "running", precision=choice_record(config, choice))
        trainer = build_trainer(config, run_dir, module, choice, extra_callbacks=callbacks)
        fit_start = time.monotonic()
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(last) if last else None,
                    weights_only=True)
        fit_seconds = time.monotonic() - fit_start
        if earlier_curves is not None and primary:
            prepend_curves(run_dir, earlier_curves)
        if primary:
            infer = precision_choice(config, "infer", run_dir, module, _val_loader(datamodule))
            _finish_status(run_dir, trainer, config, choice_record(config, choice, infer),
                           fit_seconds)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()  # evaluation runs in one process
    except MedilabError as exc:
        keep = isinstance(exc, TrainingFailedError) or checkpoint_path(run_dir, "last").is_file()
        if created and not keep:  # bad input found before any epoch: nothing worth keeping
            shutil.rmtree(run_dir, ignore_errors=True)
        elif primary and run_dir.is_dir():
            write_status(run_dir, "failed", reason=str(exc))
        raise
    except OSError as exc:  # a full disk or a folder that cannot be written
        if created and not checkpoint_path(run_dir, "last").is_file():
            shutil.rmtree(run_dir, ignore_errors=True)  # the same command can start again
        elif primary and run_dir.is_dir():
            with contextlib.suppress(OSError):  # the disk may refuse this too
                write_status(run_dir, "failed", reason=storage_error_line(exc) or str(exc))
        raise
    except (KeyboardInterrupt, SystemExit) as exc:  # Lightning turns Ctrl-C into exit(1)
        if primary and run_dir.is_dir():
            hint = (f"`medilab train --run-dir {run_dir} --resume` continues from the last "
                    "epoch" if checkpoint_path(run_dir, "last").is_file() else
                    f"no epoch finished: the same command with --run-dir {run_dir} starts again")
            write_status(run_dir, "interrupted", reason="stopped by the user", next=hint)
            print(f"interrupted: {hint}", file=sys.stderr)
        if isinstance(exc, SystemExit):
            raise KeyboardInterrupt from None
        raise
    except Exception as exc:  # a crash inside training (a kernel error, a bug): one line
        reason = f"{type(exc).__name__}: {_first_line(exc)}"
        if primary and run_dir.is_dir():
            write_status(run_dir, "failed", reason=reason)
        raise TrainingFailedError(f"{run_dir}: training failed: {reason} (status.json marked "
                                  "failed; --debug shows the traceback)") from exc
    finally:
        if not launched:
            os.environ.pop(RUN_DIR_ENV, None)
            release_lock(run_dir)
    return run_dir


def train_to_finish(config: ExperimentConfig, run_dir: Path) -> bool:
    """Bring ``run_dir`` to a finished training the way a rerun after a stop should (crossval
    folds, study members): a finished training is kept (its caller evaluates it again), one
    with ``last.ckpt`` resumes, anything else trains anew from ``config``. Returns whether
    training ran."""
    if (read_status(run_dir) or {}).get("state") == "finished":
        return False
    if checkpoint_path(run_dir, "last").is_file():
        train(None, run_dir=run_dir, resume=True)
    else:
        train(config, run_dir=run_dir)
    return True


def _release(run_dir: Path, created: bool) -> None:
    """Give the run folder's lock back (and remove a folder made only to hold it)."""
    release_lock(run_dir)
    if created and run_dir.is_dir() and not any(run_dir.iterdir()):
        run_dir.rmdir()


def _externally_launched() -> bool:
    """True under torchrun / SLURM with several processes (each runs the whole command)."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    return world > 1 and any(os.environ.get(v) for v in EXTERNAL_LAUNCH_ENV)


def _check_fresh_folder(run_dir: Path) -> None:
    """A new run needs an empty folder, or one whose earlier run stopped before any checkpoint
    (it is cleared and started again)."""
    if not run_dir.exists() or not any(p.name != LOCK_FILE for p in run_dir.iterdir()):
        return
    status = read_status(run_dir) or {}
    has_checkpoint = checkpoint_path(run_dir, "last").is_file()
    # "running" here is a run whose process died (this process holds the folder's lock)
    if status.get("state") in ("interrupted", "failed", "running") and not has_checkpoint:
        for entry in run_dir.iterdir():
            if entry.name != LOCK_FILE:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        return
    hint = "continue it with --resume" if has_checkpoint else "choose another --run-dir"
    raise MedilabError(f"{run_dir}: run folder exists and is not empty ({hint})")


def _first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else "(no message)"


def _finish_status(
    run_dir: Path, trainer: L.Trainer, config: ExperimentConfig, precision: dict[str, Any],
    fit_seconds: float | None = None,
) -> None:
    summary = training_summary(trainer, config, read_logged_rows(run_dir))
    if fit_seconds is not None:
        summary["fit_seconds"] = round(fit_seconds, 1)  # this fit (a resume: its part only)
    state = "interrupted" if trainer.interrupted else "finished"
    if trainer.interrupted:
        summary["stop_reason"] = "interrupted by the user"
        hint = ("--resume continues from the last epoch" if checkpoint_path(run_dir, "last")
                .is_file() else "no epoch finished: train again into the same --run-dir")
        summary["next"] = hint
    write_status(run_dir, state, training=summary, precision=precision,
                 environment=run_environment(trainer))


def resolve_config(
    config: ExperimentConfig | str | Path, overrides: list[str] | None = None
) -> ExperimentConfig:
    """A validated config from a YAML path or a config object, with ``overrides`` applied."""
    if not isinstance(config, ExperimentConfig):
        return load_config(config, overrides)
    if overrides:
        return validate_config(apply_overrides(config.model_dump(mode="json"), overrides),
                               "config")
    return config


def planned_splits(config: ExperimentConfig) -> pd.DataFrame:
    """The splits table (sample_id, split, …) a training of ``config`` would use, without
    training: ``data.splits_csv`` when given, else the split its data source makes."""
    given = load_splits(config.data.splits_csv) if config.data.splits_csv else None
    return get_task_family(config.task).build_datamodule(config, given).splits


def is_primary_process() -> bool:
    """False in the extra processes of a multi-process (DDP) run."""
    return rank_zero_only.rank == 0


def evaluate(run_dir: str | Path, checkpoint: str = "best") -> dict[str, Any]:
    """Evaluate a run's checkpoint on its held-out splits; writes metrics.json and predictions."""
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    status = read_status(run_dir) or {}
    if status.get("state") == "running":
        warnings.warn(f"{run_dir}: training has not finished; evaluating its {checkpoint} "
                      "checkpoint so far", stacklevel=2)
    check_data_paths(config)
    family = get_task_family(config.task)
    datamodule = family.build_datamodule(config, load_splits(run_dir / SPLITS_FILE))
    module = load_module(run_dir, family, config, checkpoint, fitted=False)  # fitted anew on val
    choice = precision_choice(config, "infer", run_dir, module, _val_loader(datamodule))
    trainer = build_inference_trainer(config, module, choice)
    body = family.evaluate(module, datamodule, config, run_dir, trainer)
    fitted = family.fitted_state(module)
    if fitted:
        write_fitted(run_dir, checkpoint, fitted)
    metrics = {
        "experiment": config.experiment,
        "task": config.task,
        "model": config.model.name,
        "checkpoint": checkpoint,
        "confidence": config.evaluation.confidence,
        **({"training": status["training"]} if "training" in status else {}),
        **split_roles(list(body.get("splits", {}))),
        **body,
    }
    write_metrics(run_dir, metrics)
    return metrics


def predict(
    run_dir: str | Path, inputs: str | Path, out: str | Path, checkpoint: str = "best",
    **options: Any,
) -> Path:
    """Predict new inputs with a trained run; the task decides the output format.
    ``engine="onnxruntime"`` runs the run's ONNX export instead of the PyTorch model."""
    run_dir = Path(run_dir)
    inputs = Path(inputs)
    engine = options.pop("engine", "torch")
    exported = options.pop("model", None)
    if exported is not None and engine == "torch":
        raise MedilabError("predict: --model names an exported model; add --engine onnxruntime")
    if not inputs.exists():
        raise InputFileError(inputs, "not found")
    config = load_run_config(run_dir)
    family = get_task_family(config.task)
    module = load_module(run_dir, family, config, checkpoint)
    trainer = build_inference_trainer(config, module, precision_choice(config, "infer", run_dir,
                                                                       module))
    if engine != "torch":
        from medilab.export import use_engine

        module, trainer = use_engine(module, config, run_dir, engine, exported)
    module.to(trainer.strategy.root_device)
    return family.predict(module, config, inputs, Path(out), trainer, **options)


def explain(
    run_dir: str | Path, inputs: str | Path, out: str | Path, method: str = "eigencam",
    checkpoint: str = "best", **options: Any,
) -> list[Path]:
    """CAM overlays (pytorch-grad-cam) of new inputs for a trained run, one PNG per input."""
    run_dir, inputs = Path(run_dir), Path(inputs)
    if not inputs.exists():
        raise InputFileError(inputs, "not found")
    config = load_run_config(run_dir)
    family = get_task_family(config.task)
    module = load_module(run_dir, family, config, checkpoint)
    return family.explain(module, config, inputs, Path(out), method, **options)

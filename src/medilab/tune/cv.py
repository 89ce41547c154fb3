"""``medilab tune --cv K``: a trial scored by K-fold cross-validation on the tune's non-test
samples instead of by the one val part.

The folds are made once per tune folder, from its shared ``splits.csv``: its ``train`` and
``val`` rows are split into K folds by :func:`medilab.crossval.assign_folds` (grouped by
patient, stratified by label where the table has them, seeded by ``config.seed``) and written to
``cv_folds.csv``; ``test`` rows stay out of every fold. Fold k's run gets the splits table
``cv_splits/fold<k>.csv``: fold k is its ``val`` part (selects its checkpoint), the other folds
its ``train`` part and the held-out ``test`` rows stay ``test`` (no trial trains on, selects on
or scores them, as without ``--cv``). Every trial uses the same K tables.

A trial trains ``trials/NNNN/fold<k>`` for k = 0..K-1; its value is the mean over folds of
each fold run's best monitored val value (``status.json`` ``training.best_score``). Pruning:
after each fold but the last, the running mean is reported to Optuna (step k) and the trial is
pruned when the pruner says so, which compares it with other trials' means over the same folds
(no per-epoch Lightning callback: one fold's early epochs say little about the mean)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import optuna
import pandas as pd

from medilab import run
from medilab.config import ExperimentConfig
from medilab.crossval import assign_folds
from medilab.data.splits import load_splits
from medilab.errors import InputFileError, TrainingFailedError
from medilab.io.atomic import write_once
from medilab.runfolder import read_status

FOLDS_FILE = "cv_folds.csv"
FOLD_SPLITS_DIR = "cv_splits"
OPTION = "--cv"


def check_folds(splits: pd.DataFrame, folds: int, seed: int) -> pd.DataFrame:
    """The fold assignment of ``splits``' non-test rows (crossval's, whose one-line error for
    ``folds`` below 2 or above the number of patients / samples names ``--cv``)."""
    return assign_folds(splits, folds, seed, option=OPTION)


def fold_std(values: list[float]) -> float | None:
    """The sample standard deviation of fold values (None for fewer than two)."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def write_folds(out: Path, splits: pd.DataFrame, folds: int, seed: int) -> tuple[Path, ...]:
    """``out/cv_folds.csv`` and one splits table per fold (written once; later calls, also from
    other workers, read the same files back); returns the K splits tables' paths."""
    table = check_folds(splits, folds, seed)
    write_once(out / FOLDS_FILE, table.to_csv(index=False).encode("utf-8"))
    saved = load_splits(out / FOLDS_FILE)
    if "fold" not in saved.columns or int(saved["fold"].max()) + 1 != folds:
        raise InputFileError(out / FOLDS_FILE, f"holds another number of folds than {OPTION} "
                                               f"{folds}")
    paths = []
    for k in range(folds):
        path = out / FOLD_SPLITS_DIR / f"fold{k}.csv"
        write_once(path, fold_table(saved, k).to_csv(index=False).encode("utf-8"))
        paths.append(path)
    return tuple(paths)


def fold_table(folds: pd.DataFrame, k: int) -> pd.DataFrame:
    """Fold ``k``'s splits table: fold k → ``val``, the other folds → ``train``, rows held out
    of every fold (``fold`` -1) → ``test``."""
    fold = folds["fold"].to_numpy()
    split = np.where(fold < 0, "test", np.where(fold == k, "val", "train"))
    return folds.drop(columns="fold").assign(split=split)


def train_folds(trial: optuna.Trial, config: ExperimentConfig, trial_dir: Path,
                fold_splits: tuple[Path, ...]) -> list[float]:
    """Train ``trial_dir/fold<k>`` on each fold's table; return each fold run's best monitored
    val value. Raises :class:`optuna.TrialPruned` when the running mean is pruned (after any
    fold but the last) and :class:`TrainingFailedError` when a fold logged no finite value."""
    values: list[float] = []
    for k, splits in enumerate(fold_splits):
        fold_dir = trial_dir / f"fold{k}"
        data = config.data.model_copy(update={"splits_csv": splits})
        run.train(config.model_copy(update={"data": data}), run_dir=fold_dir)
        value = ((read_status(fold_dir) or {}).get("training") or {}).get("best_score")
        if not isinstance(value, float) or not math.isfinite(value):
            raise TrainingFailedError(f"{fold_dir}: no finite {config.trainer.monitor} was "
                                      "logged")
        values.append(value)
        trial.set_user_attr("fold_values", list(values))
        if k < len(fold_splits) - 1:
            trial.report(float(np.mean(values)), step=k)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after fold {k}: mean "
                                         f"{config.trainer.monitor} {np.mean(values):.4f}")
    return values

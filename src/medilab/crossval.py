"""K-fold cross-validation: one run per fold, each fold held out in turn, and a summary.

``cross_validate(CONFIG, K, OUT)`` splits the samples a run of CONFIG would use into K folds
(grouped by ``patient_id`` and stratified by ``label`` when the splits table has them; a
``test`` part of CONFIG's split stays out of every fold and of every fold's run) and trains
``OUT/fold<k>`` with fold k as its untouched ``test`` split: the other folds are split again
(grouped, stratified, seeded, ``data.val_fraction``) into ``train`` and an inner ``val`` part,
which alone selects the checkpoint and fits the threshold / temperature / fusion weights. The
outer fold is scored once with what the inner val chose. OUT then holds:

- ``folds.csv``: sample → fold;
- ``crossval.csv``: each fold's outer-fold (``test``) metrics and sample count;
- ``crossval.json``: per metric the mean and standard deviation over folds and the mean
  weighted by the folds' sample counts (for per-image segmentation metrics: the mean over every
  image, each scored by the model that did not train on it);
- ``predictions_oof.csv``: every fold's held-out predictions with a ``fold`` column.

Each finished fold gets ``fold<k>/crossval_fold.json`` once it is trained and evaluated. Running
the same command again keeps those folds, evaluates a fold whose training finished, resumes one
with a ``last.ckpt`` and starts the others again, so an interrupted (even killed)
cross-validation continues where it stopped and ends as an uninterrupted one.

``train_fold`` trains one fold per process (a job array on a shared file system; each fold under
the lock ``OUT/.fold<k>.lock``); folds.csv is written once by whichever process comes first and
read back by all. ``cross_validate`` then keeps the finished folds and assembles the summary
(``assemble_only``: training nothing, refusing with the list of missing folds).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medilab import run
from medilab.config import ExperimentConfig
from medilab.data.splits import load_splits, make_splits, save_splits
from medilab.errors import ConfigError, InputFileError, MedilabError
from medilab.io.atomic import write_csv, write_once, write_text
from medilab.runfolder import (
    CONFIG_FILE,
    METRICS_FILE,
    config_changes,
    job_lock,
    lock_holder,
    progress_line,
)

FOLDS_FILE = "folds.csv"
SUMMARY_FILE = "crossval.json"
TABLE_FILE = "crossval.csv"
OOF_FILE = "predictions_oof.csv"
FOLD_DONE_FILE = "crossval_fold.json"  # written last: the fold is trained and evaluated
OUTER_SPLIT = "test"  # a fold run's name for its outer fold


def assign_folds(splits: pd.DataFrame, folds: int, seed: int,
                 option: str = "--folds") -> pd.DataFrame:
    """``splits`` (sample_id, split[, patient_id, label]) with ``fold`` 0..K-1 (``split``
    becomes ``fold<k>``, as ``medilab split --folds`` writes it), or -1 for ``test`` rows; grouped
    by patient and stratified by label where the columns exist. A bad ``folds`` is an error
    naming ``option`` (the command's flag)."""
    table = splits.reset_index(drop=True)
    pool = table[table["split"] != "test"]
    group = "patient_id" if "patient_id" in pool.columns else None
    stratify = "label" if "label" in pool.columns else None
    if stratify and pool[stratify].value_counts().min() < folds:
        stratify = None  # a class too small to appear in every fold: plain (grouped) folds
    units = pool[group].nunique() if group else len(pool)
    if folds < 2 or folds > units:
        what = "patients" if group else "samples"
        raise MedilabError(f"{option} {folds}: need 2 to {units} (the number of {what})")
    assigned = make_splits(pool, group=group, stratify=stratify, folds=folds, seed=seed)
    fold = np.full(len(table), -1, dtype=int)
    fold[pool.index.to_numpy()] = [int(s.removeprefix("fold")) for s in assigned["split"]]
    split = np.where(fold < 0, "test", np.char.add("fold", fold.astype(str)))
    return table.assign(split=split, fold=fold)


def fold_splits(folds: pd.DataFrame, k: int, val_fraction: float = 0.2,
                seed: int = 0) -> pd.DataFrame:
    """The splits table of fold ``k``'s run: that fold is its ``test`` part (nothing selects on
    it); the other folds are split into ``train`` and an inner ``val`` part of about
    ``val_fraction`` of them (grouped by patient, stratified by label where the columns exist,
    seeded by ``seed`` and ``k``). Rows held out of every fold (``fold`` -1) are left out."""
    table = folds[folds["fold"] >= 0].reset_index(drop=True)
    pool = table[table["fold"] != k]
    group = "patient_id" if "patient_id" in pool.columns else None
    stratify = "label" if "label" in pool.columns else None
    inner = make_splits(pool, group=group, stratify=stratify, val=val_fraction, seed=seed + k)
    split = np.full(len(table), "test", dtype=object)
    split[pool.index.to_numpy()] = inner["split"].to_numpy()
    return table.drop(columns="fold").assign(split=split)


def cross_validate(
    config: ExperimentConfig | str | Path,
    folds: int,
    out: str | Path,
    overrides: list[str] | None = None,
    evaluate: Callable[[Path], dict[str, Any]] = run.evaluate,
    assemble_only: bool = False,
) -> dict[str, Any]:
    """Train and evaluate every fold not yet finished into ``out/fold<k>``; write and return
    the summary. With ``assemble_only`` nothing trains: the summary is made from finished folds
    (trained by ``train_fold`` in other processes), or a one-line error lists the missing."""
    out = Path(out)
    config = run.resolve_config(config, overrides)
    _check_fold_configs(config, out, folds)
    if assemble_only:
        _saved_folds(out / FOLDS_FILE, folds, missing="no fold was started there")
        missing = [f"fold{k} ({progress_line(out / f'fold{k}', fold_lock(out, k))})"
                   for k in range(folds) if not fold_finished(out, k)]
        if missing:
            raise MedilabError(
                f"{out}: cannot assemble, {len(missing)} of {folds} folds not finished: "
                f"{', '.join(missing)}; train them (`medilab crossval … --fold K`) or run the "
                "command without --assemble-only")
        return summarize(out, folds)
    table = _fold_table(config, folds, out)
    elsewhere = []
    for k in range(folds):
        holder = lock_holder(fold_lock(out, k))
        if holder is not None and not fold_finished(out, k):
            elsewhere.append(f"fold{k} (pid {holder['pid']} on {holder['host']})")
            continue  # another process trains it: do the others meanwhile
        _finish_fold(config, table, out, k, evaluate)
    if elsewhere:
        raise MedilabError(
            f"{out}: not assembled, {len(elsewhere)} fold(s) still being trained by other "
            f"processes: {', '.join(elsewhere)}; run the command again once they are done")
    return summarize(out, folds)


def train_fold(
    config: ExperimentConfig | str | Path,
    folds: int,
    out: str | Path,
    fold: int,
    overrides: list[str] | None = None,
    evaluate: Callable[[Path], dict[str, Any]] = run.evaluate,
) -> Path:
    """Train and evaluate fold ``fold`` only (one process of a job array; others train the
    other folds into the same ``out`` on a shared file system) and return its run folder. The
    first process to arrive writes folds.csv, the others read that same file."""
    if not 0 <= fold < folds:
        raise MedilabError(f"--fold {fold}: out of range, the folds of --folds {folds} are 0 to "
                           f"{folds - 1}")
    out = Path(out)
    config = run.resolve_config(config, overrides)
    _check_fold_configs(config, out, folds)
    table = _fold_table(config, folds, out)
    _finish_fold(config, table, out, fold, evaluate)
    return out / f"fold{fold}"


def _check_fold_configs(config: ExperimentConfig, out: Path, folds: int) -> None:
    """Refuse when a fold folder was trained with another config than ``config`` (another
    ``-o`` in one task of a job array, an edited file), naming the first differing field."""
    for k in range(folds):
        fold_dir = out / f"fold{k}"
        try:
            fields = config_changes(fold_dir, config, "the cross-validation now asks")
        except ConfigError as exc:
            raise ConfigError(f"{exc}; remove {fold_dir} to train the fold again") from None
        if fields:
            raise ConfigError(
                f"{fold_dir / CONFIG_FILE}: fold {k} was trained with {fields[0]}; every fold "
                f"needs the same config and -o overrides (remove {fold_dir} to train it again, "
                "or choose another --run-dir)")


def fold_finished(out: Path, k: int) -> bool:
    """Whether fold ``k`` is trained and evaluated (crossval_fold.json is written last)."""
    fold_dir = out / f"fold{k}"
    return (fold_dir / FOLD_DONE_FILE).is_file() and (fold_dir / METRICS_FILE).is_file()


def fold_lock(out: Path, k: int) -> Path:
    """The lock file held by the process training and evaluating fold ``k``."""
    return out / f".fold{k}.lock"


def _finish_fold(config: ExperimentConfig, table: pd.DataFrame, out: Path, k: int,
                 evaluate: Callable[[Path], dict[str, Any]]) -> None:
    """Train (or resume) and evaluate fold ``k`` unless it is finished, holding its lock."""
    if fold_finished(out, k):
        return
    with job_lock(fold_lock(out, k), f"{out}: fold {k}"):
        if fold_finished(out, k):  # finished by another process meanwhile
            return
        fold_dir = out / f"fold{k}"
        splits = fold_splits(table, k, config.data.val_fraction, config.seed)
        splits_path = save_splits(splits, out / f"splits_fold{k}.csv")  # the same on a rerun
        fold_data = config.data.model_copy(update={"splits_csv": splits_path})
        run.train_to_finish(config.model_copy(update={"data": fold_data}), fold_dir)
        evaluate(fold_dir)
        folds = int(table["fold"].max()) + 1
        write_text(fold_dir / FOLD_DONE_FILE, json.dumps({"fold": k, "folds": folds}) + "\n")


def fold_dirs(out: Path, folds: int) -> list[Path]:
    """The run folders of the ``folds`` folds under ``out``."""
    return [out / f"fold{k}" for k in range(folds)]


def fold_count(out: Path) -> int:
    """How many folds the cross-validation in ``out`` has (from its folds.csv)."""
    folds = pd.read_csv(out / FOLDS_FILE)
    return int(folds["fold"].max()) + 1


def summarize(out: Path, folds: int) -> dict[str, Any]:
    """crossval.csv, crossval.json and predictions_oof.csv from the evaluated fold folders."""
    rows, predictions = [], []
    for k, fold_dir in enumerate(fold_dirs(out, folds)):
        metrics_path = fold_dir / METRICS_FILE
        if not metrics_path.is_file():
            raise InputFileError(metrics_path, "not found: evaluate the fold first")
        metrics = json.loads(metrics_path.read_text())
        outer = OUTER_SPLIT if OUTER_SPLIT in metrics["splits"] else "val"  # older folds
        held_out = metrics["splits"].get(outer, {})
        row: dict[str, Any] = {"fold": k, "n": metrics.get("n", {}).get(outer, 0)}
        row.update({name: value["value"] for name, value in held_out.items()})
        rows.append(row)
        predictions_path = fold_dir / f"predictions_{outer}.csv"
        if predictions_path.is_file():
            predictions.append(pd.read_csv(predictions_path, dtype={"sample_id": str})
                               .assign(fold=k))
    table = pd.DataFrame(rows)
    write_csv(table, out / TABLE_FILE)
    if predictions:
        oof = pd.concat(predictions, ignore_index=True)
        write_csv(oof[["fold", *[c for c in oof.columns if c != "fold"]]], out / OOF_FILE)
    summary = {"folds": folds, "n": int(table["n"].sum()), "metrics": _over_folds(table),
               "scored_on": "each outer fold, untouched: an inner val part of the other folds "
                            "chose the checkpoint (and threshold / temperature)"}
    write_text(out / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    return summary


def _over_folds(table: pd.DataFrame) -> dict[str, dict[str, float]]:
    weights = table["n"].to_numpy(dtype=float)
    result = {}
    for name in table.columns.drop(["fold", "n"]):
        values = table[name].to_numpy(dtype=float)
        known = ~np.isnan(values)
        if not known.any():
            continue
        result[name] = {
            "mean": float(values[known].mean()),
            "std": float(values[known].std(ddof=1)) if known.sum() > 1 else 0.0,
            "weighted_mean": float(np.average(values[known], weights=weights[known])),
        }
    return result


def _fold_table(config: ExperimentConfig, folds: int, out: Path) -> pd.DataFrame:
    """The saved fold assignment; made first when OUT has none. Processes starting at once
    compute the same (seeded) table; the first to write folds.csv wins and all read it back."""
    path = out / FOLDS_FILE
    if not path.is_file():
        if out.exists() and any(not p.name.startswith(f".{FOLDS_FILE}.") for p in out.iterdir()) \
                and not path.is_file():  # (another process may have written it meanwhile)
            raise InputFileError(out, "exists, is not empty and has no folds.csv")
        table = assign_folds(run.planned_splits(config), folds, config.seed)
        write_once(path, table.to_csv(index=False).encode("utf-8"))
    return _saved_folds(path, folds)


def _saved_folds(path: Path, folds: int, missing: str = "") -> pd.DataFrame:
    """folds.csv, refused when missing or made for another number of folds."""
    if not path.is_file():
        raise InputFileError(path, f"not found: {missing}")
    table = load_splits(path)
    if "fold" not in table.columns or table["fold"].max() + 1 != folds:
        raise InputFileError(path, f"holds a different number of folds than {folds}")
    return table

"""A tune folder's request and shared state: ``tune.json`` (what was asked: config, space,
trials, storage kind, ``cv`` folds; later the best trial), ``splits.csv`` (the one split every
trial uses; with ``--cv K`` also ``cv_folds.csv`` and ``cv_splits/``) and the Optuna study
(made on first use, continued after)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from medilab import run
from medilab.config import ExperimentConfig
from medilab.data.splits import load_splits, save_splits
from medilab.errors import InputFileError, MedilabError
from medilab.io.atomic import write_text
from medilab.tasks.registry import get_task_family
from medilab.tune.cv import check_folds, write_folds
from medilab.tune.objective import Setup
from medilab.tune.space import Space, parse_space, read_space
from medilab.tune.storage import JOURNAL_FILE, open_storage

TUNE_FILE = "tune.json"
SPLITS_FILE = "splits.csv"
PRUNE_AFTER_TRIALS = 5  # median pruning starts once this many trials have finished
optuna.logging.set_verbosity(optuna.logging.WARNING)


def prepare(config: ExperimentConfig | str | Path, out: Path, trials: int,
            space: str | Path | None, overrides: list[str] | None, storage: str | None,
            cv: int | None = None) -> tuple[Setup, dict[str, Any]]:
    """The trials' shared setup and tune.json's request; a folder holding another request
    (config, space, storage kind or ``--cv`` folds) is refused. ``cv`` None keeps the folder's
    own (none for a new folder)."""
    origin = str(config) if not isinstance(config, ExperimentConfig) else "config"
    base = run.resolve_config(config, overrides)
    searched = read_space(Path(space) if space else None, base, origin)
    request = {
        "experiment": base.experiment, "trials": trials,
        "monitor": base.trainer.monitor,
        "direction": "maximize" if base.trainer.monitor_mode == "max" else "minimize",
        "space": {key: value.model_dump() for key, value in searched.items()},
        "storage": "remote Optuna storage (copied to optuna.journal when the tune finishes)"
                   if storage else f"journal file {JOURNAL_FILE}",
    }
    base = base.model_copy(update={"tune": None})
    request["fingerprint"] = _fingerprint(base, request)
    existing = read_tune_file(out)
    if existing and existing.get("fingerprint") != request["fingerprint"]:
        raise InputFileError(out / TUNE_FILE, "holds a tune of another config, space or "
                                              "storage; choose another --out")
    cv = _cv_of(existing, cv, out)
    if cv is not None:
        request["cv"] = cv
    split = _split_table(base, out)
    if cv is not None:
        check_folds(split, cv, base.seed)  # a bad --cv is refused before anything is written
    if existing:
        request = {**request, **{k: v for k, v in existing.items() if k not in request}}
    else:
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / TUNE_FILE, json.dumps(request, indent=2) + "\n")
    path = out / SPLITS_FILE
    if not path.is_file():
        save_splits(split, path)
    fold_splits = write_folds(out, load_splits(path), cv, base.seed) if cv is not None else ()
    shared = base.model_copy(update={"data": base.data.model_copy(update={"splits_csv": path})})
    return Setup(shared, searched, out, fold_splits), request


def _cv_of(existing: dict[str, Any] | None, cv: int | None, out: Path) -> int | None:
    """The folds of this tune: ``cv``, or the folder's own when ``cv`` is None; a folder tuned
    with other folds (or without) is refused."""
    before = existing.get("cv") if existing else None
    if existing is not None and cv is not None and cv != before:
        had = f"--cv {before}" if before else "no --cv"
        raise InputFileError(out / TUNE_FILE, f"holds a tune with {had}, not --cv {cv} (its "
                                              "trials were scored another way); give the same "
                                              "--cv or choose another --out")
    return cv if cv is not None else before


def _fingerprint(base: ExperimentConfig, request: dict[str, Any]) -> str:
    body = {"config": base.model_dump(mode="json"), "space": request["space"],
            "storage": request["storage"]}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def read_tune_file(out: Path) -> dict[str, Any] | None:
    path = out / TUNE_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise InputFileError(path, "is not valid JSON") from None


def _split_table(config: ExperimentConfig, out: Path) -> pd.DataFrame:
    """The table of ``out/splits.csv``, the split of ``config`` (made once, then read back), so
    every trial selects on the same val part and the test part stays the same held-out one."""
    path = out / SPLITS_FILE
    if path.is_file():
        return load_splits(path)
    given = load_splits(config.data.splits_csv) if config.data.splits_csv else None
    return get_task_family(config.task).build_datamodule(config, given).splits


def make_pruner(config: ExperimentConfig) -> optuna.pruners.BasePruner:
    """Median pruning: once :data:`PRUNE_AFTER_TRIALS` trials ended, a trial whose best val
    metric so far is worse than the median of earlier trials at that epoch stops, but only in
    the second half of training (``trainer.max_epochs`` / 2 epochs of warm-up). The val metric
    of the first epochs says little about the last (a small val part, a learning-rate
    schedule): pruning from the second epoch stopped 15 of 20 BreastMNIST trials at epochs 1-2.
    """
    warmup = max(1, config.trainer.max_epochs // 2)
    return optuna.pruners.MedianPruner(n_startup_trials=PRUNE_AFTER_TRIALS,
                                       n_warmup_steps=warmup)


def cv_pruner() -> optuna.pruners.BasePruner:
    """``--cv``: median pruning of the running mean over folds (step k: the mean after fold k,
    the same folds for every trial), once :data:`PRUNE_AFTER_TRIALS` trials ended."""
    return optuna.pruners.MedianPruner(n_startup_trials=PRUNE_AFTER_TRIALS, n_warmup_steps=0)


def open_study(out: Path, storage: str | None, config: ExperimentConfig,
               cv: int | None = None) -> optuna.Study:
    """The tune's study (made on first use), named after the experiment."""
    direction = "maximize" if config.trainer.monitor_mode == "max" else "minimize"
    pruner = cv_pruner() if cv else make_pruner(config)
    try:
        return optuna.create_study(storage=open_storage(out, storage), pruner=pruner,
                                   study_name=config.experiment, direction=direction,
                                   load_if_exists=True)
    except (ValueError, ImportError) as exc:  # a bad URL, a missing database driver
        raise MedilabError(f"--storage: {exc}") from None


def space_of(request: dict[str, Any]) -> Space:
    """The search space saved in a request (tune.json, a worker's environment)."""
    return parse_space(request["space"], TUNE_FILE)

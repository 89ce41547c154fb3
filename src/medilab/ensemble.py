"""Ensembles of finished runs: a run folder whose model averages its members' probabilities.

``create_ensemble(RUNS, OUT)`` checks that the runs can be combined (same task, classes, input
channels and held-out samples) and writes OUT/config.yaml (the first run's: preprocessing and
inference settings come from it), OUT/splits.csv and OUT/ensemble.json (member folders,
checkpoint). ``medilab evaluate`` / ``predict`` / ``report`` then treat OUT like any run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from medilab.config import ExperimentConfig, config_to_yaml
from medilab.data.splits import load_splits
from medilab.errors import InputFileError, MedilabError
from medilab.io.atomic import write_bytes, write_text
from medilab.runfolder import (
    CONFIG_FILE,
    ENSEMBLE_FILE,
    MODEL_ARGS_FILE,
    SPLITS_FILE,
    load_run_config,
    read_model_args,
)

MATCHING_MODEL_ARGS = ("num_classes", "in_channels", "spatial_dims")


def create_ensemble(
    members: Sequence[str | Path], run_dir: str | Path, checkpoint: str = "best",
    experiment: str | None = None,
) -> Path:
    """Write the ensemble's run folder (not yet evaluated); return it."""
    run_dir = Path(run_dir)
    if len(members) < 2:
        raise MedilabError("an ensemble needs at least two run folders")
    if run_dir.exists() and any(run_dir.iterdir()):
        raise InputFileError(run_dir, "already exists and is not empty")
    return write_ensemble(members, run_dir, checkpoint, experiment=experiment)


def write_ensemble(
    members: Sequence[str | Path], run_dir: str | Path, checkpoint: str = "best",
    experiment: str | None = None, config: ExperimentConfig | None = None,
) -> Path:
    """Check that the members can be combined and write the ensemble's files (config.yaml:
    ``config``, else the first member's renamed; splits.csv; ensemble.json) into ``run_dir``,
    which may hold other things (a seed ensemble keeps its members inside it)."""
    folders = [Path(m) for m in members]
    run_dir = Path(run_dir)
    if len(folders) < 2:
        raise MedilabError("an ensemble needs at least two run folders")
    configs = [load_run_config(folder) for folder in folders]
    first, first_config = folders[0], configs[0]
    first_args = read_model_args(first)
    first_splits = _splits(first)
    for folder, member_config in zip(folders[1:], configs[1:], strict=True):
        if member_config.task != first_config.task:
            raise InputFileError(folder, f"task {member_config.task!r} differs from {first}'s "
                                 f"{first_config.task!r}")
        args = read_model_args(folder)
        for key in MATCHING_MODEL_ARGS:
            if args.get(key) != first_args.get(key):
                raise InputFileError(folder / MODEL_ARGS_FILE, f"{key} {args.get(key)} differs "
                                     f"from {first}'s {first_args.get(key)}")
        if not _splits(folder).equals(first_splits):
            raise InputFileError(folder / SPLITS_FILE, f"differs from {first}'s: members must "
                                 "hold out the same samples")
    for folder in folders:
        if not (folder / "checkpoints" / f"{checkpoint}.ckpt").is_file():
            raise InputFileError(folder / "checkpoints" / f"{checkpoint}.ckpt", "not found")
    if config is None:
        name = experiment or f"{first_config.experiment}_ensemble"
        config = first_config.model_copy(update={"experiment": name})
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / CONFIG_FILE, config_to_yaml(config))
    write_bytes(run_dir / SPLITS_FILE, (first / SPLITS_FILE).read_bytes())
    write_text(run_dir / ENSEMBLE_FILE, json.dumps(
        {"members": [str(f.resolve()) for f in folders], "checkpoint": checkpoint}, indent=2
    ) + "\n")
    return run_dir


def _splits(folder: Path) -> pd.DataFrame:
    """The run's splits table in a fixed row order, for comparing members."""
    table = load_splits(folder / SPLITS_FILE)
    return table.sort_values(list(table.columns)).reset_index(drop=True)

"""Seed ensembles: one member run per seed and their mean-probability ensemble in one folder.

``trainer.seeds: [0, 1, 2]`` (or ``medilab train … --seeds 3``) trains one ordinary run folder
per seed, ``RUN/seed<s>`` (the config with ``seed: s``), all on one split (``RUN/splits.csv``,
made once from the config's own seed, so the members hold out the same samples), evaluates
each, and makes ``RUN`` itself an ensemble run folder (:mod:`medilab.ensemble`: config.yaml,
splits.csv, ensemble.json) that evaluate / predict / report treat like any run. ``seeds.json``
(written first) marks the folder: the same command with ``--run-dir RUN`` (or ``medilab train
--run-dir RUN --resume``) keeps the finished members, resumes one with a ``last.ckpt``, trains
the missing ones and writes the ensemble, so a killed seed ensemble ends as an uninterrupted one.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medilab import run
from medilab.config import ExperimentConfig, config_to_yaml
from medilab.data.splits import load_splits, save_splits
from medilab.ensemble import write_ensemble
from medilab.errors import InputFileError, MedilabError
from medilab.io.atomic import write_text
from medilab.runfolder import (
    CONFIG_FILE,
    METRICS_FILE,
    SPLITS_FILE,
    default_run_dir,
    load_run_config,
)
from medilab.tasks.registry import get_task_family

SEEDS_FILE = "seeds.json"


def is_seeds_folder(run_dir: str | Path | None) -> bool:
    """Whether ``run_dir`` holds a seed ensemble (started or finished)."""
    return run_dir is not None and (Path(run_dir) / SEEDS_FILE).is_file()


def member_dirs(run_dir: Path, seeds: list[int]) -> list[Path]:
    """The member run folders of ``seeds`` under ``run_dir``."""
    return [run_dir / f"seed{seed}" for seed in seeds]


def member_config(config: ExperimentConfig, seed: int, splits_csv: Path) -> ExperimentConfig:
    """The config of the member trained with ``seed`` on the shared split ``splits_csv``."""
    trainer = config.trainer.model_copy(update={"seeds": None})
    data = config.data.model_copy(update={"splits_csv": splits_csv})
    return config.model_copy(update={"seed": seed, "trainer": trainer, "data": data,
                                     "experiment": f"{config.experiment}_seed{seed}"})


def train_seeds(
    config: ExperimentConfig, run_dir: str | Path | None = None,
    evaluate: Callable[[Path], Any] = run.evaluate,
) -> Path:
    """Train (or continue) every seed's member, evaluate each, write the ensemble into
    ``run_dir`` (default runs/<experiment>/<timestamp>) and return it (not yet evaluated)."""
    seeds = config.trainer.seeds
    if not seeds or len(set(seeds)) != len(seeds):
        raise MedilabError(f"trainer.seeds: {seeds}: give two or more different seeds")
    run_dir = Path(run_dir or default_run_dir(config))
    splits_csv = _prepare(config, run_dir)
    config = config.model_copy(update={"data": config.data.model_copy(
        update={"splits_csv": splits_csv})})
    folders = member_dirs(run_dir, seeds)
    for seed, folder in zip(seeds, folders, strict=True):
        try:
            trained = run.train_to_finish(member_config(config, seed, splits_csv), folder)
        except KeyboardInterrupt:
            print(f"seed ensemble: `medilab train --run-dir {run_dir} --resume` continues every "
                  "member", file=sys.stderr)
            raise
        if trained or not (folder / METRICS_FILE).is_file():
            evaluate(folder)
    return write_ensemble(folders, run_dir, "best", config=config)


def _changed_field(saved: ExperimentConfig, config: ExperimentConfig) -> str | None:
    """The first dotted field where ``config`` differs from the saved one (the shared split's
    path and the experiment name aside), or None."""
    def flat(value: object, prefix: str = "") -> dict[str, object]:
        if isinstance(value, dict):
            return {k: v for key, item in value.items()
                    for k, v in flat(item, f"{prefix}{key}.").items()}
        return {prefix.rstrip("."): value}

    old, new = flat(saved.model_dump(mode="json")), flat(config.model_dump(mode="json"))
    ignored = {"data.splits_csv", "experiment"}
    return next((key for key in sorted(old.keys() | new.keys())
                 if key not in ignored and old.get(key) != new.get(key)), None)


def _prepare(config: ExperimentConfig, run_dir: Path) -> Path:
    """The shared split of a new seed ensemble (written with seeds.json and config.yaml), or
    the saved one of a started ensemble with the same config."""
    marker, splits_csv = run_dir / SEEDS_FILE, (run_dir / SPLITS_FILE).resolve()
    if marker.is_file():
        saved = json.loads(marker.read_text(encoding="utf-8"))
        if saved.get("seeds") != config.trainer.seeds:
            raise InputFileError(marker, f"this folder trains seeds {saved.get('seeds')}, not "
                                 f"{config.trainer.seeds}; choose another --run-dir")
        if not splits_csv.is_file():
            raise InputFileError(splits_csv, "not found: the seed ensemble's shared split")
        changed = _changed_field(load_run_config(run_dir), config)
        if changed:
            raise InputFileError(run_dir / CONFIG_FILE, f"the seed ensemble here was started "
                                 f"with another {changed}; continue it with --resume, or "
                                 "choose another --run-dir")
        return splits_csv
    if run_dir.exists() and any(run_dir.iterdir()):
        raise MedilabError(f"{run_dir}: run folder exists and is not empty (choose another "
                           "--run-dir)")
    given = load_splits(config.data.splits_csv) if config.data.splits_csv else None
    splits = get_task_family(config.task).build_datamodule(config, given).splits
    run_dir.mkdir(parents=True, exist_ok=True)
    save_splits(splits, splits_csv)
    shared = config.data.model_copy(update={"splits_csv": splits_csv})
    write_text(run_dir / CONFIG_FILE, config_to_yaml(config.model_copy(update={"data": shared})))
    write_text(marker, json.dumps({"seeds": config.trainer.seeds,
                                   "members": [p.name for p in member_dirs(
                                       run_dir, config.trainer.seeds)]}, indent=2) + "\n")
    return splits_csv

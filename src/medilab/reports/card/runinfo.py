"""Everything a model card reads from one run folder, read once: config, status, metrics,
fitted state, splits, model arguments, curves and predictions. Missing files are ``None``."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from medilab.errors import InputFileError
from medilab.reports.runfiles import (
    prediction_files,
    read_config,
    read_csv,
    read_curves,
    read_metrics_json,
)
from medilab.runfolder import (
    CONFIG_FILE,
    ENSEMBLE_FILE,
    FITTED_FILE,
    MODEL_ARGS_FILE,
    SPLITS_FILE,
    read_status,
)

CARD_YAML = "card.yaml"  # the author's card fields beside the run (override config's card:)


@dataclass
class RunInfo:
    """The files of one run folder, parsed."""

    run_dir: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    status: dict[str, Any]
    fitted: dict[str, Any]
    model_json: dict[str, Any]
    splits: pd.DataFrame | None
    curves: pd.DataFrame | None
    predictions: dict[str, pd.DataFrame] = field(default_factory=dict)
    ensemble: dict[str, Any] = field(default_factory=dict)
    config_sha256: str | None = None

    def get(self, dotted: str, default: Any = None) -> Any:
        """A config value by dotted key (``trainer.max_epochs``), else ``default``."""
        value: Any = self.config
        for part in dotted.split("."):
            if not isinstance(value, dict) or part not in value:
                return default
            value = value[part]
        return value

    @property
    def task(self) -> str:
        return str(self.metrics.get("task") or self.config.get("task") or "classification")


def _json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; {} when absent; a one-line error when unreadable."""
    if not path.is_file():
        return {}
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputFileError(path, f"not valid JSON ({exc})") from None
    return body if isinstance(body, dict) else {}


def read_run(run_dir: Path) -> RunInfo:
    """Parse the run folder's files (see :class:`RunInfo`)."""
    run_dir = Path(run_dir)
    config = read_config(run_dir) or {}
    author = run_dir / CARD_YAML
    if author.is_file():
        import yaml

        try:
            extra = yaml.safe_load(author.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise InputFileError(author, f"not valid YAML ({str(exc).splitlines()[0]})") \
                from None
        if not isinstance(extra, dict):
            raise InputFileError(author, "expected a mapping of card fields")
        config = {**config, "card": {**(config.get("card") or {}), **extra}}
    predictions = {}
    for split, path in prediction_files(run_dir).items():
        frame = read_csv(path)
        if frame is not None and not frame.empty:
            predictions[split] = frame
    config_path = run_dir / CONFIG_FILE
    return RunInfo(
        run_dir=run_dir,
        config=config,
        metrics=read_metrics_json(run_dir) or {},
        status=read_status(run_dir) or {},
        fitted=_json(run_dir / FITTED_FILE),
        model_json=_json(run_dir / MODEL_ARGS_FILE),
        splits=read_csv(run_dir / SPLITS_FILE),
        curves=read_curves(run_dir),
        predictions=predictions,
        ensemble=_json(run_dir / ENSEMBLE_FILE),
        config_sha256=hashlib.sha256(config_path.read_bytes()).hexdigest()
        if config_path.is_file() else None,
    )

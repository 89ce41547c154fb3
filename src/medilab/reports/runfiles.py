"""Read the files of a run folder (metrics.json, metrics.csv, predictions, config) for reports.

Every reader returns ``None`` (or an empty frame) when its file is absent, so a report can be
built from whatever a run folder holds; a file that exists but cannot be parsed is an
``InputFileError`` naming it.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from medilab.errors import InputFileError, MedilabError
from medilab.runfolder import CONFIG_FILE, CURVES_FILE, METRICS_FILE

SPLIT_PREFIXES = ("train", "val", "test")
PROB_COLUMN = re.compile(r"^prob_(\d+)$")
LOWER_IS_BETTER = ("loss", "hausdorff", "hd95", "error", "mae", "mse", "rmse", "brier", "ece",
                   "distance", "assd", "nll")


RUN_FILES = (METRICS_FILE, CURVES_FILE, CONFIG_FILE)


def require_run_dir(run_dir: Path) -> Path:
    """Return ``run_dir`` as a Path, or raise if it is not an existing folder.

    An experiment folder (``runs/<experiment>``) holding run folders but no run files of its
    own stands for its latest run (run folder names are timestamps, so the last by name).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise MedilabError(f"{run_dir}: run folder not found")
    if any((run_dir / name).is_file() for name in RUN_FILES):
        return run_dir
    runs = sorted(p for p in run_dir.iterdir()
                  if p.is_dir() and any((p / name).is_file() for name in RUN_FILES))
    return runs[-1] if runs else run_dir


def read_metrics_json(run_dir: Path, required: bool = False) -> dict[str, Any] | None:
    """Load ``metrics.json``; ``None`` when absent unless ``required``."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        if required:
            raise MedilabError(f"{run_dir}: no metrics.json in this run folder "
                               "(run `medilab evaluate` on it first)")
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(path, f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputFileError(path, "expected a JSON object at the top level")
    return data


def read_config(run_dir: Path) -> dict[str, Any] | None:
    """Load the resolved ``config.yaml`` as a plain dict; ``None`` when absent."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputFileError(path, f"not valid YAML ({str(exc).splitlines()[0]})") from None
    return data if isinstance(data, dict) else None


def read_config_text(run_dir: Path) -> str | None:
    """The resolved config as written, for display."""
    path = Path(run_dir) / CONFIG_FILE
    return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else None


ID_COLUMNS = ("sample_id", "patient_id", "image")


def read_csv(path: Path) -> pd.DataFrame | None:
    """Read a CSV file (id columns as text: ``02`` stays ``02``); ``None`` when absent."""
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path, dtype=dict.fromkeys(ID_COLUMNS, str))
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise InputFileError(path, f"not a readable CSV ({str(exc).splitlines()[0]})") from None


def read_curves(run_dir: Path) -> pd.DataFrame | None:
    """Per-epoch curves from Lightning's sparse ``metrics.csv``, one row per epoch.

    Rows written by different hooks (train, val, learning-rate monitor) are merged by epoch,
    keeping the last non-missing value of each column. Rows without an epoch (the
    learning-rate monitor's) take the epoch of the next row by step. ``*_step`` columns are
    dropped and ``*_epoch`` suffixes removed; names become ``<split>/<metric>``, so
    ``train/loss_epoch`` and ``train_loss`` both become ``train/loss``.
    """
    path = Path(run_dir) / CURVES_FILE
    frame = read_csv(path)
    if frame is None or frame.empty or "epoch" not in frame.columns:
        return None
    frame = frame.copy()
    if "step" in frame.columns:
        frame = frame.sort_values("step", kind="stable")
    frame["epoch"] = pd.to_numeric(frame["epoch"], errors="coerce").bfill().ffill()
    frame = frame.dropna(subset=["epoch"])
    if frame.empty:
        return None
    value_cols = [c for c in frame.columns if c not in ("epoch", "step")]
    renames: dict[str, str] = {}
    for col in value_cols:
        if col.endswith("_step"):
            continue
        name = col[: -len("_epoch")] if col.endswith("_epoch") else col
        parts = split_metric(name)
        renames[col] = f"{parts[0]}/{parts[1]}" if parts else name
    keep = [c for c in value_cols if c in renames]
    numeric = frame[keep].apply(pd.to_numeric, errors="coerce")
    numeric["epoch"] = frame["epoch"].astype(int)
    curves = numeric.groupby("epoch").last().rename(columns=renames)
    curves = curves.loc[:, ~curves.columns.duplicated(keep="last")]
    return curves.dropna(axis=1, how="all").sort_index()


def split_metric(column: str) -> tuple[str, str] | None:
    """``"val/accuracy"`` or ``"val_accuracy"`` → ``("val", "accuracy")``; else ``None``."""
    for split in SPLIT_PREFIXES:
        for sep in ("/", "_"):
            if column.startswith(split + sep) and len(column) > len(split) + 1:
                return split, column[len(split) + 1 :]
    return None


def lr_columns(curves: pd.DataFrame) -> list[str]:
    """Learning-rate columns, as named by Lightning's LearningRateMonitor (``lr-Adam`` …)."""
    return [c for c in curves.columns if c == "lr" or c.startswith(("lr-", "lr_", "lr/"))]


def lower_is_better(metric: str) -> bool:
    """Whether smaller values of ``metric`` are better (losses, distances, errors).

    A word of the name (split on ``_``, ``/``, ``-``, …) must start with one of
    ``LOWER_IS_BETTER``: ``pixel_error`` and ``hd95`` are, ``precision`` is not.
    """
    words = re.split(r"[^a-z0-9]+", metric.lower())
    return any(word.startswith(LOWER_IS_BETTER) for word in words if word)


def metric_entry(raw: Any) -> tuple[float, float, float]:
    """``{"value", "low", "high"}`` (or a bare number) → floats, NaN where missing."""
    if isinstance(raw, dict):
        return tuple(_as_float(raw.get(k)) for k in ("value", "low", "high"))  # type: ignore[return-value]
    return _as_float(raw), math.nan, math.nan


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def split_metrics(metrics: dict[str, Any] | None, split: str) -> dict[str, tuple[float, ...]]:
    """The metrics of one split in ``metrics.json`` as ``{name: (value, low, high)}``."""
    block = ((metrics or {}).get("splits") or {}).get(split) or {}
    if not isinstance(block, dict):
        return {}
    return {name: metric_entry(raw) for name, raw in block.items()
            if name != "n" and _is_metric(raw)}


def _is_metric(raw: Any) -> bool:
    """A number or a ``{"value": …}`` entry (not a nested table such as per-class scores)."""
    if isinstance(raw, dict):
        return "value" in raw
    return isinstance(raw, int | float) and not isinstance(raw, bool)


def prediction_files(run_dir: Path) -> dict[str, Path]:
    """``{split: path}`` for every ``predictions_<split>.csv``, val and test first."""
    found = {p.stem[len("predictions_") :]: p for p in Path(run_dir).glob("predictions_*.csv")}
    order = {s: i for i, s in enumerate(SPLIT_PREFIXES)}
    return dict(sorted(found.items(), key=lambda kv: (order.get(kv[0], 9), kv[0])))


def prob_columns(frame: pd.DataFrame) -> list[str]:
    """``prob_0 … prob_{K-1}`` in class order."""
    cols = [(int(m.group(1)), c) for c in frame.columns if (m := PROB_COLUMN.match(str(c)))]
    return [c for _, c in sorted(cols)]


def class_indices(values: pd.Series, class_names: list[str] | None) -> np.ndarray | None:
    """Map labels to class indices: integers as they are, names through ``class_names``."""
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all() and (numeric == numeric.round()).all():
        return numeric.astype(int).to_numpy()
    if class_names:
        lookup = {str(name): i for i, name in enumerate(class_names)}
        mapped = values.astype(str).map(lookup)
        if mapped.notna().all():
            return mapped.astype(int).to_numpy()
    return None

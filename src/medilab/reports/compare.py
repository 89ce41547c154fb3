"""Compare several run folders on one page: metrics table, curves, ROC curves, metric bars."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from medilab.errors import MedilabError
from medilab.io.atomic import write_csv
from medilab.reports import plots
from medilab.reports.html import data_uri, format_interval, is_wide, render_page
from medilab.reports.runfiles import (
    lower_is_better,
    prediction_files,
    read_config,
    read_csv,
    read_curves,
    read_metrics_json,
    require_run_dir,
    split_metrics,
)

MAIN_METRICS = ("auroc", "auc", "f1_macro", "accuracy", "balanced_accuracy", "dice", "iou",
                "map_50", "map50", "map")


@dataclass
class RunSummary:
    """What the comparison needs from one run folder."""

    run_dir: Path
    label: str
    experiment: str
    model: str
    task: str
    n: Any
    metrics: dict[str, tuple[float, ...]]
    class_names: list[str] | None


def compare_runs(
    run_dirs: Sequence[Path], out: Path, split: str = "val", metric: str | None = None
) -> Path:
    """Write a comparison page of ``run_dirs`` to ``out`` (HTML) and its table to ``out.csv``.

    An experiment folder (``runs/<experiment>``) stands for its latest run.
    ``metric`` is the main metric for the curves and the bar chart; by default the first of
    AUROC, macro F1, accuracy, Dice, … that every run has. Raises ``MedilabError`` naming the
    folder when a run folder or its ``metrics.json`` is missing.
    """
    if not run_dirs:
        raise MedilabError("compare: give at least one run folder")
    out = Path(out)
    runs = _summaries([Path(d) for d in run_dirs], split)
    names = _metric_names(runs)
    if not names:
        raise MedilabError(f"compare: no run has {split!r} metrics in its metrics.json "
                           f"({', '.join(str(r.run_dir) for r in runs)})")
    main = metric or _main_metric(runs, names)
    if metric is not None and metric not in names:
        raise MedilabError(f"compare: metric {metric!r} is in no run's {split} metrics "
                           f"(have: {', '.join(names) or 'none'})")
    best = _best(runs, names)
    table = [
        {
            "label": run.label, "experiment": run.experiment, "run": run.run_dir.name,
            "model": run.model, "task": run.task, "n": "–" if run.n is None else run.n,
            "cells": [
                (format_interval(*run.metrics[m]) if m in run.metrics else "–",
                 run.label in best[m])
                for m in names
            ],
        }
        for run in runs
    ]
    csv_path = out.with_suffix(".csv")
    with tempfile.TemporaryDirectory(prefix="medilab-compare-") as tmp:
        figures = _figures(runs, split, main, Path(tmp))
    render_page(
        "compare.html", out,
        title=f"Comparison of {len(runs)} runs ({split})",
        split=split, main=main, names=names, table=table, figures=figures,
        csv_name=csv_path.name, lower=[m for m in names if lower_is_better(m)],
        built=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )
    _write_csv(runs, names, csv_path)
    return out


def _summaries(run_dirs: list[Path], split: str) -> list[RunSummary]:
    runs = []
    for given in run_dirs:
        run_dir = require_run_dir(given)
        metrics = read_metrics_json(run_dir, required=True) or {}
        config = read_config(run_dir) or {}
        model = metrics.get("model") or (config.get("model") or {}).get("name") or "–"
        counts = metrics.get("n") or {}
        runs.append(RunSummary(
            run_dir=run_dir,
            label="",
            experiment=str(metrics.get("experiment") or config.get("experiment")
                           or run_dir.parent.name),
            model=str(model),
            task=str(metrics.get("task") or config.get("task") or "–"),
            n=counts.get(split) if isinstance(counts, dict) else None,
            metrics=split_metrics(metrics, split),
            class_names=metrics.get("class_names"),
        ))
    experiments = [r.experiment for r in runs]
    for run in runs:
        run.label = (run.experiment if experiments.count(run.experiment) == 1
                     else f"{run.experiment} ({run.run_dir.name})")
    labels = [r.label for r in runs]
    for i, run in enumerate(runs):  # the same folder given twice
        if labels.count(run.label) > 1:
            run.label = f"{run.label} #{i + 1}"
    return runs


def _metric_names(runs: list[RunSummary]) -> list[str]:
    names: list[str] = []
    for run in runs:
        names += [m for m in run.metrics if m not in names]
    return names


def _main_metric(runs: list[RunSummary], names: list[str]) -> str | None:
    common = [m for m in names if all(m in r.metrics for r in runs)]
    for candidate in MAIN_METRICS:
        if candidate in common:
            return candidate
    return common[0] if common else (names[0] if names else None)


def _best(runs: list[RunSummary], names: list[str]) -> dict[str, set[str]]:
    """For each metric, the labels of the runs with the best value (ties share it)."""
    best: dict[str, set[str]] = {}
    for name in names:
        values = {r.label: r.metrics[name][0] for r in runs
                  if name in r.metrics and math.isfinite(r.metrics[name][0])}
        if not values:
            best[name] = set()
            continue
        target = min(values.values()) if lower_is_better(name) else max(values.values())
        best[name] = {label for label, v in values.items() if abs(v - target) <= 1e-12}
    return best


def _write_csv(runs: list[RunSummary], names: list[str], path: Path) -> Path:
    rows = []
    for run in runs:
        row: dict[str, Any] = {"experiment": run.experiment, "run": run.run_dir.name,
                               "run_dir": str(run.run_dir), "model": run.model,
                               "task": run.task, "n": run.n}
        for name in names:
            value, low, high = run.metrics.get(name, (math.nan, math.nan, math.nan))
            row.update({name: value, f"{name}_low": low, f"{name}_high": high})
        rows.append(row)
    return write_csv(pd.DataFrame(rows), path)


def _curve_metric(curves: dict[str, pd.DataFrame | None], main: str | None) -> str | None:
    """The main metric when it was logged per epoch, else the first val metric all runs logged."""
    logged = [
        {c.removeprefix("val/") for c in frame.columns if c.startswith("val/") and c != "val/loss"}
        for frame in curves.values() if frame is not None
    ]
    if not logged:
        return None
    shared = set.intersection(*logged)
    if main in shared:
        return main
    preferred = [m for m in ("dice", "f1_macro", "accuracy", "auroc") if m in shared]
    return preferred[0] if preferred else (sorted(shared)[0] if shared else None)


def _figures(runs: list[RunSummary], split: str, main: str | None,
             folder: Path) -> list[dict[str, str]]:
    curves = {r.label: read_curves(r.run_dir) for r in runs}
    made = [("Validation loss", plots.plot_runs_curve(curves, "val/loss", folder / "loss.png"))]
    curve = _curve_metric(curves, main)
    if curve is not None:
        made.append((f"Validation {curve}",
                     plots.plot_runs_curve(curves, f"val/{curve}", folder / "main.png")))
    scores = {}
    for run in runs:
        path = prediction_files(run.run_dir).get(split)
        frame = read_csv(path) if path is not None else None
        binary = plots.binary_scores(frame, run.class_names) if frame is not None else None
        if binary is not None:
            scores[run.label] = binary
    made.append((f"ROC ({split})", plots.plot_runs_roc(scores, folder / "roc.png",
                                                       title=f"ROC ({split})")))
    if main is not None:
        values = {r.label: r.metrics[main] for r in runs if main in r.metrics}
        made.append((f"{main} ({split})",
                     plots.plot_metric_bars(values, main, folder / "bars.png")))
    return [{"title": title, "uri": data_uri(path) or "", "wide": is_wide(path)}
            for title, path in made if path]

"""Compare several run folders on one page: metrics table, curves, ROC curves, metric bars.

What a folder given to ``compare_runs`` stands for:

- a run folder (it holds ``config.yaml``, ``metrics.json`` or ``metrics.csv``): itself;
- a cross-validation folder (``crossval.json`` or ``fold<k>/`` run folders): its folds, with a
  row of mean ± sd over the folds;
- a study folder (``summary.csv`` beside several run folders, or run folders that are not
  named by their start time): every run folder in it;
- an experiment folder (``runs/<experiment>``, run folders named by start time): its latest run.
"""

from __future__ import annotations

import math
import os
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from medilab.errors import MedilabError
from medilab.io.atomic import write_csv
from medilab.reports import plots
from medilab.reports.html import data_uri, format_interval, format_number, is_wide, render_page
from medilab.reports.runfiles import (
    RUN_FILES,
    lower_is_better,
    prediction_files,
    read_config,
    read_csv,
    read_curves,
    read_metrics_json,
    require_run_dir,
    split_metrics,
)
from medilab.runfolder import REPORT_FILE, role_label, warn_if_unfinished

MAIN_METRICS = ("auroc", "auc", "f1_macro", "accuracy", "balanced_accuracy", "dice", "iou",
                "map_50", "map50", "map")


HTML_SUFFIXES = (".html", ".htm")
CROSSVAL_FILE = "crossval.json"
STUDY_FILE = "summary.csv"
FOLD_NAME = re.compile(r"^fold\d+$")
TIMESTAMP_NAME = re.compile(r"^\d{4}-?\d{2}-?\d{2}[T_-]\d{2}-?\d{2}-?\d{2}")
SAMPLE_ID_COLUMNS = ("sample_id", "image")


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
    monitor: str | None = None
    crossval: Path | None = None  # the cross-validation folder of a fold
    samples: frozenset[str] | None = None  # sample ids in predictions_<split>.csv
    group: str = ""  # runs scored on the same samples share a letter


def is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a run's own files (config, metrics or curves)."""
    return any((folder / name).is_file() for name in RUN_FILES)


def expand_run_dirs(folders: Sequence[Path]) -> list[tuple[Path, Path | None]]:
    """``(run folder, its cross-validation folder or None)`` for every folder given, expanding
    cross-validation, study and experiment folders as the module docstring says."""
    runs: list[tuple[Path, Path | None]] = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise MedilabError(f"{folder}: run folder not found")
        if is_run_folder(folder):
            runs.append((folder, _crossval_of(folder)))
            continue
        children = sorted(p for p in folder.iterdir() if p.is_dir() and is_run_folder(p))
        folds = [p for p in children if FOLD_NAME.match(p.name)]
        if (folder / CROSSVAL_FILE).is_file() or (folds and len(folds) == len(children)):
            folds.sort(key=lambda p: int(p.name.removeprefix("fold")))
            runs += [(fold, folder) for fold in folds]
        elif (folder / STUDY_FILE).is_file() or any(
            not TIMESTAMP_NAME.match(p.name) for p in children
        ):
            runs += [(child, None) for child in children]
        else:
            runs.append((require_run_dir(folder), None))
    return runs


def _crossval_of(run_dir: Path) -> Path | None:
    parent = run_dir.resolve().parent
    if FOLD_NAME.match(run_dir.name) and (
        (parent / CROSSVAL_FILE).is_file() or (parent / "folds.csv").is_file()
    ):
        return parent
    return None


def compare_runs(
    run_dirs: Sequence[Path], out: Path, split: str | None = None, metric: str | None = None
) -> Path:
    """Write a comparison page of ``run_dirs`` to ``out`` (HTML), its table to ``out.csv``
    and its plots (also embedded in the page) to ``<out stem>_plots/``.

    ``split`` is the split compared; by default the held-out ``test`` when every run has one,
    else ``val`` (the selection set, marked as such on the page).

    Each folder is expanded as the module docstring says (cross-validation, study and
    experiment folders). ``metric`` is the main metric for the curves and the bar chart; by
    default the metric every run's ``trainer.monitor`` names (``val/`` stripped) when they
    agree and it is in metrics.json, else the first of AUROC, macro F1, accuracy, Dice, …
    that every run has. Runs scored on different samples (``n`` or the sample ids of
    ``predictions_<split>.csv`` differ) are marked not comparable and no best is bolded
    across them. Raises ``MedilabError`` naming the folder when a run folder or its
    ``metrics.json`` is missing, for runs of different tasks, and for an ``out`` that is not
    an ``.html`` file.
    """
    if not run_dirs:
        raise MedilabError("compare: give at least one run folder")
    out = Path(out)
    if out.suffix.lower() not in HTML_SUFFIXES:
        raise MedilabError(f"compare --out {out}: the page is HTML, give a path ending in .html "
                           "(the table is written beside it as .csv)")
    expanded = expand_run_dirs([Path(d) for d in run_dirs])
    split = split or _default_split(expanded)
    runs = _summaries(expanded, split)
    _require_one_task(runs)
    names = _metric_names(runs)
    if not names:
        raise MedilabError(f"compare: no run has {split!r} metrics in its metrics.json "
                           f"({', '.join(str(r.run_dir) for r in runs)})")
    if metric is not None and metric not in names:
        raise MedilabError(f"compare: metric {metric!r} is in no run's {split} metrics "
                           f"(have: {', '.join(names) or 'none'})")
    main = metric or _main_metric(runs, names)
    groups = _sample_groups(runs)
    best = _best(runs, names)
    table = [
        {
            "label": run.label, "experiment": run.experiment, "run": _run_name(run),
            "model": run.model, "task": run.task, "n": "–" if run.n is None else run.n,
            "group": run.group if len(groups) > 1 else "",
            "alone": len(groups) > 1 and len(groups[run.group]) == 1,
            "cells": [
                (*_value_and_interval(run.metrics.get(m)), run.label in best[m])
                for m in names
            ],
            "report": _report_link(run.run_dir, out),
        }
        for run in runs
    ]
    shared_names = {tuple(r.class_names or ()) for r in runs}
    csv_path = out.with_suffix(".csv")
    figures = _figures(runs, split, main, out.parent / f"{out.stem}_plots")
    for figure in figures:
        figure["href"] = Path(figure.pop("path")).relative_to(out.parent).as_posix()
    render_page(
        "compare.html", out,
        title=f"Comparison of {len(runs)} runs ({split}: {role_label(split)})",
        split=split, main=main, names=names, table=table, figures=figures,
        csv_name=csv_path.name, lower=[m for m in names if lower_is_better(m)],
        comparable=len(groups) <= 1, crossval=_crossval_rows(runs, names),
        built=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        classes=" · ".join(f"{k} = {n}" for k, n in enumerate(next(iter(shared_names))))
        if len(shared_names) == 1 else "",
    )
    _write_csv(runs, names, csv_path, len(groups) > 1)
    return out


def _default_split(run_dirs: list[tuple[Path, Path | None]] | list[Path]) -> str:
    """``test`` when every run's metrics.json scores a test part, else ``val``."""
    for item in run_dirs:
        given = item[0] if isinstance(item, tuple) else item
        metrics = read_metrics_json(require_run_dir(given), required=False) or {}
        if "test" not in (metrics.get("splits") or {}):
            return "val"
    return "test"


def _value_and_interval(entry: tuple[float, ...] | None) -> tuple[str, str]:
    """("0.812", "[0.75, 0.87]") for a table cell that puts the interval under the value."""
    if entry is None:
        return "–", ""
    head, _, rest = format_interval(*entry).partition(" [")
    return head, f"[{rest}" if rest else ""


def _report_link(run_dir: Path, page: Path) -> str | None:
    """The run's report.html relative to the comparison page, when it exists."""
    report = run_dir / REPORT_FILE
    if not report.is_file():
        return None
    return Path(os.path.relpath(report.resolve(), page.resolve().parent)).as_posix()


def _summaries(run_dirs: list[tuple[Path, Path | None]] | list[Path],
               split: str) -> list[RunSummary]:
    runs = []
    for item in run_dirs:
        given, crossval = item if isinstance(item, tuple) else (item, None)
        run_dir = require_run_dir(given)
        warn_if_unfinished(run_dir)
        metrics = read_metrics_json(run_dir, required=True) or {}
        config = read_config(run_dir) or {}
        model = metrics.get("model") or (config.get("model") or {}).get("name") or "–"
        counts = metrics.get("n") or {}
        monitor = (config.get("trainer") or {}).get("monitor")
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
            monitor=str(monitor) if monitor else None,
            crossval=crossval,
            samples=_sample_ids(run_dir, split),
        ))
    experiments = [r.experiment for r in runs]
    for run in runs:
        run.label = (run.experiment if experiments.count(run.experiment) == 1
                     else f"{run.experiment} ({_run_name(run)})")
    labels = [r.label for r in runs]
    for i, run in enumerate(runs):  # the same folder given twice
        if labels.count(run.label) > 1:
            run.label = f"{run.label} #{i + 1}"
    return runs


def _run_name(run: RunSummary) -> str:
    """The run folder's name; a fold's with its cross-validation folder (``cv/fold0``)."""
    if run.crossval is not None:
        return f"{run.crossval.name}/{run.run_dir.name}"
    return run.run_dir.name


def _require_one_task(runs: list[RunSummary]) -> None:
    tasks: dict[str, str] = {}
    for run in runs:
        if run.task != "–":
            tasks.setdefault(run.task, run.label)
    if len(tasks) > 1:
        listed = ", ".join(f"{task} ({label})" for task, label in tasks.items())
        raise MedilabError(f"compare: runs of different tasks cannot be compared: {listed}")


def _sample_ids(run_dir: Path, split: str) -> frozenset[str] | None:
    """The ids of the samples a run was scored on, from ``predictions_<split>.csv``."""
    path = prediction_files(run_dir).get(split)
    if path is None:
        return None
    try:
        frame = pd.read_csv(path, dtype=str, usecols=lambda c: c in SAMPLE_ID_COLUMNS)
    except (OSError, ValueError, pd.errors.ParserError):
        return None
    column = next((c for c in SAMPLE_ID_COLUMNS if c in frame.columns), None)
    return frozenset(frame[column].dropna()) if column else None


def _sample_groups(runs: list[RunSummary]) -> dict[str, list[RunSummary]]:
    """Group runs scored on the same samples (same ``n`` and, where both runs have
    predictions, the same sample ids); each group gets a letter in ``run.group``."""
    keys: list[tuple[Any, frozenset[str] | None]] = []
    groups: dict[str, list[RunSummary]] = {}
    for run in runs:
        for i, (n, samples) in enumerate(keys):
            same_n = n is None or run.n is None or n == run.n
            same_ids = samples is None or run.samples is None or samples == run.samples
            if same_n and same_ids:
                run.group = _letter(i)
                break
        else:
            run.group = _letter(len(keys))
            keys.append((run.n, run.samples))
        groups.setdefault(run.group, []).append(run)
    return groups


def _letter(i: int) -> str:
    return chr(ord("A") + i) if i < 26 else f"G{i + 1}"


def _crossval_rows(runs: list[RunSummary], names: list[str]) -> list[dict[str, Any]]:
    """Mean ± sd over the folds of each cross-validation folder among ``runs``."""
    rows = []
    folders: dict[Path, list[RunSummary]] = {}
    for run in runs:
        if run.crossval is not None:
            folders.setdefault(run.crossval, []).append(run)
    for folder, folds in folders.items():
        cells = []
        for name in names:
            values = [f.metrics[name][0] for f in folds
                      if name in f.metrics and math.isfinite(f.metrics[name][0])]
            cells.append(_mean_sd(values))
        rows.append({"folder": folder.name, "folds": len(folds), "experiment": folds[0].experiment,
                     "n": sum(f.n for f in folds if isinstance(f.n, int)), "cells": cells})
    return rows


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{format_number(statistics.fmean(values))} ± {format_number(sd)}"


def _metric_names(runs: list[RunSummary]) -> list[str]:
    names: list[str] = []
    for run in runs:
        names += [m for m in run.metrics if m not in names]
    return names


def _main_metric(runs: list[RunSummary], names: list[str]) -> str | None:
    """The runs' monitored metric when they all monitor the same one and have it, else the
    first of ``MAIN_METRICS`` that every run has."""
    common = [m for m in names if all(m in r.metrics for r in runs)]
    monitored = {r.monitor.split("/", 1)[-1] if r.monitor else None for r in runs}
    if len(monitored) == 1 and (only := monitored.pop()) in common:
        return only
    for candidate in MAIN_METRICS:
        if candidate in common:
            return candidate
    return common[0] if common else (names[0] if names else None)


def _best(runs: list[RunSummary], names: list[str]) -> dict[str, set[str]]:
    """For each metric, the labels of the runs with the best value (ties share it).

    When the runs were scored on different samples (more than one ``group``), values are
    not comparable and no run is best.
    """
    groups = {r.group for r in runs}
    contenders = runs if len(groups) <= 1 else []
    best: dict[str, set[str]] = {}
    for name in names:
        values = {r.label: r.metrics[name][0] for r in contenders
                  if name in r.metrics and math.isfinite(r.metrics[name][0])}
        if not values:
            best[name] = set()
            continue
        target = min(values.values()) if lower_is_better(name) else max(values.values())
        best[name] = {label for label, v in values.items() if abs(v - target) <= 1e-12}
    return best


def _write_csv(runs: list[RunSummary], names: list[str], path: Path,
               mixed_samples: bool = False) -> Path:
    rows = []
    for run in runs:
        row: dict[str, Any] = {"experiment": run.experiment, "run": run.run_dir.name,
                               "run_dir": str(run.run_dir), "model": run.model,
                               "task": run.task, "n": run.n}
        if mixed_samples:
            row["samples"] = run.group
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
             folder: Path) -> list[dict[str, Any]]:
    """Write the page's plots into ``folder`` (beside the page, so each can be opened at
    full size) and return their titles, ``data:`` URIs and paths."""
    curves = {r.label: read_curves(r.run_dir) for r in runs}
    made = [("Validation loss", plots.plot_runs_curve(curves, "val/loss", folder / "loss.png"))]
    curve = _curve_metric(curves, main)
    if curve is not None:
        made.append((f"Validation {curve}",
                     plots.plot_runs_curve(curves, f"val/{curve}", folder / "main.png")))
    rocs = {}
    for run in runs:
        path = prediction_files(run.run_dir).get(split)
        frame = read_csv(path) if path is not None else None
        curves = plots.roc_curves(frame, run.class_names) if frame is not None else None
        if curves:
            rocs[run.label] = curves
    multiclass = any("micro" in c for c in rocs.values())
    title = f"ROC ({split}{', micro/macro-averaged' if multiclass else ''})"
    made.append((title, plots.plot_runs_roc_curves(rocs, folder / "roc.png", title=title)))
    if main is not None:
        values = {r.label: r.metrics[main] for r in runs if main in r.metrics}
        made.append((f"{main} ({split})",
                     plots.plot_metric_bars(values, main, folder / "bars.png")))
    return [{"title": title, "uri": data_uri(path) or "", "wide": is_wide(path), "path": path}
            for title, path in made if path]

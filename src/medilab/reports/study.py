"""The study page: every member on every split with intervals, ROC curves of all members on one
plot, and paired AUROC comparisons that say which differences are real."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from medilab.reports import plots
from medilab.reports.html import data_uri, format_interval, render_page


def _cell(row: pd.Series, metric: str) -> str:
    value = row.get(metric)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    low, high = row.get(f"{metric}_low"), row.get(f"{metric}_high")
    low = math.nan if low is None else float(low)
    high = math.nan if high is None else float(high)
    return format_interval(float(value), low, high)


METRIC_LABELS = {"accuracy": "accuracy", "f1_macro": "macro F1", "auroc": "AUROC",
                 "dice": "Dice", "iou": "IoU", "map": "mAP", "ap50": "AP50"}

def write_study_page(
    name: str, out: Path, summary: pd.DataFrame, paired: pd.DataFrame,
    predictions: dict[tuple[str, str], pd.DataFrame], members: list[str],
    settings: dict[str, dict[str, Any]] | None = None, notices: list[str] | None = None,
) -> Path:
    """Write ``out/study.html`` (plots under ``out/plots``) and return its path. ``settings``:
    per member its model, epochs and precision (``medilab.study.member_settings``);
    ``notices``: settings the members differ in, one line each."""
    settings = settings or {}
    metrics = list(summary.attrs.get("metrics") or
                   [m for m in ("accuracy", "f1_macro", "auroc") if m in summary])
    headline = metrics[-1]
    tables = []
    for split, rows in summary.groupby("split", sort=False):
        best = (rows[headline].astype(float).idxmax() if rows[headline].notna().any()
                else None)
        tables.append({
            "split": split, "role": "held out" if split != "val" else
            "selection set, in-sample for what was fitted on it",
            "rows": [{"member": r["member"], "best": index == best,
                      "cells": [_cell(r, m) for m in metrics],
                      "n": r["n"], "seconds": r["train_seconds"], "parameters": r["parameters"]}
                     for index, r in rows.iterrows()],
        })
    figures = []
    for split in dict.fromkeys(summary["split"]):
        scores = {}
        for member in members:
            frame = predictions.get((member, split))
            if frame is not None and "prob_1" in frame and "prob_2" not in frame:
                scores[member] = (frame["label"].to_numpy(), frame["prob_1"].to_numpy())
        path = plots.plot_runs_roc(scores, out / "plots" / f"roc_{split}.png",
                                   title=f"ROC, {split}")
        if path is not None:
            figures.append({"title": f"ROC curves ({split})", "src": data_uri(path),
                            "href": path.relative_to(out).as_posix()})
    comparisons = [
        {"split": r["split"], "pair": f"{r['a']} − {r['b']}",
         "difference": format_interval(r["auroc_difference"], r["low"], r["high"]),
         "p": f"{r['p_value']:.3f}", "p_holm": f"{r['p_holm']:.3f}",
         "significant": bool(r["significant"]), "n": r["n"]}
        for _, r in paired.iterrows()
    ]
    described = [{"member": m, "model": s["model"], "kwargs": _kwargs_text(s["kwargs"]),
                  "epochs": f"{s['epochs_run'] if s['epochs_run'] is not None else '?'} of "
                            f"{s['max_epochs']}", "precision": s["precision"] or "–"}
                 for m, s in settings.items()]
    first = next(iter(settings.values()), {})
    names = first.get("class_names") or []
    classes = " · ".join(f"{k} = {n}" for k, n in enumerate(names))
    return render_page("study.html", out / "study.html", name=name, tables=tables,
                       metric_labels=[METRIC_LABELS.get(m, m) for m in metrics],
                       headline=METRIC_LABELS.get(headline, headline),
                       figures=figures, comparisons=comparisons, members=members,
                       described=described, notices=notices or [],
                       classes=classes, positive=first.get("positive_class"),
                       pairs=len(comparisons))


def _kwargs_text(kwargs: dict[str, Any]) -> str:
    """Model keyword arguments as ``key=value`` text (nested mappings inline)."""
    return ", ".join(f"{k}={v}" for k, v in kwargs.items()) or "defaults"

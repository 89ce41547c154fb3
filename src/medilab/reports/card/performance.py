"""Performance facts of a card: the metrics.json figures with their intervals (held-out test
first), the operating point, calibration, subgroups with the largest gap named, and the worst
cases (described without any identifier)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from medilab.reports.card.population import class_name
from medilab.reports.card.runinfo import RunInfo
from medilab.reports.html import format_interval, format_number
from medilab.reports.runfiles import metric_entry, prob_columns, read_csv, split_metrics
from medilab.runfolder import headline_split, ordered_splits, role_label

WORST = 5


def metric_tables(info: RunInfo) -> list[dict[str, Any]]:
    """Per scored split (headline first): role, n and ``(metric, value, low, high)`` rows,
    exactly as metrics.json holds them."""
    metrics = info.metrics
    headline = headline_split(metrics)
    counts = metrics.get("n") or {}
    tables = []
    for split in ordered_splits(metrics):
        rows = [(name, *entry) for name, entry in split_metrics(metrics, split).items()]
        if rows:
            tables.append({"split": split, "role": role_label(split), "n": counts.get(split),
                           "headline": split == headline, "rows": rows,
                           "texts": [(r[0], format_interval(*r[1:])) for r in rows]})
    return tables


def operating_point(info: RunInfo) -> list[str]:
    """The decision rule the predicted classes follow, and calibration per scored split."""
    metrics = info.metrics
    lines = []
    if metrics.get("operating_point"):
        lines.append(f"Operating point: {metrics['operating_point']}.")
    calibration = metrics.get("calibration") or {}
    for split, block in calibration.items():
        if isinstance(block, dict) and block.get("ece") is not None:
            lines.append(f"Calibration on {split}: expected calibration error "
                         f"{format_number(float(block['ece']))} (lower is better).")
    return lines


def baseline_lines(info: RunInfo) -> list[str]:
    """The covariates-only baseline beside the image model and their blend (metrics.json's
    ``covariate_fusion``), AUROC per scored split, held-out test first."""
    record = info.metrics.get("covariate_fusion")
    if not isinstance(record, dict) or not isinstance(record.get("branches"), dict):
        return []
    lines = []
    for split, branches in record["branches"].items():
        if not isinstance(branches, dict):
            continue
        figures = []
        for name, label in (("image", "image only"), ("covariates", "covariates only (baseline)"),
                            ("fused", "fused")):
            entry = (branches.get(name) or {}).get("auroc")
            if isinstance(entry, dict) and entry.get("value") is not None:
                low, high = (float(entry.get(k, math.nan)) for k in ("low", "high"))
                figures.append(f"{label} {format_interval(float(entry['value']), low, high)}")
        if figures:
            lines.append(f"Baseline comparison, AUROC on {split} ({role_label(split)}): "
                         + "; ".join(figures) + ".")
    return lines


def subgroup_lines(info: RunInfo) -> list[str]:
    """Per split: the subgroups and their n, and the largest gap between two of them."""
    metrics = info.metrics
    lines = []
    gaps = metrics.get("subgroup_gaps") or {}
    for split, groups in (metrics.get("subgroups") or {}).items():
        if not isinstance(groups, dict) or not groups:
            continue
        sizes = ", ".join(f"{name} (n = {(values or {}).get('n', '?')})"
                          for name, values in groups.items())
        lines.append(f"{split}: subgroups {sizes}.")
        gap = gaps.get(split)
        if isinstance(gap, dict) and "difference" in gap:
            lines.append(f"{split}: largest gap in {gap.get('metric')}: "
                         f"{format_number(float(gap['difference']))} between "
                         f"{gap.get('column')} = {gap.get('best')} (highest) and "
                         f"{gap.get('column')} = {gap.get('worst')} (lowest).")
    return lines


def small_subgroups(info: RunInfo, minimum: int = 30) -> list[tuple[str, str, int]]:
    """(split, subgroup, n) of every subgroup with fewer than ``minimum`` images."""
    found = []
    for split, groups in (info.metrics.get("subgroups") or {}).items():
        for name, values in (groups or {}).items():
            n = (values or {}).get("n")
            if isinstance(n, int) and n < minimum:
                found.append((split, name, n))
    return found


def worst_cases(info: RunInfo) -> list[str]:
    """The worst predictions of the headline split, described by their labels and scores only
    (no sample or patient identifier): most confident errors (classification), lowest Dice
    (segmentation), fewest matched boxes (detection)."""
    split = headline_split(info.metrics) or "val"
    frame = info.predictions.get(split)
    if frame is not None and "dice" in frame:
        dice = pd.to_numeric(frame["dice"], errors="coerce").dropna().sort_values()
        return [f"{split}: {len(dice)} images scored; the {min(WORST, len(dice))} lowest Dice: "
                + ", ".join(format_number(float(v)) for v in dice.head(WORST))
                + " (their overlays are in report.html)."] if len(dice) else []
    if frame is not None and prob_columns(frame) and "label" in frame and "prediction" in frame:
        return _classification_errors(info, split, frame)
    cases = read_csv(info.run_dir / f"cases_{split}.csv")
    if cases is not None and "matched" in cases:
        matched = pd.to_numeric(cases["matched"], errors="coerce").dropna().sort_values()
        return [f"{split}: the {min(WORST, len(matched))} images with the lowest share of "
                "matched boxes: " + ", ".join(format_number(float(v))
                                             for v in matched.head(WORST))
                + " (shown in report.html)."] if len(matched) else []
    return []


def _classification_errors(info: RunInfo, split: str, frame: pd.DataFrame) -> list[str]:
    names = info.metrics.get("class_names") or []
    probs = frame[prob_columns(frame)].to_numpy(dtype=float)
    labels = pd.to_numeric(frame["label"], errors="coerce")
    predicted = pd.to_numeric(frame["prediction"], errors="coerce")
    wrong = frame.index[(labels != predicted) & labels.notna() & predicted.notna()]
    if not len(wrong):
        return [f"{split}: no image was misclassified at the operating point."]
    confidence = {i: probs[frame.index.get_loc(i), int(predicted[i])] for i in wrong}
    worst = sorted(wrong, key=lambda i: -confidence[i])[:WORST]
    described = [f"true {class_name(labels[i], names)}, predicted "
                 f"{class_name(predicted[i], names)} (p = {confidence[i]:.2f})" for i in worst]
    return [f"{split}: {len(wrong)} of {len(frame)} images misclassified; the most confident "
            f"errors: " + "; ".join(described) + "."]


def interval_width(info: RunInfo) -> tuple[str, str, float] | None:
    """(split, metric, width) of the headline metric's interval on the held-out test part."""
    if "test" not in (info.metrics.get("splits") or {}):
        return None
    entries = split_metrics(info.metrics, "test")
    for name in ("auroc", "dice", "map", "balanced_accuracy", "accuracy", *entries):
        if name in entries:
            _, low, high = metric_entry(info.metrics["splits"]["test"][name])
            if math.isfinite(low) and math.isfinite(high):
                return "test", name, high - low
    return None

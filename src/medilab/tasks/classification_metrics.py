"""Classification scores from probabilities: metrics with (patient) bootstrap intervals, the
binary decision threshold, calibration and subgroup audits. torchmetrics computes every metric;
this module only chooses samples."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import torch
from torchmetrics import functional as tmf

from medilab.config import EvaluationConfig
from medilab.tasks.bootstrap import bootstrap

MetricFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], float]


def decisions(probs: np.ndarray | torch.Tensor, threshold: float | None = None) -> np.ndarray:
    """The predicted class of each sample: with a binary ``threshold`` class 1 where
    ``p(class 1) >= threshold`` (the rule the threshold was chosen by), else the argmax.
    Compared in float64, as the values stand (in ``predictions_<split>.csv`` too)."""
    p = probs.detach().cpu().numpy() if isinstance(probs, torch.Tensor) else np.asarray(probs)
    if threshold is not None and p.shape[1] == 2:
        return (p[:, 1].astype(np.float64) >= threshold).astype(np.int64)
    return p.argmax(axis=1).astype(np.int64)


def metric_functions(num_classes: int) -> dict[str, MetricFn]:
    """name → f(probs (N, K), labels (N,), decided classes (N,)) for the reported metrics.

    The decision metrics (accuracy, F1, balanced accuracy, sensitivity, specificity) count the
    decided classes (:func:`decisions`: binary ``p(class 1) >= threshold``, else argmax). A
    metric that needs a class the labels lack is NaN, never 0: sensitivity without positives,
    specificity without negatives, and balanced accuracy, macro-F1 and AUROC unless every class
    is present."""
    k = num_classes

    def all_classes(y: torch.Tensor) -> bool:
        return len(torch.unique(y)) == k

    def auroc(p: torch.Tensor, y: torch.Tensor, d: torch.Tensor) -> float:
        if not all_classes(y):
            return float("nan")
        if k == 2:
            return float(tmf.auroc(p[:, 1], y, task="binary"))
        return float(tmf.auroc(p, y, task="multiclass", num_classes=k))

    def accuracy(p: torch.Tensor, y: torch.Tensor, d: torch.Tensor) -> float:
        return float(tmf.accuracy(d, y, task="multiclass", num_classes=k))

    def f1_macro(p: torch.Tensor, y: torch.Tensor, d: torch.Tensor) -> float:
        if not all_classes(y):
            return float("nan")
        return float(tmf.f1_score(d, y, task="multiclass", num_classes=k, average="macro"))

    def balanced_accuracy(p: torch.Tensor, y: torch.Tensor, d: torch.Tensor) -> float:
        if not all_classes(y):
            return float("nan")
        return float(tmf.accuracy(d, y, task="multiclass", num_classes=k, average="macro"))

    functions: dict[str, MetricFn] = {
        "accuracy": accuracy, "f1_macro": f1_macro, "balanced_accuracy": balanced_accuracy,
        "auroc": auroc,
    }
    if k == 2:
        def sensitivity(p: torch.Tensor, y: torch.Tensor, d: torch.Tensor) -> float:
            if not bool((y == 1).any()):
                return float("nan")
            return float(tmf.recall(d, y, task="binary"))

        def specificity(p: torch.Tensor, y: torch.Tensor, d: torch.Tensor) -> float:
            if not bool((y == 0).any()):
                return float("nan")
            return float(tmf.specificity(d, y, task="binary"))

        functions["sensitivity"], functions["specificity"] = sensitivity, specificity
    return functions


def score_table(
    probs: np.ndarray, labels: np.ndarray, *, groups: np.ndarray | None = None,
    threshold: float | None = None, evaluation: EvaluationConfig, seed: int = 0,
) -> dict[str, dict[str, float]]:
    """``{metric: {value, low, high, skipped}}``; binary decisions at ``threshold`` (else 0.5);
    intervals resample patients when ``groups`` is given; ``skipped`` counts the draws where
    the metric was undefined (a needed class missing), which are left out of the interval."""
    probs = np.asarray(probs)
    k = probs.shape[1]
    cut = (0.5 if threshold is None else threshold) if k == 2 else None
    d = torch.from_numpy(decisions(probs, cut))
    p = torch.from_numpy(probs.astype(np.float32))
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    out = {}
    for name, fn in metric_functions(k).items():
        out[name] = bootstrap(lambda idx, fn=fn: fn(p[idx], y[idx], d[idx]), len(y),
                              groups=groups, num_bootstraps=evaluation.bootstrap_samples,
                              confidence=evaluation.confidence, seed=seed)
    return out


def binary_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The score threshold maximising Youden's J (sensitivity + specificity − 1) for the rule
    ``score >= threshold`` (how ROC points are defined, and how :func:`decisions` applies it):
    one of the scores itself, in float64, so a recount from the written scores agrees; 0.5
    when the labels hold one class. (sklearn's ROC: float64, unlike torchmetrics' float32.)"""
    from sklearn.metrics import roc_curve

    if len(np.unique(labels)) < 2:
        return 0.5
    fpr, tpr, thresholds = roc_curve(np.asarray(labels), np.asarray(scores, np.float64),
                                     drop_intermediate=False)
    best = int(np.argmax(tpr - fpr))
    return float(min(1.0, thresholds[best]))


def calibration_summary(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Expected calibration error of the top-class confidence (torchmetrics, L1) and the
    reliability-diagram bins (mean confidence, accuracy, count)."""
    p = torch.from_numpy(np.asarray(probs, dtype=np.float32))
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    ece = float(tmf.calibration_error(p, y, task="multiclass", num_classes=p.shape[1],
                                      n_bins=bins, norm="l1"))
    confidence, predicted = p.max(dim=1)
    correct = (predicted == y).float()
    edges = torch.linspace(0, 1, bins + 1)
    table = []
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            table.append({"confidence": round(float(confidence[inside].mean()), 4),
                          "accuracy": round(float(correct[inside].mean()), 4),
                          "count": int(inside.sum())})
    return {"ece": ece, "bins": table}


def subgroup_labels(metadata: pd.DataFrame, column: str, age_bands: list[float]) -> pd.Series:
    """Each sample's subgroup for ``column``: numeric columns cut into bands (``<40``,
    ``40 to <60``, ``≥60``; "years" for age), others as they are; missing values are
    "missing"."""
    values = metadata[column]
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().sum() >= max(1, 0.5 * values.notna().sum()) and numeric.nunique() > 5:
        edges = sorted(age_bands)
        unit = " years" if column.lower() == "age" else ""
        names = [f"<{edges[0]:g}{unit}"] + [f"{a:g} to <{b:g}{unit}" for a, b in
                                            zip(edges, edges[1:], strict=False)]
        names.append(f"≥{edges[-1]:g}{unit}")
        bands = np.searchsorted(np.asarray(edges), numeric.to_numpy(), side="right")
        labels = pd.Series([names[b] for b in bands], index=values.index)
        return labels.where(numeric.notna(), "missing")
    return values.astype(str).where(values.notna(), "missing")


def subgroup_order(names: set[str]) -> list[str]:
    """Band labels low to high (``<40``, ``40 to <60``, ``≥60``), other groups alphabetically
    after them, "missing" last."""
    def key(name: str) -> tuple[int, float, str]:
        text = name.split(" years")[0]
        for prefix, rank, offset in (("<", 0, -np.inf), ("≥", 0, 0.5)):
            if text.startswith(prefix):
                try:
                    bound = float(text[1:])
                except ValueError:
                    break
                return (rank, bound + offset if np.isfinite(offset) else -np.inf, name)
        if " to <" in text:
            try:
                return (0, float(text.split(" to <")[0]), name)
            except ValueError:
                pass
        return (2 if name == "missing" else 1, 0.0, name)

    return sorted(names, key=key)


def subgroup_tables(
    probs: np.ndarray, labels: np.ndarray, metadata: pd.DataFrame | None,
    evaluation: EvaluationConfig, seed: int = 0, *, threshold: float | None = None,
    groups: np.ndarray | None = None,
) -> dict[str, Any]:
    """``{"<column>=<group>": {"n", metric: {value, low, high}}}`` for each subgroup column the
    metadata has (default sex and age bands), plus ``largest_gap``: the pair of groups whose
    metric differs most (AUROC when defined, else accuracy). Decisions use ``threshold`` (the
    one val chose, as for the whole split); intervals resample patients (``groups``, aligned
    with the samples) when given."""
    if metadata is None:
        return {}
    columns = [c for c in evaluation.subgroups if c in metadata.columns]
    groups_out: dict[str, Any] = {}
    gaps = []
    for column in columns:
        names = subgroup_labels(metadata, column, evaluation.age_bands).to_numpy()
        per_group = {}
        for name in subgroup_order(set(names)):
            rows = np.flatnonzero(names == name)
            if len(rows) < 2:
                continue
            scores = score_table(probs[rows], labels[rows], threshold=threshold,
                                 groups=None if groups is None else groups[rows],
                                 evaluation=evaluation, seed=seed)
            per_group[name] = {"n": int(len(rows)), **scores}
            groups_out[f"{column}={name}"] = per_group[name]
        metric = "auroc" if all(np.isfinite(g["auroc"]["value"]) for g in per_group.values()) \
            else "accuracy"
        valued = [(g[metric]["value"], n) for n, g in per_group.items() if n != "missing"]
        if len(valued) >= 2:
            (low, low_name), (high, high_name) = min(valued), max(valued)
            gaps.append({"column": column, "metric": metric, "difference": high - low,
                         "best": high_name, "worst": low_name})
    if gaps:
        groups_out["largest_gap"] = max(gaps, key=lambda g: g["difference"])
    return groups_out

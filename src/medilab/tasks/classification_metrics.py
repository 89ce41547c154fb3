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

MetricFn = Callable[[torch.Tensor, torch.Tensor], float]


def metric_functions(num_classes: int, threshold: float | None = None) -> dict[str, MetricFn]:
    """name → f(probs (N, K), labels (N,)) for the reported metrics."""
    k = num_classes

    def auroc(p: torch.Tensor, y: torch.Tensor) -> float:
        if len(torch.unique(y)) < 2:
            return float("nan")
        if k == 2:
            return float(tmf.auroc(p[:, 1], y, task="binary"))
        return float(tmf.auroc(p, y, task="multiclass", num_classes=k))

    functions: dict[str, MetricFn] = {
        "accuracy": lambda p, y: float(tmf.accuracy(p, y, task="multiclass", num_classes=k)),
        "f1_macro": lambda p, y: float(tmf.f1_score(p, y, task="multiclass", num_classes=k,
                                                    average="macro")),
        "balanced_accuracy": lambda p, y: float(tmf.accuracy(p, y, task="multiclass",
                                                             num_classes=k, average="macro")),
        "auroc": auroc,
    }
    if k == 2:
        cut = 0.5 if threshold is None else threshold
        functions["sensitivity"] = lambda p, y: float(tmf.recall(p[:, 1], y, task="binary",
                                                                 threshold=cut))
        functions["specificity"] = lambda p, y: float(tmf.specificity(p[:, 1], y, task="binary",
                                                                      threshold=cut))
    return functions


def score_table(
    probs: np.ndarray, labels: np.ndarray, *, groups: np.ndarray | None = None,
    threshold: float | None = None, evaluation: EvaluationConfig, seed: int = 0,
) -> dict[str, dict[str, float]]:
    """``{metric: {value, low, high}}``; intervals resample patients when ``groups`` is given."""
    p = torch.from_numpy(np.asarray(probs, dtype=np.float32))
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    out = {}
    for name, fn in metric_functions(p.shape[1], threshold).items():
        out[name] = bootstrap(lambda idx, fn=fn: fn(p[idx], y[idx]), len(y), groups=groups,
                              num_bootstraps=evaluation.bootstrap_samples,
                              confidence=evaluation.confidence, seed=seed)
    return out


def binary_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The score threshold maximising Youden's J (sensitivity + specificity − 1); 0.5 when the
    labels hold one class."""
    if len(np.unique(labels)) < 2:
        return 0.5
    fpr, tpr, thresholds = tmf.roc(torch.from_numpy(scores.astype(np.float32)),
                                   torch.from_numpy(labels.astype(np.int64)), task="binary")
    best = int(torch.argmax(tpr - fpr))
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
    evaluation: EvaluationConfig, seed: int = 0,
) -> dict[str, Any]:
    """``{"<column>=<group>": {"n", metric: {value, low, high}}}`` for each subgroup column the
    metadata has (default sex and age bands), plus ``largest_gap``: the pair of groups whose
    metric differs most (AUROC when defined, else accuracy)."""
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
            scores = score_table(probs[rows], labels[rows], evaluation=evaluation, seed=seed)
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

"""Plots for reports: each function writes one PNG atomically and returns its path.

A function returns ``None`` (and writes nothing) when its inputs lack what it needs, e.g. no
``prob_*`` columns for a ROC curve. Figures are made with ``matplotlib.figure.Figure`` (Agg
canvas, no pyplot state), so plotting is safe in scripts, tests and worker threads.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.calibration import calibration_curve
from sklearn.metrics import auc, brier_score_loss, confusion_matrix, f1_score, roc_curve

from medilab.io.atomic import atomic_path
from medilab.reports.runfiles import class_indices, lr_columns, prob_columns, split_metric

DPI = 110
MAX_ANNOTATED_CLASSES = 20
MARKERS = "osD^v<>ph*"
FIRST_EPOCH = 1  # metrics.csv counts epochs from 0; plots count them from 1, as training prints
SPLIT_STYLES = {"train": {"linestyle": "--", "marker": "s", "alpha": 0.75},
                "val": {"linestyle": "-", "marker": "o"},
                "test": {"linestyle": ":", "marker": "^"}}
PANEL_COLUMNS = 3


def _save(fig: Figure, out: Path) -> Path:
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return out


def _epoch_axes(ax, title: str, ylabel: str):
    """Title, labels, grid and whole-number epoch ticks on ``ax``."""
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    return ax


def _epoch_limits(ax, *frames: pd.DataFrame | pd.Series) -> None:
    """Half an epoch of room either side, so one or two epochs are not squeezed to dots at
    the edges of an axis running from −0.045 to 0.045."""
    epochs = [int(e) + FIRST_EPOCH for frame in frames if frame is not None for e in frame.index]
    if epochs:
        first, last = min(epochs), max(epochs)
        ax.set_xlim(first - 0.5, last + 0.5)
        if last - first < 10:  # MaxNLocator(integer=True) gives 0.1 steps on a short axis
            ax.set_xticks(range(first, last + 1))


def _line(ax, series: pd.Series, **kwargs) -> None:
    """Plot a per-epoch series (indexed by Lightning's 0-based epoch) against epochs 1, 2, …"""
    series = series.dropna()
    kwargs.setdefault("marker", "o")
    kwargs.setdefault("markersize", 4)
    ax.plot(series.index.to_numpy() + FIRST_EPOCH, series.to_numpy(), **kwargs)


# --------------------------------------------------------------------------- curves of one run


def plot_loss_curves(curves: pd.DataFrame, out: Path) -> Path | None:
    """Train and validation loss per epoch (every ``<split>/…loss…`` column)."""
    cols = [c for c in curves.columns if (m := split_metric(c)) and "loss" in m[1]]
    if not cols:
        return None
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = _epoch_axes(fig.add_subplot(), "Loss", "loss")
    for i, col in enumerate(cols):
        _line(ax, curves[col], label=col, **SPLIT_STYLES.get(split_metric(col)[0], {}),
              color=f"C{i % 10}")
    _epoch_limits(ax, curves)
    ax.legend()
    return _save(fig, out)


def curve_panels(curves: pd.DataFrame) -> dict[str, list[str]]:
    """Metric name → its columns (val first, then train), for every metric other than loss
    that has a validation curve: one panel of ``plot_metric_curves`` each."""
    panels: dict[str, list[str]] = {}
    for col in curves.columns:
        parts = split_metric(col)
        if parts and parts[0] == "val" and "loss" not in parts[1]:
            panels[parts[1]] = [col]
    for name, cols in panels.items():
        cols += [c for c in (f"train/{name}", f"train_{name}") if c in curves.columns][:1]
    return panels


def plot_metric_curves(curves: pd.DataFrame, out: Path) -> Path | None:
    """One small panel per metric (other than loss): its validation curve (solid, circles)
    and its training curve (dashed, squares), so metrics with near-equal values cannot
    hide each other."""
    panels = curve_panels(curves)
    if not panels:
        return None
    ncols = min(PANEL_COLUMNS, len(panels))
    nrows = -(-len(panels) // ncols)
    fig = Figure(figsize=(3.4 * ncols + 0.4, 2.8 * nrows + 0.3), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, (name, cols) in zip(axes, panels.items(), strict=False):
        _epoch_axes(ax, name, name)
        for col in cols:
            split = split_metric(col)[0]
            _line(ax, curves[col], label=split, color="C0" if split == "val" else "C1",
                  **SPLIT_STYLES[split])
        _epoch_limits(ax, curves[cols])
        ax.legend(fontsize="small")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    return _save(fig, out)


def plot_lr_curve(curves: pd.DataFrame, out: Path) -> Path | None:
    """Learning rate per epoch (LearningRateMonitor's ``lr-*`` columns); log scale if it decays."""
    cols = lr_columns(curves)
    if not cols:
        return None
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = _epoch_axes(fig.add_subplot(), "Learning rate", "learning rate")
    for col in cols:
        _line(ax, curves[col], label=col)
    _epoch_limits(ax, curves[cols])
    values = curves[cols].to_numpy(dtype=float)
    positive = values[np.isfinite(values) & (values > 0)]
    if positive.size and positive.max() / positive.min() > 10:
        ax.set_yscale("log")
    ax.legend(fontsize="small")
    return _save(fig, out)


# --------------------------------------------------------------------------- classification


def _class_names(n: int, class_names: list[str] | None) -> list[str]:
    if class_names and len(class_names) >= n:
        return [str(c) for c in class_names[:n]]
    return [str(i) for i in range(n)]


def encode_predictions(
    predictions: pd.DataFrame, class_names: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[str]] | None:
    """Labels, predicted classes, probabilities (or None) and class names, as class indices.

    Uses ``label`` and ``prediction`` (or the argmax of ``prob_*`` when ``prediction`` is
    missing); rows without a label are dropped. ``None`` when there is no ``label`` column or
    the labels cannot be turned into class indices.
    """
    if "label" not in predictions.columns:
        return None
    frame = predictions.dropna(subset=["label"])
    if frame.empty:
        return None
    probs_cols = prob_columns(frame)
    probs = frame[probs_cols].to_numpy(dtype=float) if probs_cols else None
    y = class_indices(frame["label"], class_names)
    if "prediction" in frame.columns:
        pred = class_indices(frame["prediction"], class_names)
    elif probs is not None and probs.shape[1] > 1:
        pred = probs.argmax(axis=1)
    else:
        return None
    if y is None or pred is None:  # string labels without class_names: name them in order
        if "prediction" not in frame.columns:
            return None
        names = sorted(set(frame["label"].astype(str)) | set(frame["prediction"].astype(str)))
        lookup = {n: i for i, n in enumerate(names)}
        y = frame["label"].astype(str).map(lookup).to_numpy()
        pred = frame["prediction"].astype(str).map(lookup).to_numpy()
        return y, pred, None, names
    n = max(int(y.max()) + 1, int(pred.max()) + 1, len(probs_cols), len(class_names or []))
    return y, pred, probs, _class_names(n, class_names)


def matrix_side(k: int) -> float:
    """Height in inches of a confusion-matrix figure of ``k`` classes (each of its two panels
    is about this wide too)."""
    return min(3.2 + 0.32 * k, 9.0)


def annotation_fontsize(k: int) -> float:
    """Font size (points) of the numbers in the cells of a ``k``-class confusion matrix: about
    a third of a cell's height, 8 to 16 pt, so the numbers stay readable when the figure is
    shown at page width."""
    cell_points = 0.72 * matrix_side(k) / k * 72  # the matrix takes ~72% of the panel height
    return float(np.clip(round(0.36 * cell_points), 8, 16))


def plot_confusion_matrix(
    predictions: pd.DataFrame, out: Path, class_names: list[str] | None = None, title: str = ""
) -> Path | None:
    """Confusion matrix of ``label`` vs ``prediction``: counts and row-normalised side by side."""
    encoded = encode_predictions(predictions, class_names)
    if encoded is None:
        return None
    y, pred, _, names = encoded
    k = len(names)
    counts = confusion_matrix(y, pred, labels=list(range(k)))
    rows = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    side = matrix_side(k)
    fontsize = annotation_fontsize(k)
    fig = Figure(figsize=(2 * side + 1.6, side + 0.4), layout="constrained")
    rotate = k > 6 and max(len(n) for n in names) > 2
    axes = fig.subplots(1, 2)
    for ax, matrix, label, fmt in (
        (axes[0], counts, "counts", "{:d}"),
        (axes[1], normalised, "row-normalised (recall)", "{:.2f}"),
    ):
        image = ax.imshow(matrix, cmap="Blues", vmin=0,
                          vmax=1 if matrix is normalised else max(1, matrix.max()))
        fig.colorbar(image, ax=ax, shrink=0.8)
        ax.set_title(f"{title} {label}".strip(), fontsize=12)
        ax.set_xlabel("predicted", fontsize=11)
        ax.set_ylabel("true", fontsize=11)
        ticks = np.arange(k)
        tick_size = min(11.0, max(7.0, fontsize))
        ax.set_xticks(ticks, names, rotation=45 if rotate else 0,
                      ha="right" if rotate else "center", fontsize=tick_size)
        ax.set_yticks(ticks, names, fontsize=tick_size)
        if k <= MAX_ANNOTATED_CLASSES:
            top = matrix.max() if matrix.max() > 0 else 1
            for i in range(k):
                for j in range(k):
                    value = matrix[i, j]
                    if matrix is normalised and value == 0:
                        continue  # leave empty cells blank so the errors stand out
                    ax.text(j, i, fmt.format(value), ha="center", va="center",
                            fontsize=fontsize,
                            color="white" if value > 0.6 * top else "black")
    return _save(fig, out)


def f1_per_class(
    predictions: pd.DataFrame, class_names: list[str] | None = None
) -> tuple[list[str], np.ndarray] | None:
    """Class names and the F1 score of each class (sklearn ``f1_score(average=None)``)."""
    encoded = encode_predictions(predictions, class_names)
    if encoded is None:
        return None
    y, pred, _, names = encoded
    return names, f1_score(y, pred, labels=list(range(len(names))), average=None, zero_division=0)


def plot_f1_per_class(
    predictions: pd.DataFrame, out: Path, class_names: list[str] | None = None, title: str = ""
) -> Path | None:
    """Bar chart of the F1 score of each class, with the macro mean as a dashed line."""
    per_class = f1_per_class(predictions, class_names)
    if per_class is None:
        return None
    names, scores = per_class
    fig = Figure(figsize=(max(5.0, 0.5 * len(names) + 2.5), 3.6), layout="constrained")
    ax = fig.add_subplot()
    bars = ax.bar(names, scores, color="C0")
    if len(names) <= MAX_ANNOTATED_CLASSES:
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.axhline(scores.mean(), color="C3", linestyle="--", linewidth=1)
    ax.set_ylim(0, 1.1)
    ax.set_xlabel("class")
    ax.set_ylabel("F1")
    ax.set_title(f"{title} F1 per class (dashed: macro F1 {scores.mean():.3f})".strip())
    if len(names) > 6:
        ax.tick_params(axis="x", labelrotation=45)
    return _save(fig, out)


def binary_scores(
    predictions: pd.DataFrame, class_names: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """``(y_true in {0,1}, prob_1)`` for a binary task (``prob_1`` and no ``prob_2``), else None."""
    cols = prob_columns(predictions)
    if "prob_1" not in cols or "prob_2" in cols or "label" not in predictions.columns:
        return None
    frame = predictions.dropna(subset=["label", "prob_1"])
    y = class_indices(frame["label"], class_names) if not frame.empty else None
    if y is None or not set(np.unique(y)) <= {0, 1}:
        return None
    return y, frame["prob_1"].to_numpy(dtype=float)


def _roc_axes(fig: Figure, title: str):
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="0.6", linestyle=":", linewidth=1)
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return ax


def operating_point(y: np.ndarray, score: np.ndarray, threshold: float) -> tuple[float, float]:
    """(false positive rate, true positive rate) of deciding positive when score > threshold."""
    decided = score > threshold
    return float(decided[y == 0].mean()), float(decided[y == 1].mean())


def plot_roc(
    predictions: pd.DataFrame, out: Path, class_names: list[str] | None = None, title: str = "",
    threshold: float | None = None,
) -> Path | None:
    """ROC curves from ``prob_*``: one curve for binary tasks, one-vs-rest per class otherwise.
    A binary ``threshold`` (score > threshold is positive) is marked as the operating point."""
    title = f"{title} ROC".strip()
    binary = binary_scores(predictions, class_names)
    if binary is not None:
        y, score = binary
        if len(np.unique(y)) < 2:
            return None
        fpr, tpr, _ = roc_curve(y, score)
        fig = Figure(figsize=(5.0, 5.0), layout="constrained")
        ax = _roc_axes(fig, title)
        positive = _class_names(2, class_names)[1]
        ax.plot(fpr, tpr, color="C0", label=f"class {positive} (AUC {auc(fpr, tpr):.3f})")
        if threshold is not None:
            point = operating_point(y, score, threshold)
            ax.plot(*point, "o", color="C3", markersize=8,
                    label=f"threshold {threshold:.3g}: sensitivity {point[1]:.2f}, "
                          f"specificity {1 - point[0]:.2f}")
        ax.legend(loc="lower right")
        return _save(fig, out)
    encoded = encode_predictions(predictions, class_names)
    if encoded is None or encoded[2] is None or encoded[2].shape[1] < 2:
        return None
    y, _, probs, names = encoded
    fig = Figure(figsize=(5.6, 5.0), layout="constrained")
    ax = _roc_axes(fig, f"{title} (one-vs-rest)")
    drawn = 0
    for k in range(probs.shape[1]):
        positives = y == k
        if positives.all() or not positives.any():
            continue
        fpr, tpr, _ = roc_curve(positives, probs[:, k])
        ax.plot(fpr, tpr, color=f"C{k % 10}", label=f"{names[k]} (AUC {auc(fpr, tpr):.3f})")
        drawn += 1
    if not drawn:
        return None
    ax.legend(loc="lower right", fontsize="small" if drawn > 5 else "medium")
    return _save(fig, out)


def plot_calibration(
    predictions: pd.DataFrame, out: Path, class_names: list[str] | None = None,
    n_bins: int = 10, title: str = "",
) -> Path | None:
    """Reliability diagram of ``prob_1`` for a binary task, with a histogram of the scores."""
    binary = binary_scores(predictions, class_names)
    if binary is None or len(np.unique(binary[0])) < 2:
        return None
    y, score = binary
    observed, predicted = calibration_curve(y, score, n_bins=n_bins, strategy="uniform")
    fig = Figure(figsize=(5.0, 5.6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], color="0.6", linestyle=":", label="perfectly calibrated")
    top.plot(predicted, observed, marker="o", color="C0",
             label=f"model (Brier {brier_score_loss(y, score):.3f})")
    top.set_ylabel("fraction of positives")
    top.set_ylim(-0.02, 1.02)
    top.set_title(f"{title} calibration".strip())
    top.legend(loc="upper left", fontsize="small")
    top.grid(alpha=0.3)
    bottom.hist(score, bins=n_bins, range=(0, 1), color="C0", alpha=0.7)
    bottom.set_xlabel("predicted probability of class 1")
    bottom.set_ylabel("count")
    return _save(fig, out)


# --------------------------------------------------------------------------- segmentation


def plot_score_distribution(
    predictions: pd.DataFrame, out: Path, columns: tuple[str, ...] = ("dice", "iou"),
    title: str = "",
) -> Path | None:
    """Histogram of per-image scores (segmentation ``dice``/``iou``) with their means."""
    present = [c for c in columns if c in predictions.columns
               and pd.to_numeric(predictions[c], errors="coerce").notna().any()]
    if not present:
        return None
    fig = Figure(figsize=(6.4, 3.6), layout="constrained")
    ax = fig.add_subplot()
    for i, col in enumerate(present):
        values = pd.to_numeric(predictions[col], errors="coerce").dropna().to_numpy()
        ax.hist(values, bins=20, range=(0, 1), alpha=0.5, color=f"C{i}",
                label=f"{col} (mean {values.mean():.3f}, n={values.size})")
        ax.axvline(values.mean(), color=f"C{i}", linestyle="--")
    ax.set_xlabel("score per image")
    ax.set_ylabel("images")
    ax.set_title(f"{title} per-image scores".strip())
    ax.legend(loc="upper left", fontsize="small")
    return _save(fig, out)


# --------------------------------------------------------------------------- several runs


def plot_runs_curve(
    curves_by_run: Mapping[str, pd.DataFrame | None], column: str, out: Path
) -> Path | None:
    """One curve (e.g. ``val/loss``) of several runs in one figure; runs without it are skipped."""
    runs = {name: c[column] for name, c in curves_by_run.items()
            if c is not None and column in c.columns and c[column].notna().any()}
    if not runs:
        return None
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = _epoch_axes(fig.add_subplot(), column, column.split("/")[-1])
    for i, (name, series) in enumerate(runs.items()):
        _line(ax, series, label=name, color=f"C{i % 10}", marker=MARKERS[i % len(MARKERS)])
    _epoch_limits(ax, *runs.values())
    ax.legend(fontsize="small")
    return _save(fig, out)


def plot_runs_roc(
    scores_by_run: Mapping[str, tuple[np.ndarray, np.ndarray]], out: Path, title: str = "ROC"
) -> Path | None:
    """Binary ROC curves of several runs in one plot; ``scores_by_run`` maps name → (y, prob_1)."""
    usable = {n: s for n, s in scores_by_run.items() if len(np.unique(s[0])) == 2}
    if not usable:
        return None
    fig = Figure(figsize=(5.6, 5.4), layout="constrained")
    ax = _roc_axes(fig, title)
    for i, (name, (y, score)) in enumerate(usable.items()):
        fpr, tpr, _ = roc_curve(y, score)
        ax.plot(fpr, tpr, color=f"C{i % 10}", label=f"{name} (AUC {auc(fpr, tpr):.3f})")
    ax.legend(loc="lower right", fontsize="small")
    return _save(fig, out)


def roc_curves(
    predictions: pd.DataFrame, class_names: list[str] | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray, float]] | None:
    """ROC curves of one run's predictions as ``{kind: (fpr, tpr, auc)}``.

    Binary tasks give one curve (``"binary"``, score ``prob_1``); multi-class tasks give the
    ``"micro"`` average (every one-vs-rest decision pooled) and the ``"macro"`` average (the
    one-vs-rest curves of the classes present, averaged on a common false-positive grid).
    ``None`` without labels and ``prob_*`` columns or with a single class present.
    """
    binary = binary_scores(predictions, class_names)
    if binary is not None:
        y, score = binary
        if len(np.unique(y)) < 2:
            return None
        fpr, tpr, _ = roc_curve(y, score)
        return {"binary": (fpr, tpr, float(auc(fpr, tpr)))}
    encoded = encode_predictions(predictions, class_names)
    if encoded is None or encoded[2] is None or encoded[2].shape[1] < 3:
        return None
    y, _, probs, _ = encoded
    onehot = np.eye(probs.shape[1], dtype=int)[y]
    present = [k for k in range(probs.shape[1]) if 0 < onehot[:, k].sum() < len(y)]
    if len(present) < 2:
        return None
    fpr, tpr, _ = roc_curve(onehot[:, present].ravel(), probs[:, present].ravel())
    curves = {"micro": (fpr, tpr, float(auc(fpr, tpr)))}
    grid = np.unique(np.concatenate([roc_curve(onehot[:, k], probs[:, k])[0] for k in present]))
    mean_tpr = np.zeros_like(grid)
    for k in present:
        class_fpr, class_tpr, _ = roc_curve(onehot[:, k], probs[:, k])
        mean_tpr += np.interp(grid, class_fpr, class_tpr)
    mean_tpr /= len(present)
    grid, mean_tpr = np.r_[0.0, grid], np.r_[0.0, mean_tpr]  # start at (0, 0) like the others
    curves["macro"] = (grid, mean_tpr, float(auc(grid, mean_tpr)))
    return curves


ROC_STYLES = {"binary": "-", "micro": "-", "macro": "--"}


def plot_runs_roc_curves(
    curves_by_run: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray, float]]], out: Path,
    title: str = "ROC",
) -> Path | None:
    """ROC curves of several runs (from ``roc_curves``): one colour per run; multi-class runs
    draw their micro average solid and their macro average dashed."""
    usable = {name: c for name, c in curves_by_run.items() if c}
    if not usable:
        return None
    fig = Figure(figsize=(5.8, 5.6), layout="constrained")
    ax = _roc_axes(fig, title)
    for i, (name, curves) in enumerate(usable.items()):
        for kind, (fpr, tpr, area) in curves.items():
            label = name if kind == "binary" else f"{name}, {kind}-average"
            ax.plot(fpr, tpr, color=f"C{i % 10}", linestyle=ROC_STYLES.get(kind, "-"),
                    label=f"{label} (AUC {area:.3f})")
    ax.legend(loc="lower right", fontsize="small")
    return _save(fig, out)


def plot_metric_bars(
    values: Mapping[str, tuple[float, float, float]], metric: str, out: Path
) -> Path | None:
    """Horizontal bars of one metric per run with its interval as error bars.

    ``values`` maps run name → ``(value, low, high)``; NaN bounds draw no error bar.
    """
    rows = [(n, v) for n, v in values.items() if np.isfinite(v[0])]
    if not rows:
        return None
    names = [n for n, _ in rows]
    value = np.array([v[0] for _, v in rows])
    low = np.array([v[1] if np.isfinite(v[1]) else v[0] for _, v in rows])
    high = np.array([v[2] if np.isfinite(v[2]) else v[0] for _, v in rows])
    errors = np.vstack([np.clip(value - low, 0, None), np.clip(high - value, 0, None)])
    fig = Figure(figsize=(6.4, max(3.2, 1.2 + 0.45 * len(rows))), layout="constrained")
    ax = fig.add_subplot()
    positions = np.arange(len(rows))
    ax.barh(positions, value, xerr=errors, color="C0", alpha=0.8, capsize=4,
            error_kw={"elinewidth": 1.2})
    for y, v, h in zip(positions, value, high, strict=True):
        ax.text(h, y, f"  {v:.3f}", va="center", fontsize=8)
    ax.set_yticks(positions, names)
    ax.invert_yaxis()
    ax.set_xlabel(metric)
    if np.nanmin(low) >= 0 and np.nanmax(high) <= 1:
        ax.set_xlim(0, 1.12)
    ax.set_title(f"{metric} with 95% interval")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, out)


def plot_detection_curves(curves: Mapping[str, Any], out: Path, title: str = "") -> Path | None:
    """PR curves per class (IoU 0.5), the FROC curve, and the top box score of images with and
    without ground-truth boxes, side by side, from a detection run's ``curves_<split>.json``
    (fonts sized for the page, where the figure is shown about 900 px wide)."""
    with rc_context({"font.size": 13, "axes.titlesize": 14, "legend.fontsize": 12}):
        return _detection_curves(curves, out, title)


def _detection_curves(curves: Mapping[str, Any], out: Path, title: str) -> Path | None:
    fig = Figure(figsize=(12.0, 4.2), layout="constrained")
    pr_ax, froc_ax, hist_ax = fig.subplots(1, 3)
    for name, curve in (curves.get("pr") or {}).items():
        pr_ax.plot(curve["recall"], curve["precision"], label=str(name))
    pr_ax.set(xlabel="recall", ylabel="precision", title=f"{title} PR (IoU 0.5)".strip(),
              xlim=(0, 1), ylim=(0, 1.02))
    if curves.get("pr"):
        pr_ax.legend()
    froc = curves.get("froc") or {}
    if froc.get("fp_per_image"):
        froc_ax.plot(froc["fp_per_image"], froc["sensitivity"], marker=".")
        froc_ax.set_xscale("symlog", linthresh=0.125)
    froc_ax.set(xlabel="false positives per image", ylabel="sensitivity", ylim=(0, 1.02),
                title=f"{title} FROC".strip())
    scores = curves.get("image_scores") or {}
    if scores.get("score"):
        values = np.asarray(scores["score"], float)
        positive = np.asarray(scores["positive"], bool)
        bins = np.linspace(0, 1, 21)
        hist_ax.hist(values[~positive], bins=bins, alpha=0.6, label="no box (healthy)")
        hist_ax.hist(values[positive], bins=bins, alpha=0.6, label="with boxes")
        hist_ax.legend()
    hist_ax.set(xlabel="top box score", ylabel="images", title=f"{title} image scores".strip())
    return _save(fig, out)

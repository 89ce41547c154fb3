"""Plots write valid PNGs from run-folder files, and skip what the files do not allow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medilab.reports import plots
from medilab.reports.runfiles import read_curves


def assert_png(path: Path | None, min_side: int = 250) -> None:
    assert path is not None and path.is_file()
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert min(image.size) >= min_side
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 5  # something was drawn
    assert not list(path.parent.glob(f".{path.name}.*"))  # no temporary file left


def test_read_curves_merges_sparse_rows(multiclass_run: Path, binary_run: Path) -> None:
    curves = read_curves(multiclass_run)
    assert list(curves.index) == [0, 1, 2, 3]
    assert curves.loc[1, "train/loss"] == pytest.approx(0.5)
    assert curves.loc[3, "val/loss"] == pytest.approx(1.1 / 4 + 0.05)
    # the lr monitor's rows have no epoch: they belong to the epoch that follows by step
    assert curves["lr-Adam"].tolist() == pytest.approx([1e-3, 5e-4, 2.5e-4, 1.25e-4])
    binary = read_curves(binary_run)  # train/loss_epoch → train/loss; *_step dropped
    assert "train/loss" in binary.columns
    assert not [c for c in binary.columns if c.endswith(("_step", "_epoch"))]
    assert binary.loc[2, "train/loss"] == pytest.approx(1 / 3)


def test_curve_plots(multiclass_run: Path, tmp_path: Path) -> None:
    curves = read_curves(multiclass_run)
    assert_png(plots.plot_loss_curves(curves, tmp_path / "loss.png"))
    assert_png(plots.plot_metric_curves(curves, tmp_path / "metrics.png"))
    assert_png(plots.plot_lr_curve(curves, tmp_path / "lr.png"), min_side=200)
    no_lr = curves.drop(columns=["lr-Adam"])
    assert plots.plot_lr_curve(no_lr, tmp_path / "none.png") is None
    only_lr = curves[["lr-Adam"]]
    assert plots.plot_loss_curves(only_lr, tmp_path / "none.png") is None
    assert plots.plot_metric_curves(only_lr, tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_multiclass_plots(multiclass_run: Path, tmp_path: Path) -> None:
    frame = pd.read_csv(multiclass_run / "predictions_val.csv")
    names = ["a", "b", "c"]
    assert_png(plots.plot_confusion_matrix(frame, tmp_path / "cm.png", names))
    assert_png(plots.plot_f1_per_class(frame, tmp_path / "f1.png", names))
    assert_png(plots.plot_roc(frame, tmp_path / "roc.png", names))
    assert plots.plot_calibration(frame, tmp_path / "cal.png") is None  # binary only
    without_probs = frame.drop(columns=["prob_0", "prob_1", "prob_2"])
    assert plots.plot_roc(without_probs, tmp_path / "none.png") is None
    assert plots.plot_confusion_matrix(frame.drop(columns=["label"]), tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_binary_plots(binary_run: Path, tmp_path: Path) -> None:
    frame = pd.read_csv(binary_run / "predictions_val.csv")
    assert_png(plots.plot_roc(frame, tmp_path / "roc.png"))
    assert_png(plots.plot_calibration(frame, tmp_path / "cal.png"))
    y, score = plots.binary_scores(frame)
    assert set(np.unique(y)) == {0, 1}
    assert score.tolist() == frame["prob_1"].tolist()


def test_encode_predictions_with_names_and_argmax() -> None:
    frame = pd.DataFrame({"label": ["cat", "dog", "dog", None],
                          "prob_0": [0.9, 0.2, 0.6, 0.5], "prob_1": [0.1, 0.8, 0.4, 0.5]})
    y, pred, probs, names = plots.encode_predictions(frame, ["cat", "dog"])
    assert y.tolist() == [0, 1, 1]  # the unlabelled row is dropped
    assert pred.tolist() == [0, 1, 0]  # argmax of prob_* when there is no prediction column
    assert probs.shape == (3, 2)
    assert names == ["cat", "dog"]
    # string labels without class names are named in sorted order
    strings = pd.DataFrame({"label": ["b", "a"], "prediction": ["b", "b"]})
    y, pred, _, names = plots.encode_predictions(strings)
    assert (names, y.tolist(), pred.tolist()) == (["a", "b"], [1, 0], [1, 1])


def test_f1_per_class_values(tmp_path: Path) -> None:
    frame = pd.DataFrame({"label": [0, 0, 1, 1, 2, 2], "prediction": [0, 1, 1, 1, 2, 0]})
    names, scores = plots.f1_per_class(frame, ["x", "y", "z"])
    assert names == ["x", "y", "z"]
    # class 0: P=1/2 R=1/2; class 1: P=2/3 R=1; class 2: P=1 R=1/2
    assert scores.tolist() == pytest.approx([0.5, 0.8, 2 / 3])
    assert_png(plots.plot_f1_per_class(frame, tmp_path / "f1.png"), min_side=200)


def test_segmentation_and_comparison_plots(segmentation_run: Path, binary_run: Path,
                                           tmp_path: Path) -> None:
    frame = pd.read_csv(segmentation_run / "predictions_val.csv")
    assert_png(plots.plot_score_distribution(frame, tmp_path / "dice.png"), min_side=200)
    assert plots.plot_score_distribution(frame[["image"]], tmp_path / "none.png") is None
    y, score = plots.binary_scores(pd.read_csv(binary_run / "predictions_val.csv"))
    assert_png(plots.plot_runs_roc({"a": (y, score), "b": (y, 1 - score)}, tmp_path / "r.png"))
    bars = {"a": (0.9, 0.85, 0.95), "b": (0.7, float("nan"), float("nan"))}
    assert_png(plots.plot_metric_bars(bars, "auroc", tmp_path / "bars.png"), min_side=150)
    curves = {"a": read_curves(binary_run), "missing": None}
    assert_png(plots.plot_runs_curve(curves, "val/loss", tmp_path / "c.png"))
    assert plots.plot_runs_curve(curves, "val/nothing", tmp_path / "none.png") is None


def test_confusion_matrix_numbers_scale_with_the_matrix() -> None:
    sizes = [plots.annotation_fontsize(k) for k in (2, 5, 10, 15, 20)]
    assert sizes == sorted(sizes, reverse=True)  # fewer classes, bigger numbers
    assert sizes[0] == 16 and plots.annotation_fontsize(10) >= 12 and sizes[-1] >= 8
    # ten classes: a cell's number is at least 14 px tall when the figure spans the page
    # (two grid columns, about 1230 px wide)
    width_px = (2 * plots.matrix_side(10) + 1.6) * plots.DPI
    on_page = plots.annotation_fontsize(10) / 72 * plots.DPI * min(1.0, 1230 / width_px)
    assert on_page >= 14


def test_metric_panels_keep_near_equal_metrics_apart(multiclass_run: Path) -> None:
    curves = read_curves(multiclass_run)
    panels = plots.curve_panels(curves)
    # the fixture logs identical val accuracy, F1 and AUROC: one panel each
    assert list(panels) == ["accuracy", "f1_macro", "auroc"]
    assert panels["accuracy"] == ["val/accuracy", "train/accuracy"]
    assert panels["auroc"] == ["val/auroc"]

"""compare_runs: one page and one CSV for several run folders."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from medilab.cli import main
from medilab.errors import MedilabError
from medilab.reports.compare import _summaries, compare_runs


@pytest.fixture
def two_binary_runs(tmp_path: Path, classification_run_factory) -> tuple[Path, Path]:
    make_classification_run = classification_run_factory
    weak = make_classification_run(tmp_path / "runs", "lab3_early", k=2, skill=0.4, seed=1)
    strong = make_classification_run(tmp_path / "runs", "lab3_late", k=2, skill=1.0, seed=2)
    return weak, strong


def cell_texts(html: str) -> list[str]:
    return re.findall(r"<td[^>]*>(.*?)</td>", html, flags=re.S)


def test_compare_ranks_and_writes_csv(two_binary_runs: tuple[Path, Path], tmp_path: Path) -> None:
    weak, strong = two_binary_runs
    out = compare_runs([weak, strong], tmp_path / "fusion.html")
    html = out.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and 'src="http' not in html
    strong_metrics = json.loads((strong / "metrics.json").read_text())["splits"]["val"]
    weak_metrics = json.loads((weak / "metrics.json").read_text())["splits"]["val"]
    assert strong_metrics["accuracy"]["value"] > weak_metrics["accuracy"]["value"]
    # higher is better for accuracy, lower for loss: the strong run wins both, in bold
    for name in ("accuracy", "auroc", "loss"):
        good, bad = strong_metrics[name], weak_metrics[name]
        good_text = f"{good['value']:.3f} [{good['low']:.3f}, {good['high']:.3f}]"
        bad_text = f"{bad['value']:.3f} [{bad['low']:.3f}, {bad['high']:.3f}]"
        assert f"<strong>{good_text}</strong>" in html
        assert bad_text in cell_texts(html)
    assert "<strong>" + weak.name not in html
    assert html.count("data:image/png;base64,") == 4  # loss, main metric, ROC, bars
    assert "main metric: auroc" in html
    table = pd.read_csv(tmp_path / "fusion.csv")
    assert table["experiment"].tolist() == ["lab3_early", "lab3_late"]
    assert table.loc[1, "accuracy"] == pytest.approx(strong_metrics["accuracy"]["value"])
    assert table.loc[0, "auroc_low"] == pytest.approx(weak_metrics["auroc"]["low"])
    assert 'href="fusion.csv"' in html


def test_compare_multiclass_has_no_roc(tmp_path: Path, classification_run_factory) -> None:
    make_classification_run = classification_run_factory
    a = make_classification_run(tmp_path, "a", k=3, skill=0.5, seed=1)
    b = make_classification_run(tmp_path, "b", k=3, skill=0.9, seed=2)
    html = compare_runs([a, b], tmp_path / "c.html", metric="accuracy").read_text()
    assert "ROC" not in html
    assert html.count("data:image/png;base64,") == 3


def test_same_experiment_twice_gets_distinct_labels(
    tmp_path: Path, classification_run_factory
) -> None:
    make_classification_run = classification_run_factory
    a = make_classification_run(tmp_path, "lab2", timestamp="2026-11-27T10-00-00")
    b = make_classification_run(tmp_path, "lab2", timestamp="2026-11-27T11-00-00", seed=5)
    labels = [run.label for run in _summaries([a, b, a], "val")]
    assert labels == ["lab2 (2026-11-27T10-00-00) #1", "lab2 (2026-11-27T11-00-00)",
                      "lab2 (2026-11-27T10-00-00) #3"]  # the same folder twice: numbered


def test_missing_metrics_json_names_the_folder(two_binary_runs, tmp_path: Path) -> None:
    weak, strong = two_binary_runs
    bare = tmp_path / "runs" / "lab3_mid" / "2026-11-27T12-00-00"
    shutil.copytree(strong, bare)
    (bare / "metrics.json").unlink()
    with pytest.raises(MedilabError, match=r"lab3_mid.2026-11-27T12-00-00.*metrics\.json"):
        compare_runs([weak, bare], tmp_path / "out.html")
    assert not (tmp_path / "out.html").exists() and not (tmp_path / "out.csv").exists()
    with pytest.raises(MedilabError, match="metric 'dice'"):
        compare_runs([weak], tmp_path / "out.html", metric="dice")


def test_cli_compare(two_binary_runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weak, strong = two_binary_runs
    out = tmp_path / "cmp.html"
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", str(weak), str(strong), "--out", str(out), "--split", "val"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip().endswith("cmp.html")
    assert out.is_file() and out.with_suffix(".csv").is_file()
    (strong / "metrics.json").unlink()
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", str(weak), str(strong), "--out", str(out)])
    assert exit_info.value.code == 2
    assert str(strong) in capsys.readouterr().err


def test_compare_segmentation_uses_dice(segmentation_run: Path, tmp_path: Path) -> None:
    out = compare_runs([segmentation_run], tmp_path / "seg.html")
    html = out.read_text(encoding="utf-8")
    assert "main metric: dice" in html and "ROC" not in html
    dice = json.loads((segmentation_run / "metrics.json").read_text())["splits"]["val"]["dice"]
    assert f"<strong>{dice['value']:.3f} [" in html  # a single run is the best of itself
    assert html.count("data:image/png;base64,") == 3  # loss, dice curve, bars


def test_experiment_folder_means_its_latest_run(tmp_path: Path, classification_run_factory):
    old = classification_run_factory(tmp_path, "lab3_early", k=2, timestamp="2026-11-27T09-00-00")
    new = classification_run_factory(tmp_path, "lab3_early", k=2, timestamp="2026-11-27T10-00-00",
                                     seed=4)
    assert old.parent == new.parent
    compare_runs([new.parent], tmp_path / "c.html")
    table = pd.read_csv(tmp_path / "c.csv")
    assert table["run"].tolist() == [new.name]


def test_direction_of_metrics_and_empty_split(two_binary_runs, tmp_path: Path) -> None:
    from medilab.reports.runfiles import lower_is_better

    assert [lower_is_better(m) for m in ("loss", "val/loss", "pixel_error", "hd95", "brier")] == [
        True] * 5
    assert not any(lower_is_better(m) for m in ("precision", "accuracy", "auroc", "dice", "f1"))
    with pytest.raises(MedilabError, match="no run has 'train' metrics"):
        compare_runs(list(two_binary_runs), tmp_path / "out.html", split="train")


def test_curve_metric_falls_back_to_a_logged_metric():
    import pandas as pd

    from medilab.reports.compare import _curve_metric

    logged = pd.DataFrame(columns=["epoch", "val/loss", "val/accuracy", "val/f1_macro"])
    other = pd.DataFrame(columns=["epoch", "val/loss", "val/f1_macro"])
    assert _curve_metric({"a": logged, "b": other}, "auroc") == "f1_macro"
    assert _curve_metric({"a": logged}, "accuracy") == "accuracy"
    assert _curve_metric({"a": pd.DataFrame(columns=["val/loss"])}, "auroc") is None
    assert _curve_metric({"a": None}, "auroc") is None

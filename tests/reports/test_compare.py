"""compare_runs: one page and one CSV for several run folders."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from medilab.cli import main
from medilab.errors import MedilabError
from medilab.reports.compare import _summaries, compare_runs
from medilab.reports.plots import roc_curves


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
    (strong / "report.html").write_text("<html></html>")
    default = compare_runs([weak, strong], tmp_path / "held_out.html").read_text()
    assert "Comparison of 2 runs (test: held out)" in default  # both have a test part
    out = compare_runs([weak, strong], tmp_path / "fusion.html", split="val")
    html = out.read_text(encoding="utf-8")
    assert "(val: selection set, in-sample for what was fitted on it)" in html
    assert html.startswith("<!DOCTYPE html>") and 'src="http' not in html
    strong_metrics = json.loads((strong / "metrics.json").read_text())["splits"]["val"]
    weak_metrics = json.loads((weak / "metrics.json").read_text())["splits"]["val"]
    assert strong_metrics["accuracy"]["value"] > weak_metrics["accuracy"]["value"]
    # higher is better for accuracy, lower for loss: the strong run wins both, in bold
    for name in ("accuracy", "auroc", "loss"):
        good, bad = strong_metrics[name], weak_metrics[name]
        # the value, and under it its interval (narrow columns: no horizontal scroll)
        good_text = (f"<strong>{good['value']:.3f}</strong><br><span class=\"ci\">"
                     f"[{good['low']:.3f}, {good['high']:.3f}]</span>")
        bad_text = (f"{bad['value']:.3f}<br><span class=\"ci\">[{bad['low']:.3f}, "
                    f"{bad['high']:.3f}]</span>")
        assert good_text in html
        assert bad_text in cell_texts(html)
    # a run's name links to its report, when it has one
    assert f'<a href="runs/{strong.parent.name}/{strong.name}/report.html">' in html
    assert f"runs/{weak.parent.name}/{weak.name}/report.html" not in html
    assert "<strong>" + weak.name not in html
    assert html.count("data:image/png;base64,") == 4  # loss, main metric, ROC, bars
    assert "main metric: auroc" in html
    table = pd.read_csv(tmp_path / "fusion.csv")
    assert table["experiment"].tolist() == ["lab3_early", "lab3_late"]
    assert table.loc[1, "accuracy"] == pytest.approx(strong_metrics["accuracy"]["value"])
    assert table.loc[0, "auroc_low"] == pytest.approx(weak_metrics["auroc"]["low"])
    assert 'href="fusion.csv"' in html


def test_roc_curves_micro_and_macro_average(multiclass_run: Path) -> None:
    frame = pd.read_csv(multiclass_run / "predictions_val.csv")
    curves = roc_curves(frame)
    assert set(curves) == {"micro", "macro"}
    probs = frame[["prob_0", "prob_1", "prob_2"]].to_numpy()
    onehot = np.eye(3)[frame["label"].to_numpy()]
    assert curves["micro"][2] == pytest.approx(roc_auc_score(onehot.ravel(), probs.ravel()))
    # the macro curve averages interpolated class curves: close to the mean class AUROC
    macro = roc_auc_score(frame["label"], probs, multi_class="ovr", average="macro")
    assert curves["macro"][2] == pytest.approx(macro, abs=0.01)
    for fpr, tpr, _ in curves.values():
        assert (fpr[0], tpr[0], fpr[-1]) == (0, 0, 1) and tpr[-1] == pytest.approx(1)
    binary = roc_curves(frame.assign(label=frame["label"].clip(0, 1))
                        .drop(columns="prob_2").assign(prob_1=lambda f: 1 - f["prob_0"]))
    assert set(binary) == {"binary"}
    assert roc_curves(frame.drop(columns=["prob_0", "prob_1", "prob_2"])) is None


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
    assert f"<strong>{dice['value']:.3f}</strong><br>" in html  # the best of itself
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


# --------------------------------------------------------------------------- edge cases


def test_out_must_be_html(two_binary_runs, tmp_path: Path) -> None:
    with pytest.raises(MedilabError, match=r"cmp\.png: .*\.html"):
        compare_runs(list(two_binary_runs), tmp_path / "cmp.png")
    assert not list(tmp_path.glob("cmp*"))
    assert compare_runs(list(two_binary_runs), tmp_path / "cmp.HTM").is_file()


def test_runs_on_other_samples_are_not_comparable(two_binary_runs, tmp_path: Path) -> None:
    weak, strong = two_binary_runs
    other = shutil.copytree(strong, tmp_path / "runs" / "lab3_other" / strong.name)
    path = other / "predictions_val.csv"
    frame = pd.read_csv(path)
    frame.assign(sample_id=[f"x{i}" for i in range(len(frame))]).to_csv(path, index=False)
    html = compare_runs([weak, other], tmp_path / "c.html", split="val").read_text("utf-8")
    assert best_cells(html) == []
    assert "Not comparable" in html and html.count("(not comparable)") == 2
    assert pd.read_csv(tmp_path / "c.csv")["samples"].tolist() == ["A", "B"]
    same = compare_runs([weak, strong], tmp_path / "d.html", split="val").read_text("utf-8")
    assert "Not comparable" not in same and "<th scope=\"col\">samples</th>" not in same


def test_lower_is_better_note_only_when_there_is_one(two_binary_runs, segmentation_run: Path,
                                                    tmp_path: Path) -> None:
    html = compare_runs(list(two_binary_runs), tmp_path / "c.html", split="val").read_text()
    assert "lower is better for: loss" in html and "none of these" not in html
    seg = compare_runs([segmentation_run], tmp_path / "s.html")
    assert "lower is better" not in seg.read_text(encoding="utf-8")


# --------------------------------------------------------------------------- engine-written runs


def best_cells(html: str) -> list[str]:
    return [f"{value} {interval}" for value, interval in re.findall(
        r"<td[^>]*><strong>([^<]*)</strong>(?:<br><span class=\"ci\">([^<]*)</span>)?</td>",
        html)]


def test_engine_compare_monitored_metric_and_roc(engine_runs, tmp_path: Path) -> None:
    a, b = engine_runs.digits_a, engine_runs.digits_b
    out = compare_runs([a, b], tmp_path / "cmp.html", split="val")
    html = out.read_text(encoding="utf-8")
    # both monitor val/accuracy: that is the main metric, although they have AUROC too
    assert "main metric: accuracy" in html
    assert "ROC (val, micro/macro-averaged)" in html  # 10 classes
    assert "lower is better" not in html  # no such metric in the table
    assert html.count('href="cmp.csv"') >= 1 and (tmp_path / "cmp.csv").is_file()
    values = [json.loads((r / "metrics.json").read_text())["splits"]["val"]["accuracy"]["value"]
              for r in (a, b)]
    winner = json.loads(((a, b)[int(np.argmax(values))] / "metrics.json").read_text())
    accuracy = winner["splits"]["val"]["accuracy"]
    assert f"{accuracy['value']:.3f} [" in " ".join(best_cells(html))
    plots_dir = tmp_path / "cmp_plots"
    links = re.findall(r'<a href="([^"]+\.png)"', html)
    assert len(links) == 4 and all((tmp_path / link).is_file() for link in links)
    assert {p.name for p in plots_dir.iterdir()} == {"loss.png", "main.png", "roc.png",
                                                    "bars.png"}


def test_engine_crossval_mean_and_sd(engine_runs, tmp_path: Path) -> None:
    folder = engine_runs.crossval
    html = compare_runs([folder], tmp_path / "cv.html").read_text(encoding="utf-8")
    table = pd.read_csv(tmp_path / "cv.csv")
    assert table["run"].tolist() == ["fold0", "fold1"]
    assert table["samples"].tolist() == ["A", "B"]  # each fold holds out other samples
    assert best_cells(html) == []  # so no fold is "best"
    summary = json.loads((folder / "crossval.json").read_text())["metrics"]
    accuracy = summary["accuracy"]
    assert f"{accuracy['mean']:.3f} ± {accuracy['std']:.3f}" in html
    assert "mean ± sd over folds" in html and "cv_digits/fold0" in html
    # the fold folders themselves (as medilab.api.crossval passes them) give the same rows
    again = compare_runs([folder / "fold0", folder / "fold1"], tmp_path / "again.html")
    assert f"{accuracy['mean']:.3f} ± {accuracy['std']:.3f}" in again.read_text(encoding="utf-8")


def test_one_epoch_curves_have_integer_ticks(engine_runs) -> None:
    from matplotlib.figure import Figure

    from medilab.reports.plots import _epoch_axes, _epoch_limits, _line
    from medilab.reports.runfiles import read_curves

    curves = read_curves(engine_runs.crossval / "fold0")
    assert list(curves.index) == [0]  # one epoch
    ax = _epoch_axes(Figure().add_subplot(), "val/loss", "loss")
    _line(ax, curves["val/loss"])
    _epoch_limits(ax, curves)
    assert ax.get_xlim() == (0.5, 1.5)  # epochs counted from 1, as training prints them
    assert list(ax.get_xticks()) == [1]
    assert list(ax.lines[0].get_xdata()) == [1] and ax.lines[0].get_marker() == "o"


def test_engine_study_folder_and_mixed_tasks(engine_runs, tmp_path: Path) -> None:
    study = tmp_path / "study"
    study.mkdir()
    for run in (engine_runs.digits_a, engine_runs.digits_b):
        (study / run.name).symlink_to(run, target_is_directory=True)
    pd.DataFrame({"run": ["digits_a", "digits_b"]}).to_csv(study / "summary.csv", index=False)
    compare_runs([study], tmp_path / "study.html")
    assert pd.read_csv(tmp_path / "study.csv")["run"].tolist() == ["digits_a", "digits_b"]
    with pytest.raises(MedilabError, match=r"different tasks.*classification \(digits_a\)"
                                           r".*segmentation \(circles\)"):
        compare_runs([engine_runs.digits_a, engine_runs.segmentation], tmp_path / "mixed.html")
    assert not (tmp_path / "mixed.html").exists()


def test_compare_escapes_names(engine_runs, tmp_path: Path) -> None:
    run = tmp_path / "<b>x"
    run.mkdir()
    metrics = json.loads((engine_runs.digits_a / "metrics.json").read_text())
    metrics["experiment"] = "<script>alert(1)</script>"
    (run / "metrics.json").write_text(json.dumps(metrics))
    html = compare_runs([run], tmp_path / "c.html").read_text(encoding="utf-8")
    assert "<script>" not in html and "<b>x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;b&gt;x" in html

"""build_report: a self-contained HTML page from the files of a run folder."""

from __future__ import annotations

import json
import math
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medilab.cli import main
from medilab.errors import InputFileError, MedilabError
from medilab.reports import plots
from medilab.reports.html import format_interval
from medilab.reports.report import GALLERY_CAP, build_report
from medilab.reports.runfiles import read_curves


class Links(HTMLParser):
    """Collect every src/href and the start tags of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.urls += [v or "" for k, v in attrs if k in ("src", "href")]


def parse(html: str) -> Links:
    links = Links()
    links.feed(html)
    return links


def assert_self_contained(html: str) -> Links:
    assert html.startswith("<!DOCTYPE html>")
    assert '<html lang="en">' in html and '<meta charset="utf-8">' in html
    links = parse(html)
    assert "link" not in links.tags and "script" not in links.tags
    for url in links.urls:
        assert not url.startswith(("http:", "https:", "//")), url
    assert 'src="http' not in html and "url(" not in html
    return links


def test_format_interval() -> None:
    assert format_interval(0.97123, 0.9551, 0.98349) == "0.971 [0.955, 0.983]"
    assert format_interval(0.5) == "0.500"
    assert format_interval(math.nan, 0.1, 0.2) == "–"
    assert format_interval(1234.56, 1000.0, 1500.0) == "1234.6 [1000.0, 1500.0]"


def test_classification_report(multiclass_run: Path) -> None:
    out = build_report(multiclass_run)
    assert out == multiclass_run / "report.html"
    html = out.read_text(encoding="utf-8")
    links = assert_self_contained(html)
    metrics = json.loads((multiclass_run / "metrics.json").read_text())
    accuracy = metrics["splits"]["val"]["accuracy"]
    expected = f"{accuracy['value']:.3f} [{accuracy['low']:.3f}, {accuracy['high']:.3f}]"
    assert expected in html
    assert "0.971 [0.956, 0.986]" in html  # test split
    assert "n = 120" in html and "n = 60" in html
    assert "sex=F" in html and "0.800<br><span class=\"ci\">[0.780, 0.820]" in html  # subgroups
    assert "1000 bootstrap resamples of patients" in html  # notes
    assert "<details>" in html and "num_classes: 3" in html  # resolved config
    assert "num_classes=3, in_chans=1" in html  # config summary
    for name in ("predictions_val.csv", "metrics.json", "checkpoints/best.ckpt"):
        assert name in links.urls
    made = sorted(p.name for p in (multiclass_run / "plots").glob("*.png"))
    assert made == ["learning_rate.png", "loss_curves.png", "metric_curves.png",
                    "val_confusion_matrix.png", "val_f1_per_class.png", "val_roc.png"]
    images = [u for u in links.urls if u.startswith("data:image/png;base64,")]
    assert len(images) == len(made)
    assert "2026-11-27 10:00:00" in html  # run date from the folder name


def test_binary_report_has_calibration(binary_run: Path) -> None:
    html = build_report(binary_run).read_text(encoding="utf-8")
    assert (binary_run / "plots" / "val_calibration.png").is_file()
    assert "val: calibration" in html
    assert html.count("data:image/png;base64,") == 7


def test_segmentation_report_cases_and_gallery(segmentation_run: Path) -> None:
    cams = segmentation_run / "plots" / "cams"
    cams.mkdir()
    rng = np.random.default_rng(0)
    for i in range(GALLERY_CAP + 6):
        Image.fromarray((rng.random((16, 16)) * 255).astype(np.uint8)).save(cams / f"c{i:02d}.png")
    html = build_report(segmentation_run).read_text(encoding="utf-8")
    assert_self_contained(html)
    frame = pd.read_csv(segmentation_run / "predictions_val.csv").sort_values("dice")
    best, worst = frame["image"].iloc[-3:], frame["image"].iloc[:3]
    cases = html[html.index('id="cases"'):]
    for image in [*best, *worst]:
        assert image in cases
    assert cases.index(best.iloc[-1]) < cases.index("Worst") < cases.index(worst.iloc[0])
    assert cases.count("data:image/png;base64,") == 6  # each case shows its overlay
    assert "no overlay image" not in cases
    assert "Gallery: overlays" in html and "Gallery: cams" in html
    assert f"showing {GALLERY_CAP} of {GALLERY_CAP + 6} images in plots/cams/" in html
    assert "empty masks score Dice 1" in html
    assert (segmentation_run / "plots" / "val_scores.png").is_file()
    assert not (segmentation_run / "plots" / "val_confusion_matrix.png").exists()


def test_report_from_curves_only(tmp_path: Path, multiclass_run: Path) -> None:
    run = tmp_path / "partial"
    run.mkdir()
    (run / "metrics.csv").write_bytes((multiclass_run / "metrics.csv").read_bytes())
    html = build_report(run).read_text(encoding="utf-8")
    assert "No metrics.json in this run folder yet" in html
    assert html.count("data:image/png;base64,") == 3  # loss, metrics, learning rate


def test_report_errors(tmp_path: Path) -> None:
    with pytest.raises(MedilabError, match="nowhere"):
        build_report(tmp_path / "nowhere")
    (tmp_path / "metrics.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(InputFileError, match="metrics.json: not valid JSON"):
        build_report(tmp_path)
    assert not (tmp_path / "report.html").exists()


def test_cli_report(tmp_path: Path, multiclass_run: Path,
                    capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "metrics_only"
    run.mkdir()
    (run / "metrics.json").write_bytes((multiclass_run / "metrics.json").read_bytes())
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(run)])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"report: {run / 'report.html'}"
    assert "0.971 [0.956, 0.986]" in (run / "report.html").read_text(encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(tmp_path / "missing")])
    assert exit_info.value.code == 2
    assert "missing: run folder not found" in capsys.readouterr().err


def test_confidence_level_and_nested_entries(multiclass_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "metrics_only"
    run.mkdir()
    path = run / "metrics.json"
    metrics = json.loads((multiclass_run / "metrics.json").read_text())
    metrics["confidence"] = 0.9
    metrics["checkpoint"] = "last"
    metrics["splits"]["val"]["f1_per_class"] = {"0": 0.9, "1": 0.8}  # a nested table: not a row
    path.write_text(json.dumps(metrics))
    html = build_report(run).read_text(encoding="utf-8")
    assert "90% interval" in html and "checkpoint: last" in html
    assert "f1_per_class" not in html.split('id="subgroups"')[0]


def test_overlays_found_by_image_name(segmentation_run: Path) -> None:
    path = segmentation_run / "predictions_val.csv"
    pd.read_csv(path).drop(columns=["overlay"]).to_csv(path, index=False)
    html = build_report(segmentation_run).read_text(encoding="utf-8")
    cases = html[html.index('id="cases"'):]
    assert cases.count("data:image/png;base64,") == 6


def test_large_gallery_images_become_thumbnails(segmentation_run: Path) -> None:
    big = segmentation_run / "plots" / "overlays" / "case00.png"
    pixels = np.random.default_rng(1).integers(0, 255, (900, 1200, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(big)
    html = build_report(segmentation_run).read_text(encoding="utf-8")
    links = parse(html)
    thumbs = [u for u in links.urls if u.startswith("data:image/jpeg;base64,")]
    dice = pd.read_csv(segmentation_run / "predictions_val.csv").sort_values("dice")["image"]
    in_cases = "images/case00.png" in [*dice.iloc[:3], *dice.iloc[-3:]]
    assert len(thumbs) == 1 + in_cases  # the gallery, and the cases when it is one
    assert len(thumbs[0]) < big.stat().st_size / 4
    assert "plots/overlays/case00.png" in links.urls  # the thumbnail links to the full image


# --------------------------------------------------------------------------- engine-written runs


def linked_images(html: str) -> list[tuple[str, str]]:
    """``(href, img src)`` of every image wrapped in a link."""
    return re.findall(r'<a href="([^"]*)"[^>]*>\s*<img src="([^"]*)"', html)


def copy_run_files(run: Path, to: Path, names: tuple[str, ...] = (
        "metrics.json", "metrics.csv", "config.yaml", "ensemble.json")) -> Path:
    """A copy of some files of a run folder (without predictions: no slow plots)."""
    to.mkdir(parents=True)
    for name in names:
        if (run / name).is_file():
            shutil.copy(run / name, to / name)
    return to


def test_engine_classification_report(engine_runs) -> None:
    run = engine_runs.digits_a  # report.html as medilab.api.train wrote it
    html = (run / "report.html").read_text(encoding="utf-8")
    assert_self_contained(html)
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["splits"]) == {"val", "test"}
    for split in ("val", "test"):  # the held-out test split is on the page, not only val
        accuracy = metrics["splits"][split]["accuracy"]
        assert f"n = {metrics['n'][split]}" in html
        assert format_interval(accuracy["value"], accuracy["low"], accuracy["high"]) in html
    assert (run / "plots" / "test_confusion_matrix.png").is_file()
    for split in ("val", "test"):  # the engine's calibration block: ECE in each split's table
        ece = metrics["calibration"][split]["ece"]
        assert f"<td>ece (calibration error)</td><td class=\"num\">{ece:.3f}</td>" in html
    # epochs run, the best epoch of the monitored val/accuracy (counted from 1) and why
    # training stopped, from the engine's training summary; it agrees with metrics.csv
    training = metrics["training"]
    best = int(read_curves(run)["val/accuracy"].idxmax()) + 1
    assert training["best_epoch"] == best
    assert "<span>epochs run</span>2 of 2" in html
    assert f"<span>best epoch</span>{best} (val/accuracy " in html
    assert f"<span>stopped</span>{training['stop_reason']}" in html
    # every image opens its PNG from the run folder
    pairs = linked_images(html)
    images = re.findall(r"<img ", html)
    assert len(pairs) == len(images) >= 8
    for href, src in pairs:
        assert href.endswith(".png") and (run / href).is_file(), href
        assert src.startswith("data:image/")


def test_engine_metric_curves_one_panel_per_metric(engine_runs) -> None:
    curves = read_curves(engine_runs.digits_a)
    panels = plots.curve_panels(curves)
    # accuracy and F1 (near-equal values) each get their own panel, train beside val
    assert panels["accuracy"] == ["val/accuracy", "train/accuracy"]
    assert panels["f1_macro"] == ["val/f1_macro", "train/f1_macro"]
    assert not [name for name in panels if "loss" in name]


def test_training_block_from_metrics_json(engine_runs, tmp_path: Path) -> None:
    run = copy_run_files(engine_runs.digits_a, tmp_path / "run")
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["training"] = {"epochs_run": 7, "best_epoch": 4, "stop_reason": "early_stopping",
                           "monitor": "val/accuracy", "best_score": 0.9123}
    metrics["threshold"] = {"value": 0.42, "chosen_on": "val", "rule": "Youden's J maximal"}
    metrics["splits"]["test"]["accuracy"]["skipped"] = 17
    (run / "metrics.json").write_text(json.dumps(metrics))
    html = build_report(run).read_text(encoding="utf-8")
    # which figure is which: test (held out) first and in bold, val marked as the selection set
    assert html.index("<strong>test</strong>") < html.index("val (n = ")
    assert ": held out</caption>" in html
    assert ": selection set, in-sample for what was fitted on it</caption>" in html
    assert "the held-out test figures are the ones to quote" in html
    assert "were skipped, not scored 0: accuracy (test: 17)" in html
    assert "<span>epochs run</span>7 of 2" in html
    assert "<span>best epoch</span>4 (val/accuracy 0.912)" in html
    assert "<span>stopped</span>early stopping" in html
    assert "Decision threshold 0.420 chosen on val: Youden" in html
    # without the block (runs written before it existed): read off metrics.csv
    del metrics["training"]
    (run / "metrics.json").write_text(json.dumps(metrics))
    html = build_report(run).read_text(encoding="utf-8")
    curves = read_curves(run)
    best = int(curves["val/accuracy"].idxmax())
    score = format_interval(float(curves.loc[best, "val/accuracy"]))
    assert "<span>epochs run</span>2 of 2" in html
    assert f"<span>best epoch</span>{best + 1} (val/accuracy {score})" in html
    assert "<span>stopped</span>" not in html


def test_engine_segmentation_report(engine_runs) -> None:
    run = engine_runs.segmentation  # report.html as medilab.api.train wrote it
    html = (run / "report.html").read_text(encoding="utf-8")
    assert_self_contained(html)
    frame = pd.read_csv(run / "predictions_val.csv", dtype={"sample_id": str})
    assert len(frame) == 2
    cases = html[html.index('id="cases"'):]
    best, worst = cases.split("<h3>Worst</h3>")
    shown_best = [i for i in frame["sample_id"] if f'alt="overlay of {i}"' in best]
    shown_worst = [i for i in frame["sample_id"] if f'alt="overlay of {i}"' in worst]
    assert len(shown_best) == len(shown_worst) == 1  # never the same image in both
    assert set(shown_best) | set(shown_worst) == set(frame["sample_id"])
    assert frame["sample_id"].str.startswith("0").all()  # ids shown as written: 02, not 2
    legend = "predicted foreground tinted red; ground truth outlined in green"
    assert legend in cases and legend in html[: html.index('id="cases"')]  # gallery too


def test_engine_ensemble_report(engine_runs, tmp_path: Path) -> None:
    run = copy_run_files(engine_runs.ensemble, tmp_path / "ensemble")
    html = build_report(run).read_text(encoding="utf-8")
    assert "Ensemble of 2 runs" in html
    assert "ensemble of 2 runs (simple_nn): mean probability" in html
    members = html[html.index('id="ensemble"'):html.index("</section>",
                                                          html.index('id="ensemble"'))]
    for member, name in ((engine_runs.digits_a, "digits_a"), (engine_runs.digits_b, "digits_b")):
        assert str(member.resolve()) in members and f"<td>{name}</td>" in members
    assert members.index("digits_a") < members.index("digits_b")


def test_user_strings_are_escaped(engine_runs, tmp_path: Path) -> None:
    run = copy_run_files(engine_runs.digits_a, tmp_path / "<i>run")
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["class_names"][0] = "<script>alert(1)</script>"
    metrics["experiment"] = '<img src=x onerror="alert(2)">'
    metrics["notes"] = ["<b>bold</b> & more"]
    (run / "metrics.json").write_text(json.dumps(metrics))
    html = build_report(run).read_text(encoding="utf-8")
    assert "<script>" not in html and "<img src=x" not in html and "<i>run" not in html
    assert "&lt;img src=x onerror=&#34;alert(2)&#34;&gt;" in html
    assert "&lt;i&gt;run" in html and "&lt;b&gt;bold&lt;/b&gt; &amp; more" in html
    assert "script" not in parse(html).tags


def test_every_template_autoescapes() -> None:
    from medilab.reports.html import _environment

    env = _environment()
    assert env.autoescape is True  # not only for *.html names
    assert env.from_string("{{ value }}").render(value="<b>&") == "&lt;b&gt;&amp;"


def test_lab2_page_subgroups_gaps_config_and_operating_point(binary_run: Path) -> None:
    """Subgroup cells stack the interval under the value (no horizontal scroll), the largest
    gap is said, the config summary names covariates, group and data root, and the ROC marks
    the operating point; classes and the positive one are named."""
    from medilab.reports.plots import operating_point

    def entry(value):
        return {"value": value, "low": round(value - 0.02, 4), "high": round(value + 0.02, 4)}

    metrics = json.loads((binary_run / "metrics.json").read_text())
    metrics["subgroups"]["val"]["age=<40 years"] = {"accuracy": entry(0.9), "n": 30}
    metrics["subgroup_gaps"] = {"val": {"column": "sex", "metric": "accuracy",
                                        "difference": 0.1, "best": "F", "worst": "M"}}
    metrics["threshold"] = {"value": 0.6, "chosen_on": "val", "rule": "Youden"}
    metrics["class_names"], metrics["positive_class"] = ["normal", "malignant"], "malignant"
    (binary_run / "metrics.json").write_text(json.dumps(metrics))
    config = (binary_run / "config.yaml").read_text().replace(
        "  batch_size: 32\n", "  batch_size: 32\n  root: /data/nih1000\n"
        "  covariates: [age, sex]\n  group: patient_id\n")
    (binary_run / "config.yaml").write_text(config)
    html = build_report(binary_run).read_text(encoding="utf-8")
    assert '<div class="scroll">' not in html.split('id="subgroups"')[1].split("</section>")[0]
    assert "0.800<br><span class=\"ci\">[0.780, 0.820]</span>" in html
    assert "Largest gap: accuracy differs by 0.100 between sex = F (highest) and sex = M" in html
    for key, value in (("data.root", "/data/nih1000"), ("data.covariates", "age, sex"),
                       ("data.group", "patient_id")):
        assert f'<th scope="row">{key}</th><td>{value}</td>' in html
    assert "0 = normal · 1 = malignant" in html and "malignant (sensitivity, ROC" in html
    y, score = np.array([0, 0, 1, 1]), np.array([0.2, 0.7, 0.6, 0.9])
    assert operating_point(y, score, 0.6) == (0.5, 0.5)  # 0.6 itself is not above it


def test_age_bands_are_ordered_with_units():
    from medilab.config import EvaluationConfig
    from medilab.tasks.classification_metrics import subgroup_tables

    rng = np.random.default_rng(0)
    ages = np.array([25, 35, 45, 55, 65, 75, 39, 40, 59, 60] * 6)
    labels = np.arange(len(ages)) % 2
    probs = np.stack([1 - (p := rng.random(len(ages))), p], axis=1)
    tables = subgroup_tables(probs, labels, pd.DataFrame({"age": ages}),
                             EvaluationConfig(subgroups=["age"], bootstrap_samples=5))
    names = [k for k in tables if k.startswith("age=")]
    assert names == ["age=<40 years", "age=40 to <60 years", "age=≥60 years"]
    assert tables["age=40 to <60 years"]["n"] == 24  # 45, 55, 40, 59: 40 in, 60 out

"""build_report: a self-contained HTML page from the files of a run folder."""

from __future__ import annotations

import json
import math
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medilab.cli import main
from medilab.errors import InputFileError, MedilabError
from medilab.reports.html import format_interval
from medilab.reports.report import GALLERY_CAP, build_report


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
    assert "sex=F" in html and "0.800 [0.780, 0.820]" in html  # subgroup table
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
    assert capsys.readouterr().out.strip() == str(run / "report.html")
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

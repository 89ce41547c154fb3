"""task: detection end to end on a box table: train, evaluate, predict, explain, bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medilab import api
from medilab.config import validate_config
from medilab.data.sources.box_table import BoxTableSource
from medilab.errors import InputFileError, MedilabError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_box_table(root, n=24, size=64, seed=0):
    """Dark noisy PNGs; three of four hold one bright square (its box in boxes.csv)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, boxes = [], []
    for i in range(n):
        pixels = rng.normal(50, 12, (size, size)).clip(0, 255)
        name = f"im{i:02d}.png"
        if i % 4:
            side = int(rng.integers(12, 20))
            x, y = (int(v) for v in rng.integers(2, size - 2 - side, 2))
            pixels[y:y + side, x:x + side] = 230
            boxes.append({"image": name, "label": "TB", "x1": x, "y1": y, "x2": x + side,
                          "y2": y + side})
        Image.fromarray(pixels.astype(np.uint8)).save(root / "images" / name)
        images.append({"image": name, "width": size, "height": size})
    pd.DataFrame(images).to_csv(root / "images.csv", index=False)
    pd.DataFrame(boxes).to_csv(root / "boxes.csv", index=False)
    return root


def config(root, **data):
    return validate_config({
        "experiment": "tiny_boxes", "task": "detection", "seed": 0,
        "data": {"source": "box_table", "root": str(root), "size": 64, "batch_size": 4,
                 "val_fraction": 0.25, **data},
        "model": {"name": "fasterrcnn_small"},
        "optimizer": {"name": "adam", "lr": 0.001},
        "warmup": {"steps": 4},
        "trainer": {"max_epochs": 3, "progress_bar": False, "monitor": "val/ap50",
                    "monitor_mode": "max", "gradient_clip_val": 10.0},
        "evaluation": {"bootstrap_samples": 20},
    })


def test_negatives_are_kept_and_split_is_stratified(tmp_path):
    dm = BoxTableSource().build_datamodule(config(write_box_table(tmp_path / "d")), None)
    assert len(dm.manifest) == 24 and sum(len(b) == 0 for b in dm.manifest["boxes"]) == 6
    val = dm.splits[dm.splits["split"] == "val"]
    assert 0 < val["label"].sum() < len(val)
    assert dm.classes == ["TB"]


def test_train_evaluate_predict_explain(tmp_path):
    root = write_box_table(tmp_path / "d")
    run = api.train(config(root), run_dir=tmp_path / "run")
    metrics = json.loads((run / "metrics.json").read_text())
    val = metrics["splits"]["val"]
    assert {"map", "ap50", "ap40", "recall50@100", "froc_mean", "image_auroc"} <= set(val)
    assert metrics["n"]["val"] == 6  # images (a quarter of 24), not boxes
    assert (run / "curves_val.json").is_file()
    assert (run / "plots" / "val_detection_curves.png").is_file()  # PR, FROC, image scores
    assert "val_detection_curves.png" in (run / "report.html").read_text()
    frame = pd.read_csv(run / "predictions_val.csv")
    assert list(frame.columns) == ["image", "label", "score", "x1", "y1", "x2", "y2"]
    cases = pd.read_csv(run / "cases_val.csv", keep_default_na=False)
    assert len(cases) == 6 and cases["matched"].is_monotonic_decreasing
    drawn = cases[cases["overlay"] != ""]
    assert len(drawn) == 6  # 3 best + 3 worst of 6 images
    assert Image.open(run / drawn["overlay"].iloc[0]).size == (64, 64)
    report = (run / "report.html").read_text()
    assert "by matched boxes, of 6 images" in report and "Ground-truth boxes green" in report
    assert "Gallery: cases_val" not in report  # the cases are shown once, with their legend
    assert "loss.name" not in report  # a detector has its own losses
    assert "ap50 / ap40: average precision" in report and "recall50@k:" in report
    assert re.search(r"truth_boxes \d+(,|<)", report) and "truth_boxes 1.000" not in report

    (root / "new").mkdir()
    Image.open(root / "images" / "im01.png").resize((128, 96)).save(root / "new" / "a.png")
    (root / "new" / "broken.png").write_bytes(b"no image here")
    out = api.predict(run, root / "new", tmp_path / "boxes.csv", min_score=0.0)
    boxes = pd.read_csv(out, keep_default_na=False)
    assert set(boxes["image"]) == {"a.png", "broken.png"}
    assert boxes[boxes["image"] == "broken.png"]["error"].iloc[0] != ""
    found = boxes[(boxes["image"] == "a.png") & (boxes["x2"] != "")]
    if len(found):  # barely trained: boxes may or may not pass the detector's own threshold
        assert (found[["x2", "y2"]].astype(float).max() <= [128, 96]).all()  # original pixels

    cams = api.explain(run, root / "new" / "a.png", tmp_path / "cams", "eigencam")
    width, height = Image.open(cams[0]).size  # the image's size, a title above, a colour bar
    assert width == 128 and height > 96
    with pytest.warns(UserWarning, match=r"no box scored ≥ 1.5.*\(a_eigencam.png\)"):
        fallback = api.explain(run, root / "new" / "a.png", tmp_path / "fb", "ablationcam",
                               min_score=1.5)  # no box: named for the EigenCAM it shows
    assert [p.name for p in fallback] == ["a_eigencam.png"]

    # real CR DICOMs (MONOCHROME1 with VOI LUT, JPEG 2000): read, predicted, boxes on their grid
    import pydicom
    from pydicom.data import get_testdata_file

    dicoms = tmp_path / "dicoms"
    dicoms.mkdir()
    for name in ("RG1_UNCR.dcm", "RG1_J2KR.dcm"):
        (dicoms / name).write_bytes(Path(get_testdata_file(name)).read_bytes())
    rows = pd.read_csv(api.predict(run, dicoms, tmp_path / "dcm.csv", min_score=0.0),
                       keep_default_na=False)
    assert set(rows["image"]) == {"RG1_UNCR.dcm", "RG1_J2KR.dcm"}
    assert (rows["error"] == "").all()
    shape = pydicom.dcmread(dicoms / "RG1_UNCR.dcm").pixel_array.shape
    boxed = rows[rows["x2"] != ""]
    assert (boxed["x2"].astype(float) <= shape[1]).all() and (
        boxed["y2"].astype(float) <= shape[0]).all()


def test_bad_boxes_and_missing_images_are_one_line_errors(tmp_path):
    root = write_box_table(tmp_path / "d")
    boxes = pd.read_csv(root / "boxes.csv")
    boxes.loc[0, "x2"] = boxes.loc[0, "x1"] - 3
    boxes.to_csv(root / "boxes.csv", index=False)
    with pytest.raises(MedilabError, match=r"boxes.csv: row 1 \(image im01.png\): .*no area"):
        BoxTableSource().build_datamodule(config(root), None)
    boxes.loc[0, "x2"] = 500  # outside the 64 px image
    boxes.to_csv(root / "boxes.csv", index=False)
    with pytest.raises(MedilabError, match=f"{boxes.loc[0, 'image']}.*outside"):
        BoxTableSource().build_datamodule(config(root), None)
    root = write_box_table(tmp_path / "e")
    (root / "images" / "im05.png").unlink()
    with pytest.raises(InputFileError, match="im05.png"):
        BoxTableSource().build_datamodule(config(root), None)
    root = write_box_table(tmp_path / "f")
    with pytest.raises(MedilabError, match="trainer.monitor"):
        api.train(config(root).model_copy(update={"trainer": config(root).trainer.model_copy(
            update={"monitor": "val/loss"})}), run_dir=tmp_path / "bad")


def test_tbx11k_box_table(medilab_data):
    dm = BoxTableSource().build_datamodule(
        config(medilab_data / "tbx11k", class_agnostic=True, agnostic_name="TB"), None)
    assert len(dm.manifest) == 752 and dm.classes == ["TB"]


def _raw(root, **sections):
    raw = {"task": "detection", "data": {"source": "box_table", "root": str(root)},
           "model": {"name": "fasterrcnn_small"}, "trainer": {"monitor": "val/ap50"}}
    return {**raw, **sections}


def test_old_scheduler_warmup_steps_moves_to_the_warmup_section(tmp_path):
    with pytest.warns(FutureWarning, match=r"lab.yaml: scheduler.warmup_steps is deprecated; "
                      r"set warmup.steps instead"):
        old = validate_config(_raw(tmp_path, scheduler={"name": "cosine", "warmup_steps": 7}),
                              "lab.yaml")
    new = validate_config(_raw(tmp_path, scheduler={"name": "cosine"}, warmup={"steps": 7}))
    assert old.model_dump() == new.model_dump()
    assert new.warmup.steps == 7 and "warmup_steps" not in new.scheduler.model_dump()  # type: ignore[attr-defined]
    assert validate_config(_raw(tmp_path)).warmup.steps == 0  # type: ignore[attr-defined]
    with pytest.raises(MedilabError, match="scheduler.warmup_steps and warmup.steps are both "
                       "set; keep warmup.steps only"):
        validate_config(_raw(tmp_path, scheduler={"warmup_steps": 7}, warmup={"steps": 7}))
    with pytest.raises(MedilabError, match=r"field 'warmup.steps'.*\(from -o "
                       r"scheduler.warmup_steps=-1\)"), pytest.warns(FutureWarning):
        validate_config(_raw(tmp_path, scheduler={"warmup_steps": -1}),
                        overrides=["scheduler.warmup_steps=-1"])


def test_classification_only_evaluation_options_warn_under_detection(tmp_path):
    with pytest.warns(UserWarning, match=r"lab.yaml: evaluation.temperature_scaling has no "
                      r"effect on task 'detection'; ignored") as caught:
        validate_config(_raw(tmp_path, evaluation={"temperature_scaling": True,
                                                   "bootstrap_samples": 10}), "lab.yaml")
    assert len(caught) == 1  # bootstrap_samples is every task's

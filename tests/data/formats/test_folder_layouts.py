"""Image folder + CSV, mask folders paired by a filename key, boxes from CSV and COCO."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medilab.data.formats import (
    boxes_csv_manifest,
    image_folder_manifest,
    mask_folder_manifest,
    pair_files,
    read_boxes_csv,
    read_coco,
)
from medilab.errors import InputFileError


def _png(path, shape=(6, 6), value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(shape, value, np.uint8)).save(path)
    return path


def test_image_folder_with_metadata(tmp_path):
    for name in ("a.png", "b.png"):
        _png(tmp_path / "images" / name)
    pd.DataFrame({"image": ["a.png", "b.png"], "patient_id": [7, 8], "age": [30, None],
                  "label": [0, 1]}).to_csv(tmp_path / "metadata.csv", index=False)
    manifest = image_folder_manifest(tmp_path, covariates=["age"], nan_policy="impute")
    assert manifest["image"].tolist() == [str(tmp_path / "images" / n) for n in ("a.png", "b.png")]
    assert manifest["patient_id"].tolist() == ["7", "8"]
    assert manifest["age_missing"].tolist() == [0, 1]
    with pytest.raises(InputFileError, match=r"metadata\.csv: row 2 \(id b\), column 'age'"):
        image_folder_manifest(tmp_path / "metadata.csv", covariates=["age"])


def test_drive_like_pairing(tmp_path):
    for n in (21, 22):
        _png(tmp_path / "images" / f"{n}_training.png")
        _png(tmp_path / "1st_manual" / f"{n}_manual1.png")
        _png(tmp_path / "mask" / f"{n}_training_mask.png")
    manifest = mask_folder_manifest(tmp_path, masks={"mask": "1st_manual", "fov": "mask"},
                                    check_masks=True)
    assert manifest["sample_id"].tolist() == ["21_training", "22_training"]
    assert manifest["mask"].iloc[1].endswith("22_manual1.png")
    assert manifest["fov"].iloc[0].endswith("21_training_mask.png")
    (tmp_path / "1st_manual" / "22_manual1.png").unlink()
    with pytest.raises(InputFileError, match="22_training.png: no file with key '22'"):
        mask_folder_manifest(tmp_path, masks={"mask": "1st_manual"})


def test_regex_key_rule(tmp_path):
    _png(tmp_path / "img" / "case_a_ct.png")
    _png(tmp_path / "seg" / "case_a_label.png")
    table = pair_files(tmp_path / "img", {"mask": tmp_path / "seg"}, key=r"^(case_\w)_")
    assert table["mask"].iloc[0].endswith("case_a_label.png")


def test_real_isbi_and_drive(medilab_data):
    isbi = mask_folder_manifest(medilab_data / "isbi2012")
    assert len(isbi) == 20 and isbi["mask"].iloc[3].endswith("labels/03.png")
    drive = mask_folder_manifest(medilab_data / "drive" / "training",
                                 masks={"mask": "1st_manual", "fov": "mask"})
    assert len(drive) == 20 and drive["fov"].iloc[0].endswith("21_training_mask.gif")


def test_boxes_csv_formats(tmp_path):
    (tmp_path / "xywh.csv").write_text("image,label,x,y,w,h\na.png,tb,10,20,5,6\n")
    (tmp_path / "xyxy.csv").write_text("image,label,x1,y1,x2,y2\na.png,tb,10,20,15,26\n")
    a, b = read_boxes_csv(tmp_path / "xywh.csv"), read_boxes_csv(tmp_path / "xyxy.csv")
    assert a[["x1", "y1", "x2", "y2"]].values.tolist() == [[10, 20, 15, 26]]
    pd.testing.assert_frame_equal(a, b)
    (tmp_path / "bad.csv").write_text("image,x1,y1,x2,y2\na.png,10,20,5,26\n")
    with pytest.raises(InputFileError,
                       match=r"bad\.csv: row 1 \(image a\.png\): box \[10, 20, 5, 26\] has no "):
        read_boxes_csv(tmp_path / "bad.csv")


def test_coco(tmp_path):
    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png")
    coco = {"images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}],
            "annotations": [{"image_id": 1, "bbox": [1, 2, 3, 4], "category_id": 5}],
            "categories": [{"id": 5, "name": "nodule"}]}
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    manifest = read_coco(tmp_path / "ann.json")
    assert manifest["boxes"].tolist() == [[[1.0, 2.0, 4.0, 6.0]], []]
    assert manifest["box_labels"].tolist() == [["nodule"], []]


def test_real_tbx11k(medilab_data):
    root = medilab_data / "tbx11k"
    manifest = boxes_csv_manifest(root / "boxes.csv", images_csv=root / "images.csv")
    assert len(manifest) == 752
    assert manifest["boxes"].map(len).sum() == 902
    assert (manifest["boxes"].map(len) > 0).sum() == 599

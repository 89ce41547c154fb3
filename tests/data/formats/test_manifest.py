"""Manifest validation: errors name the file, the row and the column."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medilab.data.formats.manifest import (
    load_manifest,
    save_manifest,
    validate_manifest,
)
from medilab.errors import InputFileError


@pytest.fixture
def folder(tmp_path):
    for i in range(3):
        Image.fromarray(np.full((8, 10), i * 50, np.uint8)).save(tmp_path / f"img{i}.png")
    Image.fromarray(np.zeros((8, 10), np.uint8)).save(tmp_path / "mask_ok.png")
    Image.fromarray(np.zeros((6, 10), np.uint8)).save(tmp_path / "mask_bad.png")
    return tmp_path


def _frame(folder, **extra):
    data = {
        "image": [str(folder / f"img{i}.png") for i in range(3)],
        "label": [0, 1, 1],
        "patient_id": ["a", "b", "c"],
        "age": [40.0, 50.0, 60.0],
    }
    data.update(extra)
    return pd.DataFrame(data)


def test_valid_manifest_gets_sample_ids(folder):
    df = validate_manifest(_frame(folder), num_classes=2, covariates=["age"])
    assert df["sample_id"].tolist() == ["img0", "img1", "img2"]


def test_missing_column_is_named(folder):
    with pytest.raises(InputFileError, match=r"m\.csv: missing column\(s\) 'sex'"):
        validate_manifest(_frame(folder), source="m.csv", covariates=["sex"])


def test_missing_file_names_row_and_column(folder):
    df = _frame(folder)
    df.loc[1, "image"] = str(folder / "gone.png")
    with pytest.raises(InputFileError) as err:
        validate_manifest(df, source="m.csv")
    message = str(err.value)
    assert message.startswith("m.csv: row 2 (id gone), column 'image': file not found")
    assert "\n" not in message


def test_duplicate_ids(folder):
    df = _frame(folder, sample_id=["x", "y", "x"])
    with pytest.raises(InputFileError, match=r"row 3 \(id x\), column 'sample_id': duplicate id "
                                             r"'x' \(first at row 1\)"):
        validate_manifest(df)


def test_label_out_of_range(folder):
    df = _frame(folder, label=[0, 2, 1])
    with pytest.raises(InputFileError, match=r"row 2 \(id img1\), column 'label': label 2 is out "
                                             r"of range 0\.\.1"):
        validate_manifest(df, num_classes=2)


def test_nan_policies(folder):
    df = _frame(folder, age=[40.0, np.nan, 60.0], sex=["F", None, "M"])
    with pytest.raises(InputFileError, match=r"row 2 \(id img1\), column 'age': value is missing"):
        validate_manifest(df, covariates=["age"])
    dropped = validate_manifest(df, covariates=["age"], nan_policy="drop")
    assert dropped["sample_id"].tolist() == ["img0", "img2"]
    imputed = validate_manifest(df, covariates=["age", "sex"], nan_policy="impute")
    assert imputed["age"].tolist() == [40.0, 50.0, 60.0]  # median of 40 and 60
    assert imputed["age_missing"].tolist() == [0, 1, 0]
    assert imputed["sex_missing"].tolist() == [0, 1, 0]
    assert imputed["sex"].isna().sum() == 0


def test_mask_size_mismatch(folder):
    df = _frame(folder, mask=[str(folder / "mask_ok.png"), str(folder / "mask_bad.png"),
                              str(folder / "mask_ok.png")])
    with pytest.raises(InputFileError, match=re.escape(
            "row 2 (id img1), column 'mask': mask size 10x6 differs from image size 10x8")):
        validate_manifest(df, check_masks=True)


def test_bad_box(folder):
    df = _frame(folder, boxes=[[[1, 1, 5, 5]], [], [[4, 1, 2, 5]]])
    with pytest.raises(InputFileError, match=r"row 3 \(id img2\), column 'boxes'"):
        validate_manifest(df)


def test_save_and_load_round_trip(folder):
    df = _frame(folder, boxes=[[[1.0, 1.0, 5.0, 5.0]], [], []])
    df["image"] = [f"img{i}.png" for i in range(3)]  # relative to the CSV's folder
    path = save_manifest(df, folder / "manifest.csv")
    loaded = load_manifest(path, num_classes=2)
    assert loaded["image"].iloc[0] == str(folder / "img0.png")
    assert loaded["boxes"].tolist() == [[[1.0, 1.0, 5.0, 5.0]], [], []]
    assert loaded["patient_id"].tolist() == ["a", "b", "c"]


def test_load_manifest_error_names_csv(folder):
    (folder / "bad.csv").write_text("image,label\nimg0.png,0\nnope.png,1\n")
    with pytest.raises(InputFileError, match=r"bad\.csv: row 2 \(id nope\), column 'image'"):
        load_manifest(folder / "bad.csv")

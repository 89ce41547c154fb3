"""``medilab data verify``: every problem of a broken dataset listed once, with the right check
and severity; clean data passes; ``train`` refuses fatal table problems before a run folder."""

from __future__ import annotations

import re

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medilab import api
from medilab.cli import main
from medilab.config import validate_config
from medilab.data.sources.box_table import BoxTableSource
from medilab.data.verify import FATAL, WARNING, verify_dataset
from medilab.errors import MedilabError
from segmentation_samples import circles_config, write_circles


def write_table(root, n=20):
    """A clean image_table dataset: 16×16 PNGs, two classes, patients, age and sex."""
    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(n):
        Image.fromarray(np.full((16, 16), 10 * i, np.uint8)).save(root / "images" / f"{i}.png")
        rows.append({"image": f"{i}.png", "patient_id": f"p{i // 2}", "age": 30 + i,
                     "sex": "FM"[i % 2], "label": "ab"[(i // 2) % 2]})
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    return root


def table_config(root, **data):
    return validate_config({
        "experiment": "verify", "task": "classification", "seed": 0,
        "data": {"source": "image_table", "root": str(root), "covariates": ["age", "sex"],
                 "val_fraction": 0.3, **data},
        "model": {"name": "convnet", "kwargs": {"widths": [4], "convs": 1}},
        "trainer": {"max_epochs": 1, "progress_bar": False},
    })


def checks(report, severity=None):
    """{check: count} of the report's problems (of one severity)."""
    table = report.table()
    if severity:
        table = table[table["severity"] == severity]
    return table["check"].value_counts().to_dict()


def test_clean_table_has_no_problem_and_counts_classes_per_split(tmp_path):
    report = verify_dataset(table_config(write_table(tmp_path)), workers=1)
    assert report.problems == [] and not report.fatal
    assert report.samples == 20 and report.files_read == 20
    assert report.balance.to_numpy().sum() == 20
    assert set(report.balance.index) == {"train", "val"}
    assert list(report.balance.columns) == ["a", "b"]


def test_broken_table_lists_every_problem(tmp_path):
    root = write_table(tmp_path)
    table = pd.read_csv(root / "metadata.csv")
    (root / "images" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")  # unreadable
    table.loc[4, "image"] = "missing.png"  # not on disk
    table.loc[5, "age"] = np.nan  # NaN covariate: a warning
    table.loc[6, "image"] = "7.png"  # the same file twice
    table.loc[8, "label"] = "c"  # not one of the configured classes
    Image.fromarray(np.zeros((20, 16), np.uint8)).save(root / "images" / "9.png")  # other size
    table.to_csv(root / "metadata.csv", index=False)
    report = verify_dataset(table_config(root, classes=["a", "b"]), workers=1)
    # the unknown class also has a single sample, which the split refuses
    assert checks(report, FATAL) == {"unreadable": 2, "label": 1, "image size": 1, "split": 1}
    assert checks(report, WARNING) == {"NaN covariate": 1, "duplicate file": 1}
    rows = report.table().set_index("check")
    assert "missing.png" in rows.loc["unreadable", "file"].iloc[1]
    assert "'c' is not one of the classes a, b" in rows.loc["label", "message"]
    assert "20x16 differs from most images' 16x16" in rows.loc["image size", "message"]


def test_parallel_reading_finds_the_same(tmp_path):
    root = write_table(tmp_path)
    (root / "images" / "3.png").write_bytes(b"not a png")
    config = table_config(root)
    one, two = verify_dataset(config, workers=1), verify_dataset(config, workers=2)
    pd.testing.assert_frame_equal(one.table(), two.table())
    assert checks(one) == {"unreadable": 1}


def test_patients_in_two_splits_of_a_given_splits_file(tmp_path):
    root = write_table(tmp_path)
    ids = [str(i) for i in range(20)]
    splits = pd.DataFrame({"sample_id": ids, "split": ["train", "val"] * 10})
    splits.to_csv(tmp_path / "splits.csv", index=False)
    report = verify_dataset(table_config(root, splits_csv=str(tmp_path / "splits.csv")))
    assert checks(report) == {"patients in two splits": 1}
    assert "patient(s) in more than one split" in report.table()["message"].iloc[0]


def test_class_missing_from_val_is_a_warning(tmp_path):
    root = write_table(tmp_path)
    splits = pd.DataFrame({"sample_id": [str(i) for i in range(20)],
                           "split": ["val" if i in (0, 1) else "train" for i in range(20)]})
    splits.to_csv(tmp_path / "splits.csv", index=False)
    report = verify_dataset(table_config(root, splits_csv=str(tmp_path / "splits.csv")))
    assert checks(report) == {"class balance": 1}
    assert "class 'b' has no sample in the val split" in report.table()["message"].iloc[0]
    assert not report.fatal


def nifti(path, array, spacing):
    nib.save(nib.Nifti1Image(array, np.diag([*spacing, 1.0])), str(path))


def test_volumes_size_spacing_nan_and_mask_values(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i in range(6):
        image = np.random.default_rng(i).normal(size=(6, 8, 8)).astype(np.float32)
        mask = np.zeros((6, 8, 8), np.uint8)
        mask[2:4, 2:5, 2:5] = 1 + i % 2
        spacing, mask_spacing = (1.0, 1.0, 2.0), (1.0, 1.0, 2.0)
        if i == 1:
            image[0, 0, 0] = np.nan
        if i == 2:
            mask = np.zeros((6, 8, 9), np.uint8)
        if i == 3:
            mask_spacing = (1.0, 1.0, 3.0)
        if i == 4:
            mask[0, 0, 0] = 7
        nifti(tmp_path / "images" / f"{i}.nii.gz", image, spacing)
        nifti(tmp_path / "masks" / f"{i}.nii.gz", mask, mask_spacing)
    config = validate_config({
        "experiment": "vol", "task": "segmentation",
        "data": {"source": "segmentation_folder", "root": str(tmp_path), "layout": "folders",
                 "spatial_dims": 3, "num_classes": 3, "val_count": 2,
                 "patch_size": [4, 4, 4]},
        "model": {"name": "unet", "kwargs": {"spatial_dims": 3, "depth": 2, "base_width": 2}},
    })
    report = verify_dataset(config, workers=1)
    assert checks(report) == {"NaN/inf pixels": 1, "size mismatch": 1,
                              "spacing mismatch": 1, "mask values": 1}
    by_check = report.table().set_index("check")
    assert by_check.loc["size mismatch", "sample"] == "2"
    assert "values 7 outside the classes 0..2" in by_check.loc["mask values", "message"]
    assert by_check.loc["NaN/inf pixels", "file"].endswith("1.nii.gz")
    assert all(report.table()["severity"] == FATAL)


def test_binary_masks_with_many_values_are_a_warning(tmp_path):
    root = write_circles(tmp_path / "c", n=6)
    Image.fromarray(np.arange(24 * 28).reshape(24, 28).astype(np.uint8)).save(
        root / "masks" / "01.png")
    report = verify_dataset(validate_config(circles_config(root)), workers=1)
    assert checks(report, WARNING) == {"mask values": 1} and not report.fatal


def test_boxes_outside_their_image(tmp_path):
    (tmp_path / "images").mkdir()
    for i in range(6):
        Image.fromarray(np.zeros((32, 40), np.uint8)).save(tmp_path / "images" / f"{i}.png")
    pd.DataFrame({"image": [f"{i}.png" for i in range(6)]}).to_csv(
        tmp_path / "images.csv", index=False)
    pd.DataFrame({"image": ["0.png", "1.png", "2.png"], "label": ["tb"] * 3,
                  "x1": [1, 5, 30], "y1": [1, 5, 20], "x2": [10, 12, 45], "y2": [10, 30, 30]}
                 ).to_csv(tmp_path / "boxes.csv", index=False)
    config = validate_config({
        "experiment": "det", "task": "detection",
        "data": {"source": "box_table", "root": str(tmp_path), "size": 64},
        "model": {"name": "faster_rcnn", "kwargs": {}},
    })
    report = verify_dataset(config, workers=1)
    assert checks(report) == {"box outside image": 1}
    assert "box 0 [30, 20, 45, 30] lies outside the 40x32 image" in report.table()[
        "message"].iloc[0]


def test_in_memory_digits(tmp_path):
    config = validate_config({"experiment": "d", "task": "classification",
                              "data": {"source": "sklearn_digits"},
                              "model": {"name": "mlp"}})
    report = verify_dataset(config)
    assert report.problems == [] and report.samples == 1797
    assert report.balance.shape == (2, 10)


def test_cli_exit_code_table_and_csv(tmp_path, capsys):
    root = write_table(tmp_path / "data")
    (root / "images" / "3.png").write_bytes(b"broken")
    config = tmp_path / "c.yaml"
    config.write_text("task: classification\ndata: {source: image_table, root: x}\n"
                      "model: {name: convnet}\n")
    out = tmp_path / "problems.csv"
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "verify", str(config), "-o", f"data.root={root}", "--workers", "1",
              "--out", str(out)])
    assert exit_info.value.code == 1
    printed = capsys.readouterr().out
    assert "unreadable" in printed and "20 samples, 20 files read" in printed
    assert pd.read_csv(out)["check"].tolist() == ["unreadable"]
    (root / "images" / "3.png").unlink()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(root / "images" / "3.png")
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "verify", str(config), "-o", f"data.root={root}"])
    assert exit_info.value.code == 0


def test_train_refuses_a_fatal_table_problem_before_the_run_folder(tmp_path):
    root = write_table(tmp_path / "data")
    table = pd.read_csv(root / "metadata.csv")
    table.loc[2, "image"] = "gone.png"
    table.to_csv(root / "metadata.csv", index=False)
    with pytest.raises(MedilabError, match=r"data check: unreadable: .*gone\.png: "
                       r"file not found; `medilab data verify` lists every problem"):
        api.train(table_config(root), run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_train_warns_once_per_kind_of_warning(tmp_path):
    root = write_table(tmp_path / "data")
    table = pd.read_csv(root / "metadata.csv")
    table.loc[[1, 2], "age"] = np.nan
    table.to_csv(root / "metadata.csv", index=False)
    warning = r"data check: NaN covariate \(2×\), e\.g\. 1: age is missing"
    with pytest.warns(UserWarning, match=warning) as record:
        api.train(table_config(root, batch_size=8), run_dir=tmp_path / "run",
                  evaluate_after=False)
    assert sum("data check" in str(w.message) for w in record) == 1


def test_every_box_problem_and_a_missing_image_in_one_run_off_a_terminal(tmp_path, capsys):
    """x2 < x1, a box outside its image, a label typo and a missing image: all four listed in
    one run, each with its image's full path, though stdout is not a terminal."""
    root = tmp_path / ("a_long_folder_name_that_a_narrow_table_would_cut" * 2) / "tbx_copy"
    (root / "images").mkdir(parents=True)
    for i in range(8):
        if i != 7:  # 7.png is listed but missing
            Image.fromarray(np.zeros((32, 40), np.uint8)).save(root / "images" / f"{i}.png")
    pd.DataFrame({"image": [f"{i}.png" for i in range(8)]}).to_csv(root / "images.csv",
                                                                   index=False)
    pd.DataFrame({"image": ["0.png", "1.png", "2.png", "3.png", "4.png", "5.png"],
                  "label": ["tb", "tb", "tb", "Pneumonia", "tb", "tb"],
                  "x1": [1, 20, 30, 2, 3, 4], "y1": [1, 5, 20, 2, 3, 4],
                  "x2": [10, 12, 45, 9, 9, 9], "y2": [10, 30, 30, 9, 9, 9]}
                 ).to_csv(root / "boxes.csv", index=False)
    config = tmp_path / "det.yaml"
    config.write_text(f"task: detection\ndata: {{source: box_table, root: {root}, size: 64, "
                      "classes: [tb]}\nmodel: {name: fasterrcnn_small}\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "verify", str(config), "--workers", "1"])
    assert exit_info.value.code == 1
    printed = capsys.readouterr().out
    lines = {check: next(line for line in printed.splitlines()
                         if re.search(rf"│ {check}\s+│", line))
             for check in ("box", "box outside image", "box label", "unreadable")}
    for check, image in (("box", "1.png"), ("box outside image", "2.png"),
                         ("box label", "3.png"), ("unreadable", "7.png")):
        assert str(root / "images" / image) in lines[check]
    assert "needs x2 > x1" in lines["box"] and "'Pneumonia' is not one of" in lines["box label"]
    assert "8 samples, 8 files read" in printed
    assert "has box" in printed and "no box" in printed  # the class table says what 0/1 mean


def test_training_refuses_a_bad_box_naming_its_image(tmp_path):
    (tmp_path / "images").mkdir()
    for i in range(4):
        Image.fromarray(np.zeros((32, 40), np.uint8)).save(tmp_path / "images" / f"{i}.png")
    pd.DataFrame({"image": ["0.png", "1.png"], "label": ["tb", "tb"], "x1": [1, 20],
                  "y1": [1, 5], "x2": [10, 12], "y2": [10, 30]}).to_csv(
        tmp_path / "boxes.csv", index=False)
    config = validate_config({"experiment": "det", "task": "detection",
                              "data": {"source": "box_table", "root": str(tmp_path),
                                       "images_csv": None, "size": 64},
                              "model": {"name": "fasterrcnn_small"}})
    with pytest.raises(MedilabError, match=r"data check: box: .*images/1.png: box 0 "
                                           r"\[20, 5, 12, 30\] needs x2 > x1"):
        api.train(config, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()
    with pytest.raises(MedilabError, match=r"row 2 \(image 1.png\): box \[20, 5, 12, 30\] has "
                                           r"no area"):
        BoxTableSource().build_datamodule(config, None)


def test_a_rare_box_label_beside_common_ones_is_a_warning(tmp_path):
    (tmp_path / "images").mkdir()
    for i in range(5):
        Image.fromarray(np.zeros((32, 40), np.uint8)).save(tmp_path / "images" / f"{i}.png")
    pd.DataFrame({"image": [f"{i}.png" for i in range(5)], "label": ["tb"] * 4 + ["Tb"],
                  "x1": [1] * 5, "y1": [1] * 5, "x2": [9] * 5, "y2": [9] * 5}).to_csv(
        tmp_path / "boxes.csv", index=False)
    config = validate_config({"experiment": "det", "task": "detection",
                              "data": {"source": "box_table", "root": str(tmp_path),
                                       "images_csv": None, "size": 64},
                              "model": {"name": "fasterrcnn_small"}})
    report = verify_dataset(config, workers=1)
    assert checks(report) == {"rare box label": 1} and not report.fatal
    assert "'Tb' is on 1 box(es) only" in report.table()["message"].iloc[0]

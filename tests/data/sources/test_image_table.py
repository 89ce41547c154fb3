"""The image_table source: a CSV + images with patients and covariates, trained end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cli_samples import run_cli
from medilab import api
from medilab.config import validate_config
from medilab.data.sources.image_table import ImageTableSource
from medilab.errors import InputFileError


def write_table(root, n=40, seed=0):
    """Bright-centre images are class 'finding'; age follows the class a little."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        label = "finding" if i % 2 else "none"
        image = rng.integers(0, 80, (16, 16)).astype(np.uint8)
        if label == "finding":
            image[5:11, 5:11] = 220
        Image.fromarray(image).save(root / "images" / f"img{i:03d}.png")
        rows.append({"image": f"img{i:03d}.png", "patient_id": f"p{i // 2}",
                     "age": 40 + 20 * (label == "finding") + int(rng.integers(0, 10)),
                     "sex": "F" if i % 4 < 2 else "M", "label": label})
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    return root


def table_config(root, **data):
    return validate_config({
        "experiment": "tiny_table", "task": "classification", "seed": 3,
        "data": {"source": "image_table", "root": str(root), "batch_size": 8,
                 "covariates": ["age", "sex"], "val_fraction": 0.3, **data},
        "model": {"name": "convnet", "kwargs": {"widths": [8, 16], "convs": 1}},
        "optimizer": {"name": "adam", "lr": 0.01},
        "trainer": {"max_epochs": 3, "progress_bar": False, "monitor": "val/auroc",
                    "monitor_mode": "max"},
        "evaluation": {"bootstrap_samples": 30},
    })


def test_split_is_grouped_by_patient_and_covariates_are_encoded(tmp_path):
    root = write_table(tmp_path / "data")
    dm = ImageTableSource().build_datamodule(table_config(root), None)
    merged = dm.splits.groupby("patient_id")["split"].nunique()
    assert (merged == 1).all()
    assert dm.class_names == ["finding", "none"]
    assert dm.num_covariates == 5  # age (standardised), sex one-hot F/M, two missing flags
    assert dm.image_size == (16, 16) and dm.in_channels == 1


def _recount(frame, threshold):
    """Sensitivity and specificity recounted from a predictions CSV at ``p >= threshold``."""
    decided = (frame["prob_1"] >= threshold).astype(int)
    positive, negative = frame["label"] == 1, frame["label"] == 0
    return (decided[positive] == 1).mean(), (decided[negative] == 0).mean()


def test_held_out_run_reports_what_its_predictions_say_and_predict_agrees(tmp_path):
    """The issue's check: a tiny separable table with a test part, patient groups and
    temperature scaling. Reported sensitivity / specificity are those recounted at the
    reported threshold (p >= t) on val and test; a perfectly predicted split has interval
    [1, 1]; ``predict`` on the same images gives the probabilities evaluation wrote."""
    root = write_table(tmp_path / "data", n=48)
    config = table_config(root, test_fraction=0.25, group="patient_id")
    config = config.model_copy(update={
        "evaluation": config.evaluation.model_copy(update={"temperature_scaling": True,
                                                           "bootstrap_samples": 200}),
        "trainer": config.trainer.model_copy(update={"max_epochs": 6})})
    run = api.train(config, run_dir=tmp_path / "run")
    splits = pd.read_csv(run / "splits.csv", dtype=str)
    assert set(splits["split"]) == {"train", "val", "test"}
    assert (splits.groupby("patient_id")["split"].nunique() == 1).all()

    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["class_names"] == ["finding", "none"]
    assert "patients" in metrics["notes"][0]
    assert metrics["headline"] == "test" and "held out" in metrics["roles"]["test"]
    assert "selection" in metrics["roles"]["val"]
    threshold = metrics["threshold"]["value"]
    fitted = json.loads((run / "fitted.json").read_text())
    assert fitted["threshold"] == threshold and fitted["temperature"] != 1.0
    perfect = []
    for split in ("val", "test"):
        frame = pd.read_csv(run / f"predictions_{split}.csv", dtype={"patient_id": str})
        reported = metrics["splits"][split]
        sensitivity, specificity = _recount(frame, threshold)
        assert reported["sensitivity"]["value"] == pytest.approx(sensitivity), split
        assert reported["specificity"]["value"] == pytest.approx(specificity), split
        assert (frame["prediction"] == (frame["prob_1"] >= threshold)).all(), split
        accuracy = (frame["prediction"] == frame["label"]).mean()
        assert reported["accuracy"]["value"] == pytest.approx(accuracy), split
        if accuracy == 1.0:
            perfect.append(split)
            for name in ("accuracy", "sensitivity", "specificity", "auroc"):
                interval = (reported[name]["low"], reported[name]["high"])
                assert interval == pytest.approx((1.0, 1.0), abs=1e-6), name
    assert perfect, "the separable data should be predicted perfectly on val or test"
    assert "sex=F" in metrics["subgroups"]["test"] and "ece" in metrics["calibration"]["val"]

    test = pd.read_csv(run / "predictions_test.csv", dtype={"sample_id": str})
    table = pd.read_csv(root / "metadata.csv").drop(columns=["label"])
    table = table[table["image"].str.removesuffix(".png").isin(test["sample_id"])]
    new = tmp_path / "new.csv"
    table.to_csv(new, index=False)
    (tmp_path / "images").symlink_to(root / "images")
    out = pd.read_csv(api.predict(run, new, tmp_path / "preds.csv"), keep_default_na=False)
    assert list(out.columns) == ["image", "prediction", "prob_finding", "prob_none", "error"]
    merged = test.assign(image=test["sample_id"] + ".png").merge(out, on="image")
    assert len(merged) == len(test)
    np.testing.assert_allclose(merged["prob_none"], merged["prob_1"], atol=2e-6)
    names = np.array(["finding", "none"])
    assert (merged["prediction_y"] == names[merged["prediction_x"]]).all()


def test_tiny_run_trains_evaluates_and_predicts(tmp_path, capsys):
    root = write_table(tmp_path / "data")
    run = api.train(table_config(root), run_dir=tmp_path / "run")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["class_names"] == ["finding", "none"]
    assert "patients" in metrics["notes"][0]
    assert {"accuracy", "auroc", "sensitivity", "specificity"} <= set(metrics["splits"]["val"])
    assert metrics["headline"] == "val" and "no held-out test" in metrics["headline_note"]
    assert "sex=F" in metrics["subgroups"]["val"] and "ece" in metrics["calibration"]["val"]
    predictions = pd.read_csv(run / "predictions_val.csv")
    assert "patient_id" in predictions.columns

    new = tmp_path / "new.csv"
    table = pd.read_csv(root / "metadata.csv").drop(columns=["label"]).head(4)
    table.loc[1, "image"] = "missing.png"
    table.to_csv(new, index=False)
    (tmp_path / "images").symlink_to(root / "images")
    with pytest.warns(UserWarning, match="1 of 4 input"):
        out = api.predict(run, new, tmp_path / "preds.csv")
    frame = pd.read_csv(out, keep_default_na=False)
    assert list(frame.columns) == ["image", "prediction", "prob_finding", "prob_none", "error"]
    assert frame.loc[1, "error"] != "" and frame.loc[0, "error"] == ""
    assert set(frame.loc[[0, 2, 3], "prediction"]) <= {"finding", "none"}
    probs = frame.loc[[0, 2, 3], ["prob_finding", "prob_none"]].astype(float).sum(axis=1)
    assert np.allclose(probs, 1, atol=1e-4)

    # covariates unlike training's are error rows, not silent guesses
    odd = table.copy()
    odd["age"] = odd["age"].astype(object)
    odd.loc[0, "age"], odd.loc[2, "sex"] = "abc", "U"
    elsewhere = tmp_path / "other" / "odd.csv"
    elsewhere.parent.mkdir()
    odd.to_csv(elsewhere, index=False)
    with pytest.warns(UserWarning, match="3 of 4 input"):
        out = api.predict(run, elsewhere, tmp_path / "odd.csv", image_dir=root / "images")
    frame = pd.read_csv(out, keep_default_na=False)
    assert frame.loc[0, "error"] == "age 'abc' is not a number"
    assert frame.loc[2, "error"] == "sex 'U' was not seen in training (seen: F, M)"
    assert frame.loc[3, "error"] == "" and frame.loc[3, "prediction"] in ("finding", "none")
    # no readable image at all: a failed command, no file
    table.assign(image=["gone1.png", "gone2.png", "gone3.png", "gone4.png"]).to_csv(
        new, index=False)
    assert run_cli("predict", run, new, "--out", tmp_path / "none.csv") == 2
    assert "none of the 4 input(s) could be used" in capsys.readouterr().err
    assert not (tmp_path / "none.csv").exists()
    table.to_csv(new, index=False)

    table.drop(index=1).to_csv(new, index=False)  # explain: readable images only
    cams = api.explain(run, new, tmp_path / "cams", "gradcam")
    # 16 px images enlarged to 256 px, with a title (predicted class, probability) and a scale
    assert len(cams) == 3 and all(Image.open(p).size[0] == 256 and Image.open(p).size[1] > 256
                                  for p in cams)

    table.drop(columns=["age"]).to_csv(new, index=False)
    with pytest.raises(InputFileError, match="missing column 'age'"):
        api.predict(run, new, tmp_path / "preds2.csv")
    assert not (tmp_path / "preds2.csv").exists()


def test_bad_tables_give_one_line_errors(tmp_path):
    root = write_table(tmp_path / "data")
    source = ImageTableSource()
    with pytest.raises(InputFileError, match="missing column 'weight'"):
        source.build_datamodule(table_config(root, covariates=["weight"]), None)
    with pytest.raises(InputFileError, match="label 'none' is not one of the classes"):
        source.build_datamodule(table_config(root, classes=["finding", "other"]), None)
    (root / "images" / "img003.png").write_bytes(b"not a png")
    with pytest.raises(InputFileError, match="img003.png"):
        source.build_datamodule(table_config(root), None)


def test_leaking_given_splits_are_refused(tmp_path):
    root = write_table(tmp_path / "data")
    given = pd.DataFrame({"sample_id": [f"img{i:03d}" for i in range(40)],
                          "split": ["train", "val"] * 20})  # patient p0 = img000 + img001
    with pytest.raises(Exception, match="patient"):
        ImageTableSource().build_datamodule(table_config(root), given)


def test_nih1000_table_reads(medilab_data):
    config = table_config(medilab_data / "nih1000")
    dm = ImageTableSource().build_datamodule(config, None)
    assert dm.arrays.images.shape == (748, 3, 64, 64)
    assert (dm.splits.groupby("patient_id")["split"].nunique() == 1).all()

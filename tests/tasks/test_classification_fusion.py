"""Late fusion with a covariates-only member: the weight chosen on val cannot lose to either
branch there, and predict uses the fusion evaluation fitted."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from medilab import api
from medilab.config import validate_config
from medilab.tasks.classification_fusion import (
    CovariateFusion,
    auroc,
    choose_weight,
    fit_covariate_member,
)


def test_the_weight_grid_holds_both_branches_and_ties_go_to_the_lower_log_loss():
    rng = np.random.default_rng(0)
    labels = np.tile([0, 1], 20)
    noise = rng.uniform(0.3, 0.7, len(labels))
    image = np.c_[1 - noise, noise]  # AUROC about 0.5
    sharp = np.where(labels == 1, 0.9, 0.1)
    covariate = np.c_[1 - sharp, sharp]  # AUROC 1
    weight, grid = choose_weight(image, covariate, labels)
    assert {row["weight"] for row in grid} >= {0.0, 1.0}
    assert weight == 0.0  # every small weight reaches AUROC 1; log loss prefers none
    weight, _ = choose_weight(covariate, image, labels)
    assert weight == 1.0


def test_the_covariates_member_is_sklearns_logistic_regression_as_class_logits():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    features = rng.normal(size=(60, 3)).astype(np.float32)
    labels = (features[:, 0] + 0.3 * rng.normal(size=60) > 0).astype(int)
    coef, intercept = fit_covariate_member(features, labels, num_classes=2)
    member = CovariateFusion(0.0, coef, intercept)
    ours = member.covariate_probabilities(torch.from_numpy(features)).numpy()
    theirs = LogisticRegression(C=1.0, max_iter=2000).fit(features, labels).predict_proba(
        features)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    # fused = w · image + (1 − w) · covariates
    image = torch.full((60, 2), 0.5)
    fused = CovariateFusion(0.25, coef, intercept).fuse(image, torch.from_numpy(features))
    np.testing.assert_allclose(fused.numpy(), 0.25 * 0.5 + 0.75 * theirs, atol=1e-5)
    assert fit_covariate_member(features, np.zeros(60, int), 2) is None  # one class: none


def write_noise_table(root, n=48, seed=0):
    """Pure-noise images; the label is decided by age alone."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        label = int(rng.integers(0, 2)) if i >= 4 else i % 2
        Image.fromarray(rng.integers(0, 255, (12, 12)).astype(np.uint8)).save(
            root / "images" / f"img{i:03d}.png")
        rows.append({"image": f"img{i:03d}.png", "patient_id": f"p{i}",
                     "age": 30 + 40 * label + int(rng.integers(0, 10)),
                     "sex": "F" if rng.random() < 0.5 else "M", "label": label})
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    return root


def test_fusion_favours_the_covariates_that_decide_the_label_and_predict_uses_it(tmp_path):
    root = write_noise_table(tmp_path / "data")
    config = validate_config({
        "experiment": "noise_images", "seed": 0,
        "data": {"source": "image_table", "root": str(root), "batch_size": 16,
                 "covariates": ["age", "sex"], "val_fraction": 0.3, "test_fraction": 0.25},
        "model": {"name": "convnet", "kwargs": {"widths": [4], "convs": 1}},
        "trainer": {"max_epochs": 1, "progress_bar": False},
        "evaluation": {"bootstrap_samples": 20, "tta": "flips", "tta_axes": [1]},
    })
    run = api.train(config, run_dir=tmp_path / "run")
    metrics = json.loads((run / "metrics.json").read_text())
    fusion = metrics["covariate_fusion"]
    val = {name: fusion["branches"]["val"][name]["auroc"]["value"]
           for name in ("image", "covariates", "fused")}
    assert val["fused"] >= max(val["image"], val["covariates"]) - 1e-12
    assert val["covariates"] == pytest.approx(1.0)
    assert fusion["weight_image"] < 0.5 and list(fusion["branches"]) == ["test", "val"]
    assert metrics["tta"]["views"] == 2
    fitted = json.loads((run / "fitted.json").read_text())
    assert fitted["covariate_fusion"]["weight"] == fusion["weight_image"]
    # the reported test AUROC is the fused one, recounted from predictions_test.csv
    test = pd.read_csv(run / "predictions_test.csv", dtype={"sample_id": str})
    recount = auroc(test[["prob_0", "prob_1"]].to_numpy(), test["label"].to_numpy())
    assert metrics["splits"]["test"]["auroc"]["value"] == pytest.approx(recount, abs=1e-6)
    assert fusion["branches"]["test"]["fused"]["auroc"]["value"] == pytest.approx(recount,
                                                                                  abs=1e-4)
    assert "Image, covariates and their fusion" in (run / "report.html").read_text()

    # predict: the same probabilities as evaluation (fusion and TTA applied)
    table = pd.read_csv(root / "metadata.csv").drop(columns=["label"])
    table = table[table["image"].str.removesuffix(".png").isin(test["sample_id"])]
    table.to_csv(tmp_path / "new.csv", index=False)
    (tmp_path / "images").symlink_to(root / "images")
    out = pd.read_csv(api.predict(run, tmp_path / "new.csv", tmp_path / "preds.csv"))
    merged = test.assign(image=test["sample_id"] + ".png").merge(
        out, on="image", suffixes=("_evaluated", "_predicted"))
    assert len(merged) == len(test)
    np.testing.assert_allclose(merged["prob_1_predicted"], merged["prob_1_evaluated"],
                               atol=2e-6)


def test_covariate_fusion_off_keeps_the_image_model(tmp_path):
    from medilab.data.sources.image_table import ImageTableSource
    from medilab.tasks.classification import fit_covariate_fusion

    root = write_noise_table(tmp_path / "data", n=16)
    config = validate_config({
        "data": {"source": "image_table", "root": str(root), "covariates": ["age"]},
        "model": {"name": "convnet"}, "evaluation": {"covariate_fusion": "off"}})
    datamodule = ImageTableSource().build_datamodule(config, None)
    assert datamodule.split_covariates("train").shape[1] == 2  # age and its missing flag
    assert fit_covariate_fusion(None, datamodule, config, None) is None

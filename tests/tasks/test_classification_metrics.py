import numpy as np
import pandas as pd
import pytest
import torch
import torchmetrics

from medilab.config import EvaluationConfig
from medilab.tasks.classification_metrics import (
    binary_threshold,
    calibration_summary,
    score_table,
    subgroup_labels,
    subgroup_tables,
)


def _data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    target = rng.integers(0, 2, n)
    p1 = np.clip(0.35 * target + 0.65 * rng.random(n), 0, 1)
    return np.stack([1 - p1, p1], axis=1).astype(np.float32), target


def test_binary_table_uses_positive_column_and_threshold():
    probs, target = _data()
    evaluation = EvaluationConfig(bootstrap_samples=0)
    table = score_table(probs, target, evaluation=evaluation)
    assert set(table) == {"accuracy", "f1_macro", "balanced_accuracy", "auroc", "sensitivity",
                          "specificity"}
    auroc = torchmetrics.functional.auroc(torch.from_numpy(probs[:, 1]),
                                          torch.from_numpy(target), task="binary")
    assert table["auroc"]["value"] == pytest.approx(float(auroc))
    assert table["accuracy"]["value"] == pytest.approx((probs.argmax(1) == target).mean())
    strict = score_table(probs, target, threshold=0.99, evaluation=evaluation)
    assert strict["sensitivity"]["value"] < table["sensitivity"]["value"]
    assert strict["specificity"]["value"] == 1.0


def test_youden_threshold_separates_a_separable_set():
    scores = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.9], np.float32)
    labels = np.array([0, 0, 0, 1, 1, 1])
    cut = binary_threshold(scores, labels)
    assert 0.3 < cut <= 0.6 + 1e-6
    assert binary_threshold(scores, np.zeros(6, int)) == 0.5


def test_ece_of_a_calibrated_set_is_near_zero_and_of_an_overconfident_one_is_not():
    rng = np.random.default_rng(0)
    p1 = rng.random(20000).astype(np.float32)
    labels = (rng.random(20000) < p1).astype(int)
    probs = np.stack([1 - p1, p1], axis=1)
    assert calibration_summary(probs, labels)["ece"] < 0.02
    sharp = np.stack([1 - (p1 > 0.5), (p1 > 0.5)], axis=1).astype(np.float32)
    assert calibration_summary(sharp, labels)["ece"] > 0.15


def test_subgroup_metrics_equal_metrics_on_the_subgroup_alone():
    probs, target = _data(300, seed=4)
    rng = np.random.default_rng(5)
    metadata = pd.DataFrame({"sex": rng.choice(["F", "M"], 300),
                             "age": rng.integers(20, 90, 300).astype(float)})
    evaluation = EvaluationConfig(bootstrap_samples=50)
    groups = subgroup_tables(probs, target, metadata, evaluation, seed=0)
    women = (metadata["sex"] == "F").to_numpy()
    alone = score_table(probs[women], target[women], evaluation=evaluation, seed=0)
    assert groups["sex=F"]["n"] == women.sum()
    assert groups["sex=F"]["auroc"] == alone["auroc"]
    assert {"age=<40 years", "age=40 to <60 years", "age=≥60 years"} <= set(groups)
    gap = groups["largest_gap"]
    assert gap["column"] in ("sex", "age") and gap["difference"] >= 0


def test_age_bands_and_missing_values():
    metadata = pd.DataFrame({"age": [10, 45, 60, 80, None, 30, 50, 70]})
    bands = subgroup_labels(metadata, "age", [40, 60]).tolist()
    assert bands == ["<40 years", "40 to <60 years", "≥60 years", "≥60 years", "missing",
                     "<40 years", "40 to <60 years", "≥60 years"]

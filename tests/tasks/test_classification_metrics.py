import numpy as np
import pandas as pd
import pytest
import torch
import torchmetrics

from medilab.config import EvaluationConfig
from medilab.tasks.classification_metrics import (
    binary_threshold,
    calibration_summary,
    decisions,
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


def _binary(p1):
    p1 = np.asarray(p1, np.float32)
    return np.stack([1 - p1, p1], axis=1)


def test_youden_threshold_separates_a_separable_set_at_the_cut():
    """The cut sits on a positive sample; applied as chosen (p >= cut) every positive is
    found (torchmetrics' own rule, p > cut, called the sample at the cut negative)."""
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], np.float32)
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    cut = binary_threshold(scores, labels)
    assert cut == pytest.approx(0.6)
    table = score_table(_binary(scores), labels, threshold=cut,
                        evaluation=EvaluationConfig(bootstrap_samples=0))
    assert table["sensitivity"]["value"] == 1.0
    assert table["specificity"]["value"] == 1.0
    assert table["accuracy"]["value"] == 1.0
    assert decisions(_binary(scores), cut).tolist() == labels.tolist()
    assert binary_threshold(scores, np.zeros(8, int)) == 0.5


def test_decisions_use_the_threshold_for_every_decision_metric():
    """Accuracy, balanced accuracy and F1 of a binary model are counted at the threshold, as
    sensitivity and specificity are (one operating point)."""
    p1 = np.array([0.2, 0.3, 0.35, 0.45, 0.6, 0.9])
    labels = np.array([0, 0, 1, 1, 1, 1])
    table = score_table(_binary(p1), labels, threshold=0.33,
                        evaluation=EvaluationConfig(bootstrap_samples=0))
    assert decisions(_binary(p1), 0.33).tolist() == [0, 0, 1, 1, 1, 1]
    assert decisions(_binary(p1)).tolist() == [0, 0, 0, 0, 1, 1]  # argmax without one
    for name in ("accuracy", "balanced_accuracy", "f1_macro", "sensitivity", "specificity"):
        assert table[name]["value"] == 1.0, name


def test_a_perfect_model_has_interval_one_one_and_draws_without_positives_are_skipped():
    """3 positives among 40: draws without a positive are skipped (counted), never scored 0."""
    labels = np.array([1, 1, 1] + [0] * 37)
    p1 = np.where(labels == 1, 0.9, 0.1)
    table = score_table(_binary(p1), labels, threshold=0.5,
                        evaluation=EvaluationConfig(bootstrap_samples=400), seed=1)
    sens = table["sensitivity"]
    assert (sens["value"], sens["low"], sens["high"]) == (1.0, 1.0, 1.0)
    # P(no positive in a draw) = (37/40)^40 ≈ 4.4 %: about 18 of 400
    assert 5 <= sens["skipped"] <= 40
    assert table["specificity"]["skipped"] == 0
    assert (table["auroc"]["low"], table["auroc"]["high"]) == (1.0, 1.0)


def test_multiclass_auroc_is_undefined_when_a_class_is_missing():
    """A perfect 3-class model with a rare class of 2 samples: draws without it are skipped,
    so the interval is [1, 1] (an absent class used to add 0 to the macro mean)."""
    labels = np.array([0] * 20 + [1] * 18 + [2] * 2)
    probs = np.full((40, 3), 0.05, np.float32)
    probs[np.arange(40), labels] = 0.9
    table = score_table(probs, labels, evaluation=EvaluationConfig(bootstrap_samples=300))
    assert (table["auroc"]["low"], table["auroc"]["high"]) == (1.0, 1.0)
    assert table["auroc"]["skipped"] > 0
    two_of_three = score_table(probs[:38], labels[:38],
                               evaluation=EvaluationConfig(bootstrap_samples=0))
    assert np.isnan(two_of_three["auroc"]["value"])


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


def test_subgroups_use_the_threshold_and_resample_patients():
    probs, target = _data(300, seed=4)
    rng = np.random.default_rng(5)
    metadata = pd.DataFrame({"sex": rng.choice(["F", "M"], 300)})
    patients = np.repeat(np.arange(60), 5).astype(str)
    evaluation = EvaluationConfig(bootstrap_samples=50)
    groups = subgroup_tables(probs, target, metadata, evaluation, seed=0, threshold=0.3,
                             groups=patients)
    women = (metadata["sex"] == "F").to_numpy()
    alone = score_table(probs[women], target[women], threshold=0.3, groups=patients[women],
                        evaluation=evaluation, seed=0)
    assert groups["sex=F"]["sensitivity"] == alone["sensitivity"]
    at_half = score_table(probs[women], target[women], evaluation=evaluation, seed=0)
    assert groups["sex=F"]["sensitivity"]["value"] > at_half["sensitivity"]["value"]
    by_image = score_table(probs[women], target[women], threshold=0.3, evaluation=evaluation,
                           seed=0)
    assert groups["sex=F"]["auroc"]["low"] != by_image["auroc"]["low"]


def test_age_bands_and_missing_values():
    metadata = pd.DataFrame({"age": [10, 45, 60, 80, None, 30, 50, 70]})
    bands = subgroup_labels(metadata, "age", [40, 60]).tolist()
    assert bands == ["<40 years", "40 to <60 years", "≥60 years", "≥60 years", "missing",
                     "<40 years", "40 to <60 years", "≥60 years"]


def test_the_reported_threshold_recounts_exactly_from_written_probabilities(tmp_path):
    """The cut is one of the (6-decimal) scores in float64: a recount from a CSV of those
    scores at ``p >= threshold`` gives the reported sensitivity and specificity. (A float32
    cut compared with float64 CSV values lost the sample at the cut.)"""
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 300)
    p1 = np.round(np.clip(0.25 * labels + 0.75 * rng.random(300), 0, 1), 6)
    cut = binary_threshold(p1, labels)
    assert cut in set(p1)
    probs = np.stack([1 - p1, p1], axis=1)  # float64, as evaluation scores them
    table = score_table(probs, labels, threshold=cut,
                        evaluation=EvaluationConfig(bootstrap_samples=0))
    path = tmp_path / "predictions.csv"
    pd.DataFrame({"label": labels, "prob_1": p1}).to_csv(path, index=False)
    frame = pd.read_csv(path)
    decided = frame["prob_1"] >= cut
    assert table["sensitivity"]["value"] == pytest.approx(decided[frame["label"] == 1].mean())
    assert table["specificity"]["value"] == pytest.approx(1 - decided[frame["label"] == 0].mean())

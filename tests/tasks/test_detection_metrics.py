from __future__ import annotations

import numpy as np
import pytest

from medilab.tasks.detection_metrics import (
    CocoEvaluation,
    ap_scores,
    coco_summary,
    detection_curves,
    detection_scores,
    froc_scores,
    match_image,
    normalise,
)


def _box(x: float, y: float = 0.0, size: float = 20.0) -> list[float]:
    return [x, y, x + size, y + size]


def _targets(boxes: list[list[list[float]]], label: int = 1) -> list[dict]:
    return [{"boxes": np.array(b, float).reshape(-1, 4), "labels": [label] * len(b)}
            for b in boxes]


def test_perfect_predictions_score_one() -> None:
    boxes = [[_box(10, 10)], [_box(30, 40), _box(60, 5)], []]
    targets = _targets(boxes)
    preds = [{**t, "scores": [0.9] * len(t["labels"])} for t in targets]
    scores = detection_scores(preds, targets, num_bootstraps=0)
    for name in ("map", "ap50", "ap40", "recall50@100", "froc_mean", "image_auroc"):
        assert scores[name]["value"] == pytest.approx(1.0), name
    assert "low" not in scores["map"]  # no interval without bootstrap draws


def test_shifted_boxes_match_a_hand_count() -> None:
    # one 20x20 box per image; the prediction is shifted right by dx: IoU = (20-dx)/(20+dx)
    shifts = [2, 4, 8, 12]  # IoU 0.818, 0.667, 0.429, 0.25
    targets = _targets([[_box(0)] for _ in shifts])
    preds = [{"boxes": [_box(dx)], "labels": [1], "scores": [1.0 - 0.1 * i]}
             for i, dx in enumerate(shifts)]
    scores = detection_scores(preds, targets, num_bootstraps=0)
    # COCO interpolates precision at 101 recall points; with k of 4 boxes found first (in
    # score order) precision is 1 up to recall k/4: AP = (25k + 1) / 101
    ap = {k: (25 * k + 1) / 101 if k else 0.0 for k in range(5)}
    assert scores["ap40"]["value"] == pytest.approx(ap[3])
    assert scores["ap50"]["value"] == pytest.approx(ap[2])
    # IoU thresholds .50-.65 find 2 boxes, .70-.80 find 1, .85-.95 none
    assert scores["map"]["value"] == pytest.approx((4 * ap[2] + 3 * ap[1]) / 10)
    assert scores["recall50@1"]["value"] == pytest.approx(0.5)


def test_froc_on_a_hand_made_case() -> None:
    g1, g2 = _box(0), _box(50)
    targets = _targets([[g1, g2], []])
    preds = [
        {"boxes": [g1, _box(100), g2, _box(1)], "scores": [0.9, 0.8, 0.5, 0.4],
         "labels": [1] * 4},  # hit, FP, hit, duplicate of g1 (FP)
        {"boxes": [_box(10)], "scores": [0.7], "labels": [1]},  # FP on a healthy image
    ]
    p, t = normalise(preds, True), normalise(targets, False)
    hits = [match_image(a, b) for a, b in zip(p, t, strict=True)]
    assert hits[0].hits.tolist() == [True, False, True, False]
    # operating points (FP/image, sensitivity): (0, .5) (.5, .5) (1, .5) (1, 1) (1.5, 1)
    scores = froc_scores(hits)
    expected = {0.125: 0.5, 0.25: 0.5, 0.5: 0.5, 1: 1.0, 2: 1.0, 4: 1.0, 8: 1.0}
    for rate, value in expected.items():
        assert scores[f"froc@{rate:g}"] == pytest.approx(value)
    assert scores["froc_mean"] == pytest.approx(5.5 / 7)
    curves = detection_curves(preds, targets)
    assert curves["froc"]["fp_per_image"] == pytest.approx([0, 0.5, 1, 1, 1.5])
    assert curves["froc"]["sensitivity"] == pytest.approx([0.5, 0.5, 0.5, 1, 1])
    assert list(curves["pr"]) == ["1"]


def test_froc_hit_threshold_is_configurable() -> None:
    targets = _targets([[_box(0)]])
    preds = [{"boxes": [_box(8)], "scores": [0.9], "labels": [1]}]  # IoU 0.43
    assert detection_scores(preds, targets, num_bootstraps=0)["froc_mean"]["value"] == 0
    loose = detection_scores(preds, targets, num_bootstraps=0, hit_iou=0.4)
    assert loose["froc_mean"]["value"] == pytest.approx(1.0)


def test_image_auroc_counts_healthy_images_as_negatives() -> None:
    targets = _targets([[_box(0)], [_box(0)], [], []])
    preds = [
        {"boxes": [_box(0)], "scores": [0.9], "labels": [1]},
        {"boxes": [_box(40)], "scores": [0.3], "labels": [1]},
        {"boxes": [_box(40)], "scores": [0.5], "labels": [1]},
        {"boxes": [], "scores": [], "labels": []},  # nothing predicted: score 0
    ]
    scores = detection_scores(preds, targets, num_bootstraps=0)
    assert scores["image_auroc"]["value"] == pytest.approx(0.75)  # 3 of 4 pairs ordered


def test_classes_are_named_and_merged() -> None:
    targets = [{"boxes": [_box(0), _box(50)], "labels": [1, 2]}]
    preds = [{"boxes": [_box(0), _box(50)], "labels": [2, 1], "scores": [0.9, 0.8]}]
    scores = detection_scores(preds, targets, num_bootstraps=0, classes=["active", "obsolete"])
    assert scores["ap50/active"]["value"] == 0.0  # every box has the wrong class
    assert scores["ap50"]["value"] == 0.0
    assert scores["agnostic/ap50"]["value"] == pytest.approx(1.0)


def test_bootstrap_interval_brackets_the_value_and_groups_widen_it() -> None:
    rng = np.random.default_rng(0)
    targets, preds = [], []
    for i in range(12):
        box = _box(float(rng.uniform(0, 50)))
        targets.append({"boxes": [box], "labels": [1]})
        shift = 0 if i % 2 else 9  # every other image found at IoU 0.5 (IoU 11/29)
        preds.append({"boxes": [[box[0] + shift, box[1], box[2] + shift, box[3]]], "labels": [1],
                      "scores": [float(rng.uniform())]})
    scores = detection_scores(preds, targets, num_bootstraps=30, seed=1)
    ap50 = scores["ap50"]
    assert ap50["low"] <= ap50["value"] <= ap50["high"]
    assert ap50["high"] - ap50["low"] > 0
    again = detection_scores(preds, targets, num_bootstraps=30, seed=1)
    assert again["ap50"] == ap50  # seeded
    # all images from two patients: the interval spans the two patients' values
    groups = ["a" if i % 2 else "b" for i in range(12)]
    grouped = detection_scores(preds, targets, groups, num_bootstraps=30, seed=1)
    assert grouped["froc_mean"]["low"] == pytest.approx(0.0)
    assert grouped["froc_mean"]["high"] == pytest.approx(1.0)


def test_reused_coco_matching_equals_torchmetrics_on_resampled_images() -> None:
    rng = np.random.default_rng(0)
    preds, targets = [], []
    for _ in range(30):
        n = int(rng.integers(0, 3))
        corner = rng.uniform(0, 200, (n, 2))
        truth = np.c_[corner, corner + rng.uniform(20, 60, (n, 2))]
        extra = int(rng.integers(0, 5))
        corner = rng.uniform(0, 200, (extra, 2))
        shift = np.tile(rng.normal(0, 6, (n, 2)), 2)  # moved, same size
        boxes = np.r_[truth + shift, np.c_[corner, corner + 40]]
        labels = rng.integers(1, 3, n)
        targets.append({"boxes": truth, "labels": labels})
        preds.append({"boxes": boxes, "scores": rng.uniform(size=len(boxes)),
                      "labels": np.r_[labels, rng.integers(1, 3, extra)]})
    p, t = normalise(preds, True), normalise(targets, False)
    reused = CocoEvaluation(p, t)
    assert ap_scores(reused.summary(), None) == pytest.approx(
        ap_scores(coco_summary(p, t), None)  # torchmetrics
    )
    index = rng.integers(0, 30, 30)  # a bootstrap draw: images repeat
    reference = coco_summary([p[i] for i in index], [t[i] for i in index])
    # agrees to about 1e-4 with repeated images (an untraced difference in torchmetrics' input)
    assert ap_scores(reused.summary(index), None) == pytest.approx(
        ap_scores(reference, None), abs=1e-3
    )

"""Per-image detection cases: hits, false positives and the matched fraction; drawn overlays."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from medilab.tasks.detection_cases import draw_case, image_cases, write_cases


def pred(boxes, scores):
    return {"boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
            "scores": np.asarray(scores, np.float32), "labels": np.ones(len(scores), int)}


def truth(boxes):
    return {"boxes": np.asarray(boxes, np.float32).reshape(-1, 4)}


PREDS = [
    pred([[10, 10, 20, 20], [40, 40, 50, 50]], [0.9, 0.6]),  # one hit, one false positive
    pred([[10, 10, 20, 20]], [0.3]),  # below the score: a miss
    pred([], []),  # healthy, nothing found: right
    pred([[0, 0, 5, 5]], [0.8]),  # healthy, one false positive
]
TRUTHS = [truth([[11, 11, 20, 20]]), truth([[10, 10, 20, 20]]), truth([]), truth([])]


def test_hits_false_positives_and_matched():
    cases = image_cases(PREDS, TRUTHS)
    assert cases["hits"].tolist() == [1, 0, 0, 0]
    assert cases["false_positives"].tolist() == [1, 0, 0, 1]
    assert cases["matched"].tolist() == [0.5, 0.0, 1.0, 0.0]
    assert cases["top_score"].tolist() == [0.9, 0.3, 0.0, 0.8]


def test_write_cases_sorts_and_draws_best_and_worst(tmp_path):
    images = []
    for i in range(4):
        path = tmp_path / f"{i}.png"
        Image.fromarray(np.full((60, 80), 40, np.uint8)).save(path)
        images.append(str(path))
    csv = write_cases(tmp_path, "val", images, [f"{i}.png" for i in range(4)], PREDS, TRUTHS)
    cases = pd.read_csv(csv, keep_default_na=False)
    assert cases["image"].tolist() == ["2.png", "0.png", "3.png", "1.png"]  # matched, top score
    assert (cases["overlay"] != "").all()  # 2 best + 2 worst of 4


def test_overlay_draws_truth_green_and_detections_red(tmp_path):
    path = tmp_path / "x.png"
    Image.fromarray(np.zeros((60, 80), np.uint8)).save(path)
    out = draw_case(str(path), [[5, 5, 30, 30]], pred([[40, 20, 70, 50]], [0.9]),
                    tmp_path / "o.png")
    rgb = np.asarray(Image.open(out))
    assert rgb.shape == (60, 80, 3)
    assert tuple(rgb[5, 15]) == (0, 200, 0)  # top edge of the ground-truth box
    assert tuple(rgb[50, 55]) == (255, 0, 0)  # bottom edge of the detection

"""Per-image detection results for a person: which images the detector got right or wrong, and
overlays of the best and worst ones (ground truth green, detections red with their scores)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from medilab.data.formats.pixels import read_array
from medilab.explain.overlay import display_rgb, draw_boxes
from medilab.io.atomic import atomic_path, write_csv
from medilab.tasks.detection_metrics import match_image

MIN_SCORE = 0.5  # detections shown and counted per image
CASES = 3  # best and worst images drawn (as many as the run report shows)
TRUTH_COLOUR, PRED_COLOUR = (0, 200, 0), (255, 0, 0)


def image_cases(preds: Sequence[dict[str, Any]], truths: Sequence[dict[str, Any]],
                min_score: float = MIN_SCORE) -> pd.DataFrame:
    """Per image: ground-truth boxes, how many a detection scoring ≥ ``min_score`` hit
    (IoU ≥ 0.5), false positives at that score, the top score, and ``matched`` = hits /
    (truths + false positives) (1 for a healthy image without a false positive)."""
    rows = []
    for pred, truth in zip(preds, truths, strict=True):
        keep = np.asarray(pred["scores"]) >= min_score
        hits = match_image({"boxes": torch.as_tensor(np.asarray(pred["boxes"])[keep]),
                            "scores": torch.as_tensor(np.asarray(pred["scores"])[keep])},
                           {"boxes": torch.as_tensor(np.asarray(truth["boxes"]))})
        hit, false = int(hits.hits.sum()), int((~hits.hits).sum())
        scores = np.asarray(pred["scores"])
        rows.append({"truth_boxes": hits.num_truths, "hits": hit, "false_positives": false,
                     "top_score": round(float(scores.max()), 4) if scores.size else 0.0,
                     "matched": hit / (hits.num_truths + false) if hits.num_truths + false
                     else 1.0})
    return pd.DataFrame(rows)


def write_cases(run_dir: Path, split: str, images: Sequence[str], names: Sequence[str],
                preds: Sequence[dict[str, Any]], truths: Sequence[dict[str, Any]]) -> Path:
    """``cases_<split>.csv`` (one row per image, best first) and overlays of the ``CASES``
    best and worst images under ``plots/cases_<split>/``; returns the CSV path."""
    cases = image_cases(preds, truths).assign(image=list(names), overlay="")
    cases["order"] = range(len(cases))
    cases = cases.sort_values(["matched", "top_score"], ascending=[False, False], kind="stable")
    best = min(CASES, (len(cases) + 1) // 2)
    picked = list(cases.index[:best]) + list(cases.index[best:][-CASES:])
    folder = run_dir / "plots" / f"cases_{split}"
    for position in picked:
        out = folder / f"{int(cases.at[position, 'order']):04d}_{Path(names[position]).stem}.png"
        draw_case(images[position], truths[position]["boxes"], preds[position], out)
        cases.at[position, "overlay"] = str(out.relative_to(run_dir))
    columns = ["image", "truth_boxes", "hits", "false_positives", "top_score", "matched",
               "overlay"]
    return write_csv(cases[columns].round({"matched": 4}), run_dir / f"cases_{split}.csv")


def draw_case(image: str, truth_boxes: Any, pred: dict[str, Any], out: Path,
              min_score: float = MIN_SCORE) -> Path:
    """The image with its ground-truth boxes (green) and detections ≥ ``min_score`` (red,
    with the score), all in the image's own pixels, as a PNG."""
    rgb = np.ascontiguousarray((display_rgb(read_array(image)) * 255).astype(np.uint8))
    draw_boxes(rgb, np.asarray(truth_boxes, np.float64).reshape(-1, 4), colour=TRUTH_COLOUR)
    keep = np.asarray(pred["scores"]) >= min_score
    draw_boxes(rgb, np.asarray(pred["boxes"]).reshape(-1, 4)[keep],
               [f"{score:.2f}" for score in np.asarray(pred["scores"])[keep]],
               colour=PRED_COLOUR)
    with atomic_path(out, suffix=".png") as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG")
    return out

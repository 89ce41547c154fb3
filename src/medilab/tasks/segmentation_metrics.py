"""Per-image segmentation scores (MONAI Dice / IoU, pixel AUROC, pixel error) and the pooled
Dice over images."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from monai.metrics import compute_dice, compute_iou
from torchmetrics.functional.classification import binary_auroc

MAX_AUC_PIXELS = 200_000
EMPTY_MASK_NOTE = (
    "Dice and IoU per image are computed inside the field of view; an image whose ground-truth "
    "mask of a class is empty scores 1 for that class when the prediction is empty too, else 0 "
    "(MONAI ignore_empty=False)."
)


def image_scores(
    probs: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None,
    with_auc: bool = True, seed: int = 0,
) -> dict[str, float]:
    """Scores of one image from class probabilities ``(K, *S)`` and class indices ``(*S)``:
    ``dice``, ``iou`` (mean over foreground classes; also ``dice_<k>`` for K > 2),
    ``pixel_error`` and, for binary tasks, ``auc`` (foreground probability, at most
    ``MAX_AUC_PIXELS`` pixels sampled with ``seed``). Only pixels where ``valid`` > 0 count."""
    num_classes = probs.shape[0]
    inside = torch.ones_like(target, dtype=torch.bool) if valid is None else valid > 0
    pred = probs.argmax(dim=0)
    onehot_pred = F.one_hot(pred, num_classes).movedim(-1, 0)[None] * inside
    onehot_true = F.one_hot(target, num_classes).movedim(-1, 0)[None] * inside
    dice = compute_dice(onehot_pred, onehot_true, include_background=False, ignore_empty=False)[0]
    iou = compute_iou(onehot_pred, onehot_true, include_background=False, ignore_empty=False)[0]
    count = inside.sum().clamp_min(1)
    scores = {
        "dice": float(dice.mean()),
        "iou": float(iou.mean()),
        "pixel_error": float(((pred != target) & inside).sum() / count),
    }
    if num_classes > 2:
        scores.update({f"dice_{k + 1}": float(v) for k, v in enumerate(dice)})
        scores.update({f"iou_{k + 1}": float(v) for k, v in enumerate(iou)})
    if with_auc and num_classes == 2:
        scores["auc"] = pixel_auc(probs[1][inside], target[inside], seed)
    return scores


def pixel_auc(scores: torch.Tensor, target: torch.Tensor, seed: int = 0) -> float:
    """Binary AUROC over pixels (a seeded sample of ``MAX_AUC_PIXELS`` when there are more);
    NaN when only one class is present."""
    if len(target) > MAX_AUC_PIXELS:
        generator = torch.Generator().manual_seed(seed)
        keep = torch.randperm(len(target), generator=generator)[:MAX_AUC_PIXELS]
        scores, target = scores[keep], target[keep]
    if target.min() == target.max():
        return float("nan")
    return float(binary_auroc(scores.float(), target.long()))


def _finite_mean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else float("nan")


def _pooled_dice(counts: np.ndarray) -> float:
    """Dice of the summed ``(tp, fp, fn)`` rows (one per image)."""
    tp, fp, fn = counts.sum(axis=0)
    return float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else 1.0

"""Detection scores with bootstrap intervals: COCO AP (torchmetrics + pycocotools), FROC and
image-level AUROC from the top box score.

Inputs follow torchvision: ``preds`` is one dict per image with ``boxes`` (N, 4) ``x1, y1, x2,
y2``, ``scores`` (N,) and ``labels`` (N,); ``targets`` one dict per image with ``boxes`` and
``labels`` (labels 1..C; arrays or tensors). Images without boxes are negatives.

Names in the result of :func:`detection_scores`:

- ``map`` (COCO mAP@[.5:.95]), ``ap50``, ``ap40``: mean over classes, 100 detections per image
  (pycocotools, as torchmetrics' ``MeanAveragePrecision`` computes them; :func:`coco_summary`
  is that reference, :class:`CocoEvaluation` the same numbers reused across bootstrap draws);
- ``map/<class>``, ``ap50/<class>``, ``ap40/<class>`` per class, and ``agnostic/map``,
  ``agnostic/ap50``, ``agnostic/ap40`` with every class merged (only when there are 2+ classes);
- ``recall50@1``, ``recall50@10``, ``recall50@100``: recall at IoU 0.5 with that many detections;
- ``froc@<f>``: sensitivity at ``f`` false positives per image (``f`` in :data:`FROC_RATES`;
  class-agnostic; a hit is IoU >= ``hit_iou`` with a not yet hit ground-truth box, checked in
  score order; duplicate hits count as false positives, as in COCO) and ``froc_mean``;
- ``image_auroc``: AUROC of "the image has a box" from the image's top score (0 when nothing is
  predicted).

Each value comes with a percentile bootstrap interval over images, or over patients when
``groups`` is given (:func:`medilab.tasks.bootstrap.bootstrap`). Every bootstrap draw is scored
once for all metrics (the draws repeat for each metric because they share the seed).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from sklearn.metrics import roc_auc_score
from torchmetrics.detection import MeanAveragePrecision
from torchvision.ops import box_convert, box_iou

from medilab.tasks.bootstrap import bootstrap

COCO_IOUS = [round(0.5 + 0.05 * i, 2) for i in range(10)]
AP_IOUS = [0.4, *COCO_IOUS]  # index 0: IoU 0.4, 1: IoU 0.5, 1..10: COCO range
MAX_DETECTIONS = [1, 10, 100]
FROC_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)

Detections = Sequence[dict[str, Any]]


def _as_tensor(value: Any, dtype: torch.dtype, shape: tuple[int, ...] = ()) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(value if value is not None else []), dtype=dtype)
    return tensor.reshape(-1, *shape) if shape else tensor.reshape(-1)


def normalise(images: Detections, with_scores: bool) -> list[dict[str, torch.Tensor]]:
    """CPU tensors: ``boxes`` float (N, 4), ``labels`` int64 and, for predictions, ``scores``."""
    out = []
    for item in images:
        record = {
            "boxes": _as_tensor(item.get("boxes"), torch.float32, (4,)),
            "labels": _as_tensor(item.get("labels"), torch.int64),
        }
        if with_scores:
            record["scores"] = _as_tensor(item.get("scores"), torch.float32)
        out.append(record)
    return out


# ----------------------------------------------------------------------------- COCO AP
def coco_summary(
    preds: list[dict[str, torch.Tensor]], targets: list[dict[str, torch.Tensor]]
) -> dict[str, Any]:
    """pycocotools' precision (T, R, K, A, M) and recall (T, K, A, M) arrays for IoUs
    :data:`AP_IOUS`, through torchmetrics, with the class labels K stands for."""
    metric = MeanAveragePrecision(
        iou_type="bbox", iou_thresholds=AP_IOUS, max_detection_thresholds=MAX_DETECTIONS,
        class_metrics=False, extended_summary=True, backend="pycocotools",
    )
    metric.update(preds, targets)
    result = metric.compute()
    return {"precision": result["precision"].numpy(), "recall": result["recall"].numpy(),
            "classes": result["classes"].reshape(-1).tolist()}


def _coco_dataset(images: list[dict[str, torch.Tensor]], categories: list[int]) -> COCO:
    annotations = []
    for image_id, item in enumerate(images):
        scores = item.get("scores")
        xywh = box_convert(item["boxes"], "xyxy", "xywh").tolist()  # float32, as torchmetrics
        for j, (box, label) in enumerate(zip(xywh, item["labels"].tolist(), strict=True)):
            ann = {"id": len(annotations) + 1, "image_id": image_id, "category_id": int(label),
                   "bbox": box, "area": box[2] * box[3], "iscrowd": 0}
            if scores is not None:
                ann["score"] = float(scores[j])
            annotations.append(ann)
    coco = COCO()
    coco.dataset = {"images": [{"id": i} for i in range(len(images))],
                    "annotations": annotations,
                    "categories": [{"id": c} for c in categories]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


class CocoEvaluation:
    """pycocotools' COCOeval run once per image; a bootstrap draw (image positions, repeats
    allowed) only re-accumulates the stored per-image matches, which is what evaluating the
    resampled list gives, at a fraction of the cost. Same arrays as :func:`coco_summary`
    (area range "all" only)."""

    def __init__(
        self, preds: list[dict[str, torch.Tensor]], targets: list[dict[str, torch.Tensor]]
    ) -> None:
        self.classes = sorted({int(x) for item in (*preds, *targets) for x in item["labels"]})
        self.size = len(targets)
        evaluator = COCOeval(_coco_dataset(targets, self.classes),
                             _coco_dataset(preds, self.classes), "bbox")
        evaluator.params.iouThrs = np.array(AP_IOUS)
        evaluator.params.maxDets = list(MAX_DETECTIONS)
        evaluator.params.areaRng, evaluator.params.areaRngLbl = [[0, 1e10]], ["all"]
        with contextlib.redirect_stdout(io.StringIO()):
            evaluator.evaluate()
        self.evaluator = evaluator
        self.per_image = list(evaluator.evalImgs)  # [class][image]

    def summary(self, index: np.ndarray | None = None) -> dict[str, Any]:
        """precision / recall arrays and classes for the images at positions ``index``."""
        index = np.arange(self.size) if index is None else np.asarray(index)
        ev = self.evaluator
        ev.evalImgs = [self.per_image[k * self.size + int(i)]
                       for k in range(len(ev.params.catIds)) for i in index]
        ev.params.imgIds = ev._paramsEval.imgIds = list(range(len(index)))
        with contextlib.redirect_stdout(io.StringIO()):
            ev.accumulate()
        return {"precision": ev.eval["precision"], "recall": ev.eval["recall"],
                "classes": list(ev.params.catIds)}


def _mean_valid(values: np.ndarray) -> float:
    """Mean of entries > -1 (pycocotools marks 'no ground truth' with -1); NaN when none."""
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else float("nan")


def ap_scores(summary: dict[str, Any], classes: Sequence[str] | None, prefix: str = "") -> dict:
    """``map``, ``ap50``, ``ap40`` (all areas, 100 detections), per class, and recall@IoU 0.5."""
    precision, recall = summary["precision"], summary["recall"]
    if precision.ndim != 5:  # nothing to evaluate
        return {}
    at_100 = precision[:, :, :, 0, -1]  # (T, R, K)
    scores = {
        f"{prefix}map": _mean_valid(at_100[1:]),
        f"{prefix}ap50": _mean_valid(at_100[1]),
        f"{prefix}ap40": _mean_valid(at_100[0]),
    }
    if prefix:
        return scores
    for m, count in enumerate(MAX_DETECTIONS):
        scores[f"recall50@{count}"] = _mean_valid(recall[1, :, 0, m])
    for k, label in enumerate(summary["classes"]):
        name = _class_name(int(label), classes)
        scores[f"map/{name}"] = _mean_valid(at_100[1:, :, k])
        scores[f"ap50/{name}"] = _mean_valid(at_100[1, :, k])
        scores[f"ap40/{name}"] = _mean_valid(at_100[0, :, k])
    return scores


def _class_name(label: int, classes: Sequence[str] | None) -> str:
    if classes is not None and 1 <= label <= len(classes):
        return str(classes[label - 1])
    return str(label)


def agnostic(images: list[dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
    """The same boxes with every label set to 1."""
    return [{**item, "labels": torch.ones_like(item["labels"])} for item in images]


# ----------------------------------------------------------------------------- FROC
@dataclass
class ImageHits:
    """One image's detections in score order: score, whether each one hit, ground-truth count."""

    scores: np.ndarray
    hits: np.ndarray
    num_truths: int


def match_image(pred: dict[str, torch.Tensor], target: dict[str, torch.Tensor],
                hit_iou: float = 0.5) -> ImageHits:
    """Greedy matching in descending score order (class-agnostic): a detection hits the
    not yet hit ground-truth box it overlaps most when that IoU is >= ``hit_iou``."""
    order = torch.argsort(pred["scores"], descending=True, stable=True)
    boxes, scores = pred["boxes"][order], pred["scores"][order].numpy()
    truths = target["boxes"]
    hits = np.zeros(len(scores), bool)
    if len(truths) and len(boxes):
        iou = box_iou(boxes, truths).numpy()
        taken = np.zeros(len(truths), bool)
        for i in range(len(boxes)):
            candidates = np.where(taken, -1.0, iou[i])
            best = int(candidates.argmax())
            if candidates[best] >= hit_iou:
                hits[i], taken[best] = True, True
    return ImageHits(scores, hits, len(truths))


def froc_curve(images: Sequence[ImageHits]) -> tuple[np.ndarray, np.ndarray]:
    """False positives per image and sensitivity at every distinct score threshold."""
    total = sum(im.num_truths for im in images)
    if not images:
        return np.zeros(0), np.zeros(0)
    scores = np.concatenate([im.scores for im in images])
    hits = np.concatenate([im.hits for im in images])
    order = np.argsort(-scores, kind="stable")
    scores, hits = scores[order], hits[order]
    last = np.r_[np.nonzero(np.diff(scores))[0], len(scores) - 1] if len(scores) else []
    true_pos = np.cumsum(hits)[last] if len(scores) else np.zeros(0)
    false_pos = np.cumsum(~hits)[last] if len(scores) else np.zeros(0)
    sensitivity = true_pos / total if total else np.full(len(true_pos), np.nan)
    return np.asarray(false_pos, float) / len(images), np.asarray(sensitivity, float)


def froc_scores(
    images: Sequence[ImageHits], rates: Sequence[float] = FROC_RATES
) -> dict[str, float]:
    """Sensitivity at each false-positive rate (the best operating point not above it; 0 when
    none is) and their mean; NaN without ground-truth boxes."""
    fp_per_image, sensitivity = froc_curve(images)
    if sum(im.num_truths for im in images) == 0:
        values = [float("nan")] * len(rates)
    else:
        values = [
            float(sensitivity[fp_per_image <= rate].max(initial=0.0)) for rate in rates
        ]
    scores = {f"froc@{rate:g}": v for rate, v in zip(rates, values, strict=True)}
    scores["froc_mean"] = float(np.mean(values))
    return scores


# ----------------------------------------------------------------------------- image level
def image_scores(preds: list[dict[str, torch.Tensor]]) -> np.ndarray:
    """Each image's top box score (0 when nothing is predicted)."""
    return np.array([float(p["scores"].max()) if len(p["scores"]) else 0.0 for p in preds])


def image_auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """AUROC of "the image has a box"; NaN when only one kind of image is present."""
    if positive.all() or not positive.any():
        return float("nan")
    return float(roc_auc_score(positive, scores))


# ----------------------------------------------------------------------------- all together
def _score_draw(
    preds: list[dict[str, torch.Tensor]], targets: list[dict[str, torch.Tensor]],
    hits: list[ImageHits], classes: Sequence[str] | None, multiclass: bool,
) -> Callable[[np.ndarray], dict[str, float]]:
    top = image_scores(preds)
    positive = np.array([len(t["boxes"]) > 0 for t in targets])
    per_class = CocoEvaluation(preds, targets)
    merged = CocoEvaluation(agnostic(preds), agnostic(targets)) if multiclass else None

    def score(index: np.ndarray) -> dict[str, float]:
        scores = ap_scores(per_class.summary(index), classes)
        if merged is not None:
            scores.update(ap_scores(merged.summary(index), None, "agnostic/"))
        scores.update(froc_scores([hits[i] for i in index]))
        scores["image_auroc"] = image_auroc(top[index], positive[index])
        return scores

    return score


def detection_scores(
    preds: Detections,
    targets: Detections,
    groups: Sequence[object] | None = None,
    *,
    num_bootstraps: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    classes: Sequence[str] | None = None,
    hit_iou: float = 0.5,
) -> dict[str, dict[str, float]]:
    """``{name: {"value", "low", "high"}}`` for every score listed in the module docstring.

    ``classes[i]`` names label ``i + 1``; ``groups`` (e.g. patient ids, one per image) makes
    the bootstrap resample whole groups. COCO matching runs once per image; each draw only
    re-accumulates (:class:`CocoEvaluation`).
    """
    if len(preds) != len(targets):
        raise ValueError(f"{len(preds)} predictions for {len(targets)} images")
    p, t = normalise(preds, True), normalise(targets, False)
    labels = {int(x) for item in (*p, *t) for x in item["labels"]}
    hits = [match_image(pi, ti, hit_iou) for pi, ti in zip(p, t, strict=True)]
    score = _score_draw(p, t, hits, classes, multiclass=len(labels) > 1)
    cache: dict[bytes, dict[str, float]] = {}

    def cached(index: np.ndarray) -> dict[str, float]:
        key = np.asarray(index, np.int64).tobytes()
        if key not in cache:
            cache[key] = score(index)
        return cache[key]

    names = list(cached(np.arange(len(p))))
    return {
        name: bootstrap(
            lambda index, name=name: cached(index).get(name, float("nan")), len(p),
            groups=groups, num_bootstraps=num_bootstraps, confidence=confidence, seed=seed,
        )
        for name in names
    }


def detection_curves(
    preds: Detections, targets: Detections, *, classes: Sequence[str] | None = None,
    hit_iou: float = 0.5,
) -> dict[str, Any]:
    """Curve data for plots: ``pr`` {class: {recall, precision}} at IoU 0.5 (COCO's 101 recall
    points, 100 detections) and ``froc`` {fp_per_image, sensitivity}."""
    p, t = normalise(preds, True), normalise(targets, False)
    summary = CocoEvaluation(p, t).summary()
    recall_points = np.linspace(0.0, 1.0, 101)
    pr: dict[str, dict[str, list[float]]] = {}
    if summary["precision"].ndim == 5:
        for k, label in enumerate(summary["classes"]):
            precision = summary["precision"][1, :, k, 0, -1]
            keep = precision > -1
            pr[_class_name(int(label), classes)] = {
                "recall": recall_points[keep].tolist(), "precision": precision[keep].tolist(),
            }
    fp_per_image, sensitivity = froc_curve(
        [match_image(pi, ti, hit_iou) for pi, ti in zip(p, t, strict=True)]
    )
    return {"pr": pr, "froc": {"fp_per_image": fp_per_image.tolist(),
                               "sensitivity": sensitivity.tolist()}}

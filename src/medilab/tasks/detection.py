"""Object detection (Lab 5): Faster R-CNN on box tables, scored with COCO AP, recall, FROC and
image-level AUROC (bootstrap intervals over images or patients), boxes in original pixels."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch

from medilab.config import ExperimentConfig
from medilab.data.datamodules.detection import DetectionDataModule, prepare_for_prediction
from medilab.data.formats.pixels import input_image_files, read_array
from medilab.errors import InputFileError, MedilabError
from medilab.io.atomic import write_csv, write_text
from medilab.io.messages import one_line
from medilab.models import create_model
from medilab.models.registry import checkpoint_model_args
from medilab.tasks.base import BaseModule, TaskFamily
from medilab.tasks.detection_cases import write_cases
from medilab.tasks.detection_contract import (
    MOVED_WARMUP_KEYS,
    DetectionWarmup,
    detection_inputs,
    detection_warmup,
)
from medilab.tasks.detection_metrics import detection_curves, detection_scores
from medilab.tasks.detection_module import PREDICTION_COLUMNS, DetectionModule, prediction_frame
from medilab.tasks.registry import register_task

MAX_BOXES_NOTE = "AP and recall use at most 100 boxes per image (COCO)."


@register_task
class DetectionFamily(TaskFamily):
    """Boxes of one or more lesion classes in 2D images (chest X-rays)."""

    name = "detection"
    summary_metrics = ("map", "ap50")
    overlay_legend = ("Ground-truth boxes green; detections scoring ≥ 0.5 red with their score. "
                      "matched: hits (IoU ≥ 0.5) / (ground-truth boxes + false positives).")
    # Faster R-CNN has its own losses; subgroup audits and temperature are classification's
    unused_config_keys = ("loss.name", "evaluation.subgroups", "evaluation.age_bands",
                          "evaluation.temperature_scaling", "evaluation.covariate_fusion")
    config_sections = {"warmup": DetectionWarmup}
    moved_config_keys = MOVED_WARMUP_KEYS  # the option's old place: scheduler:
    export_refusal = ("ONNX / TorchScript export of torchvision Faster R-CNN detectors is not "
                      "supported here")

    def model_args(self, config: ExperimentConfig, datamodule: L.LightningDataModule) -> dict:
        assert isinstance(datamodule, DetectionDataModule)
        data = detection_inputs(config)
        if config.trainer.monitor not in ("val/ap50", "val/map"):
            raise MedilabError(f"trainer.monitor: {config.trainer.monitor!r} is not logged by "
                               "detection runs; use val/ap50 or val/map (monitor_mode: max)")
        args = {"num_classes": len(datamodule.classes), "in_channels": data.channels,
                "min_size": data.size, "max_size": data.size, "classes": datamodule.classes}
        return {**args, **config.model.kwargs}

    def build_module(
        self, config: ExperimentConfig, model_args: dict, *, for_training: bool
    ) -> DetectionModule:
        args = model_args if for_training else checkpoint_model_args(model_args)
        kwargs = {k: v for k, v in args.items() if k != "classes"}
        model = create_model(config.model.name, **kwargs)
        return DetectionModule(config, model, args.get("classes") or ["object"],
                               warmup_steps=detection_warmup(config).steps)

    def prediction_loader(
        self, datamodule: L.LightningDataModule, split: str
    ) -> torch.utils.data.DataLoader:
        assert isinstance(datamodule, DetectionDataModule)
        return datamodule.dataloader(split)

    def score_split(
        self, module: BaseModule, datamodule: L.LightningDataModule, split: str,
        outputs: list[Any], config: ExperimentConfig, run_dir: Path,
    ) -> tuple[pd.DataFrame, dict[str, Any]]:
        assert isinstance(datamodule, DetectionDataModule)
        dataset = datamodule.dataset(split)
        preds = [{"boxes": r["boxes"].numpy(), "scores": r["scores"].numpy(),
                  "labels": r["labels"].numpy()} for batch in outputs for r in batch]
        truths = [{"boxes": b, "labels": lab} for b, lab in
                  zip(dataset.boxes, dataset.labels, strict=True)]
        rows = dataset.manifest
        groups = rows["patient_id"].astype(str).to_numpy() if "patient_id" in rows else None
        evaluation = config.evaluation
        metrics = detection_scores(preds, truths, groups, num_bootstraps=evaluation.
                                   bootstrap_samples, confidence=evaluation.confidence,
                                   seed=config.seed, classes=datamodule.classes)
        curves = detection_curves(preds, truths, classes=datamodule.classes)
        curves["image_scores"] = {
            "score": [float(p["scores"].max()) if len(p["scores"]) else 0.0 for p in preds],
            "positive": [int(len(t["boxes"]) > 0) for t in truths],
        }
        write_text(run_dir / f"curves_{split}.json", json.dumps(curves) + "\n")
        names = [Path(str(p)).name for p in rows["image"]]
        write_cases(run_dir, split, list(rows["image"].astype(str)), names, preds, truths)
        return prediction_frame(preds, names, datamodule.classes), metrics

    def split_size(
        self, datamodule: L.LightningDataModule, split: str, frame: pd.DataFrame
    ) -> int:
        assert isinstance(datamodule, DetectionDataModule)
        return len(datamodule.dataset(split))  # images, not boxes

    def summary(
        self, module: BaseModule, datamodule: L.LightningDataModule, config: ExperimentConfig
    ) -> dict[str, Any]:
        assert isinstance(datamodule, DetectionDataModule)
        grouped = "patient_id" in datamodule.manifest.columns
        return {
            "class_names": datamodule.classes,
            "notes": [
                "Boxes are in the original image's pixels. " + MAX_BOXES_NOTE,
                "froc@k: sensitivity (IoU ≥ 0.5) at k false positives per image; froc_mean "
                "averages 0.125…8. image_auroc: top box score per image (0 without a box), "
                "images without ground-truth boxes are the negatives.",
                "Intervals: percentile bootstrap over "
                + ("patients." if grouped else "images (no patient ids: split by image)."),
            ],
        }

    def predict(
        self, module: BaseModule, config: ExperimentConfig, inputs: Path, out: Path,
        trainer: L.Trainer, **options: Any,
    ) -> Path:
        """``image, label, score, x1, y1, x2, y2, error`` for every box above ``min_score``
        (default 0.05) in original pixels; an image without boxes gets one empty row, an
        unreadable input one row with the reason."""
        assert isinstance(module, DetectionModule)
        data = detection_inputs(config)
        min_score = float(options.get("min_score", 0.05))
        rows = []
        module.eval()
        device = next(module.parameters()).device
        for path in image_files(inputs):
            try:
                raw = read_array(str(path))
                tensor, info = prepare_for_prediction(raw, data.preprocess())
            except Exception as exc:  # noqa: BLE001 - listed with its reason, the rest goes on
                rows.append({"image": path.name, "error": one_line(exc)})
                continue
            with torch.inference_mode():
                output = module([tensor.to(device)])[0]
            keep = output["scores"] >= min_score
            output = {k: v[keep].cpu() for k, v in output.items()}
            frame = prediction_frame([_mapped(output, info)], [path.name], module.classes)
            rows += frame.to_dict("records") or [{"image": path.name}]  # listed, no box
        frame = pd.DataFrame(rows, columns=[*PREDICTION_COLUMNS, "error"])
        frame["error"] = frame["error"].fillna("")
        failed = [r for r in rows if r.get("error")]
        if rows and len(failed) == len(rows):
            raise InputFileError(inputs, f"none of the {len(rows)} image(s) could be read "
                                 f"(first: {failed[0]['image']}: {failed[0]['error']})")
        if failed:
            warnings.warn(f"{len(failed)} of {len(rows)} image(s) could not be read; their "
                          f"rows in {out} say why (error column)", UserWarning, stacklevel=2)
        return write_csv(frame, out)

    def explain(
        self, module: BaseModule, config: ExperimentConfig, inputs: Path, out: Path,
        method: str, **options: Any,
    ) -> list[Path]:
        from medilab.explain import explain_detector, overlay_png

        assert isinstance(module, DetectionModule)
        data = detection_inputs(config)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for path in image_files(inputs):
            raw = read_array(str(path))
            tensor, info = prepare_for_prediction(raw, data.preprocess())
            min_score = options.get("min_score")
            result = explain_detector(module.model, tensor, method,
                                      min_score=0.5 if min_score is None else float(min_score))
            if result.notice:  # the overlay is named for the method really used
                warnings.warn(f"{path.name}: {result.notice} "
                              f"({path.stem}_{result.method}.png)", UserWarning, stacklevel=2)
            inner = _unpad(result.cam, info)
            boxes = _unpad_boxes(result.boxes, info)
            captions = [f"{module.classes[int(k) - 1]} {s:.2f}"
                        for k, s in zip(result.labels, result.scores, strict=True)]
            written.append(overlay_png(raw, inner, out / f"{path.stem}_{result.method}.png",
                                       boxes=boxes, size=info.in_shape, captions=captions,
                                       save_raw=bool(options.get("save_raw")),
                                       title=f"{result.method}: {len(boxes)} box(es) scoring "
                                             f">= {min_score if min_score is not None else 0.5}",
                                       colorbar=True))
        return written


def image_files(inputs: Path) -> list[Path]:
    """One image or DICOM file, or every such file under a folder (sorted)."""
    files = input_image_files(inputs)
    if not files:
        raise InputFileError(inputs, "no image or DICOM files to predict")
    return files


def _mapped(output: dict[str, torch.Tensor], info: Any) -> dict[str, Any]:
    from medilab.data.datamodules.detection import boxes_to_original

    boxes = boxes_to_original(output["boxes"], info, info.in_shape)
    return {"boxes": boxes, "scores": output["scores"].numpy(), "labels": output["labels"].numpy()}


def _unpad(cam: np.ndarray, info: Any) -> np.ndarray:
    """The CAM without the resize padding (it then maps onto the original image)."""
    height, width = info.out_shape
    if cam.shape != (height, width):
        raise MedilabError(f"explain: CAM of shape {cam.shape}, expected {(height, width)}")
    return cam[info.pad_top: height - info.pad_bottom, info.pad_left: width - info.pad_right]


def _unpad_boxes(boxes: np.ndarray, info: Any) -> np.ndarray:
    shifted = np.asarray(boxes, np.float64).reshape(-1, 4).copy()
    shifted[:, 0::2] -= info.pad_left
    shifted[:, 1::2] -= info.pad_top
    return shifted

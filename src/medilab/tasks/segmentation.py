"""Semantic segmentation: the LightningModule (random-patch training, sliding-window inference,
mirror TTA) and the task family (scoring with bootstrap intervals over images, mask and overlay
PNGs, prediction of new images). Loss, metrics and outputs live in the ``segmentation_*``
modules beside this one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from monai.inferers import sliding_window_inference
from torch import nn

from medilab.config import ExperimentConfig
from medilab.data.datamodules import segmentation as seg_data
from medilab.errors import ConfigError, InputFileError
from medilab.io.atomic import write_csv
from medilab.io.images import write_png
from medilab.io.reader import is_image_file
from medilab.models import create_model
from medilab.models.registry import checkpoint_model_args
from medilab.tasks.base import BaseModule, TaskFamily
from medilab.tasks.bootstrap import bootstrap
from medilab.tasks.registry import register_task
from medilab.tasks.segmentation_contract import (
    MOVED_INFERENCE_KEYS,
    SegmentationInference,
    SegmentationInputs,
    check_inference,
    segmentation_inference,
    segmentation_inputs,
)
from medilab.tasks.segmentation_loss import SegmentationLoss
from medilab.tasks.segmentation_metrics import (
    EMPTY_MASK_NOTE,
    MAX_AUC_PIXELS,
    _finite_mean,
    _pooled_dice,
    image_scores,
)
from medilab.tasks.segmentation_outputs import (
    _is_nifti,
    _stem,
    mask_values,
    middle,
    new_image_fov,
    overlay,
)
from medilab.tasks.tta import check_tta_axes, mean_over_flips, mirror_axes, tta_record


# ----------------------------------------------------------------------------- module
class SegmentationModule(BaseModule):
    """Random-patch training, whole-image sliding-window validation; logs ``train/loss``,
    ``val/loss``, ``val/dice``, ``val/iou``."""

    def __init__(
        self, config: ExperimentConfig, model: nn.Module, num_classes: int, in_channels: int,
    ) -> None:
        super().__init__(config, model)
        data = segmentation_inputs(config)
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.spatial_dims = data.spatial_dims
        self.inference = segmentation_inference(config)
        self.roi_size = list(self.inference.roi_size or data.patch_size)
        if len(self.roi_size) != self.spatial_dims:
            raise ConfigError(f"inference.roi_size: {self.roi_size} is not {self.spatial_dims}D")
        self.loss_fn = SegmentationLoss(config.loss.name, num_classes, config.loss.class_weights)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image)

    def infer(self, image: torch.Tensor) -> torch.Tensor:
        """Logits for whole images by MONAI sliding-window inference (roi, overlap, blending
        from the ``inference:`` section)."""
        inference = self.inference
        return sliding_window_inference(
            image, self.roi_size, inference.sw_batch_size, self.model, overlap=inference.overlap,
            mode=inference.blend_mode,
        )

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.loss_fn(self(batch["image"]), batch["mask"], batch["valid"])
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=len(batch["image"]), sync_dist=True)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits = self.infer(batch["image"])
        loss = self.loss_fn(logits, batch["mask"], batch["valid"])
        scores = image_scores(torch.softmax(logits[0], 0), batch["mask"][0], batch["valid"][0],
                              with_auc=False)
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, batch_size=1, sync_dist=True)
        for name in ("dice", "iou"):
            self.log(f"val/{name}", scores[name], on_epoch=True, prog_bar=name == "dice",
                     batch_size=1, sync_dist=True)

    def tta_probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(N, K, *S)`` of whole images ``(N, C, *S)``; with
        ``inference.mirror_tta`` the mean over every combination of flips of the spatial axes
        (``inference.mirror_tta_axes``, default all)."""
        flips = segmentation_flips(self.config, self.spatial_dims)
        return mean_over_flips(lambda x: torch.softmax(self.infer(x).float(), dim=1), batch,
                               flips, dense=True)

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.tta_probabilities(batch["image"]).cpu()

    @torch.inference_mode()
    def probabilities(self, image: np.ndarray) -> np.ndarray:
        """Class probabilities ``(K, *S)`` of one prepared image ``(C, *S)`` (eval mode)."""
        self.eval()
        batch = torch.from_numpy(image)[None].to(self.device)
        return self.tta_probabilities(batch)[0].cpu().numpy()


def _flips_note(flips: list[tuple[int, ...]]) -> str:
    """The end of the inference note: which flips were averaged (mirror TTA)."""
    if len(flips) <= 1:
        return "."
    axes = sorted({axis - 2 for combo in flips for axis in combo})
    return f"; mean over flips of spatial axes {axes} ({len(flips)} views, mirror TTA)."


def segmentation_flips(config: ExperimentConfig, spatial_dims: int) -> list[tuple[int, ...]]:
    """The flips of mirror TTA: ``inference.mirror_tta`` or ``evaluation.tta: flips`` (the
    same averaging; axes from ``evaluation.tta_axes``, else ``inference.mirror_tta_axes``)."""
    inference = segmentation_inference(config)
    evaluation = config.evaluation
    if not (inference.mirror_tta or evaluation.tta == "flips"):
        return [()]
    axes = evaluation.tta_axes if evaluation.tta_axes is not None else inference.mirror_tta_axes
    return mirror_axes(spatial_dims, axes)


# ----------------------------------------------------------------------------- family
@register_task
class SegmentationFamily(TaskFamily):
    """Per-pixel classification of 2D images (or 3D volumes) with U-Net / FCN-8s."""

    name = "segmentation"
    summary_metrics = ("iou", "dice")
    report_plots = ("scores",)
    overlay_legend = ("Overlays: predicted foreground tinted red; ground truth outlined in green "
                      "(just outside its border).")
    export_kind = "dense"
    # subgroup audits and temperature scaling are classification's
    unused_config_keys = ("evaluation.subgroups", "evaluation.age_bands",
                          "evaluation.temperature_scaling", "evaluation.covariate_fusion")
    config_sections = {"inference": SegmentationInference}
    moved_config_keys = MOVED_INFERENCE_KEYS  # the options' old place: data:

    supports_tta = True  # evaluation.tta: flips = inference.mirror_tta

    @classmethod
    def check_config(cls, config: ExperimentConfig) -> None:
        check_inference(config)
        check_tta_axes(config, segmentation_inputs(config).spatial_dims)

    def model_args(self, config: ExperimentConfig, datamodule: L.LightningDataModule) -> dict:
        assert isinstance(datamodule, seg_data.SegmentationDataModule)
        args: dict[str, Any] = {
            "in_channels": datamodule.in_channels, "num_classes": datamodule.num_classes,
        }
        if datamodule.spatial_dims == 3:
            args["spatial_dims"] = 3
        dims = config.model.kwargs.get("spatial_dims", datamodule.spatial_dims)
        if dims != datamodule.spatial_dims:
            raise ConfigError(
                f"model.kwargs.spatial_dims: {dims} but data.spatial_dims is "
                f"{datamodule.spatial_dims}"
            )
        return {**args, **config.model.kwargs}

    def build_module(
        self, config: ExperimentConfig, model_args: dict, *, for_training: bool
    ) -> SegmentationModule:
        args = model_args if for_training else checkpoint_model_args(model_args)
        model = create_model(config.model.name, **args)
        return SegmentationModule(config, model, int(args["num_classes"]),
                                  int(args["in_channels"]))

    def prediction_loader(
        self, datamodule: L.LightningDataModule, split: str
    ) -> torch.utils.data.DataLoader:
        assert isinstance(datamodule, seg_data.SegmentationDataModule)
        return torch.utils.data.DataLoader(
            seg_data.FullImageDataset(datamodule.split_samples(split)), batch_size=1)

    def score_split(
        self, module: BaseModule, datamodule: L.LightningDataModule, split: str,
        outputs: list[Any], config: ExperimentConfig, run_dir: Path,
    ) -> tuple[pd.DataFrame, dict[str, Any]]:
        assert isinstance(module, SegmentationModule)
        assert isinstance(datamodule, seg_data.SegmentationDataModule)
        samples = datamodule.split_samples(split)
        probabilities = [out[0].numpy() for out in outputs]
        frame = self._score_split(module, samples, probabilities, run_dir, config)
        columns = [c for c in frame.columns if c in ("dice", "iou", "auc", "pixel_error")
                   or c.startswith(("dice_", "iou_"))]
        evaluation = config.evaluation
        metrics = {
            column: bootstrap(lambda idx, v=frame[column].to_numpy(float): _finite_mean(v[idx]),
                              len(frame), num_bootstraps=evaluation.bootstrap_samples,
                              confidence=evaluation.confidence, seed=config.seed)
            for column in columns if np.isfinite(frame[column].to_numpy(float)).any()
        }
        if module.num_classes == 2:
            counts = frame[["tp", "fp", "fn"]].to_numpy(float)
            metrics["dice_pooled"] = bootstrap(
                lambda idx: _pooled_dice(counts[idx]), len(frame),
                num_bootstraps=evaluation.bootstrap_samples, confidence=evaluation.confidence,
                seed=config.seed)
        return frame, metrics

    def summary(
        self, module: BaseModule, datamodule: L.LightningDataModule, config: ExperimentConfig
    ) -> dict[str, Any]:
        assert isinstance(module, SegmentationModule)
        return {
            "tta": tta_record(segmentation_flips(config, module.spatial_dims)),
            "class_names": [str(k) for k in range(module.num_classes)],
            "notes": [
                EMPTY_MASK_NOTE,
                "Values are means over images; intervals are percentile bootstraps over images.",
                "auc: pixel-level AUROC of the foreground probability inside the field of view "
                f"(at most {MAX_AUC_PIXELS} pixels sampled per image, seeded); NaN (left out of "
                "the mean) when an image holds a single class.",
                "pixel_error: fraction of field-of-view pixels whose predicted class is wrong.",
                "dice_pooled (binary): one Dice over all images' field-of-view pixels together "
                "(as most DRIVE papers report F1); its interval resamples images.",
                f"Inference: sliding window, roi {module.roi_size}, overlap "
                f"{module.inference.overlap}, {module.inference.blend_mode} blending"
                + _flips_note(segmentation_flips(module.config, module.spatial_dims)),
            ],
        }

    def _score_split(
        self, module: SegmentationModule, samples: list[seg_data.SegSample],
        probabilities: list[np.ndarray], run_dir: Path, config: ExperimentConfig,
    ) -> pd.DataFrame:
        rows = []
        for sample, probs in zip(samples, probabilities, strict=True):
            pred = probs.argmax(axis=0) * (sample.valid > 0)  # nothing is scored outside the FOV
            truth = sample.mask
            scores = image_scores(torch.from_numpy(probs), torch.from_numpy(truth),
                                  torch.from_numpy(sample.valid), seed=config.seed)
            if module.spatial_dims == 3:
                from medilab.io.volumes import write_nifti

                mask_rel = Path("plots/masks") / f"{sample.sample_id}_mask.nii.gz"
                (run_dir / mask_rel).parent.mkdir(parents=True, exist_ok=True)
                write_nifti(run_dir / mask_rel, mask_values(pred, module.num_classes))
            else:
                mask_rel = Path("plots/masks") / f"{sample.sample_id}_mask.png"
                (run_dir / mask_rel).parent.mkdir(parents=True, exist_ok=True)
                write_png(run_dir / mask_rel, mask_values(pred, module.num_classes))
            overlay_rel = Path("plots/overlays") / f"{sample.sample_id}_overlay.png"
            (run_dir / overlay_rel).parent.mkdir(parents=True, exist_ok=True)
            write_png(run_dir / overlay_rel, overlay(
                sample.display, middle(pred, module.spatial_dims),
                middle(truth, module.spatial_dims)))
            inside = sample.valid > 0
            counts = {"tp": int(((pred > 0) & (truth > 0) & inside).sum()),
                      "fp": int(((pred > 0) & (truth == 0) & inside).sum()),
                      "fn": int(((pred == 0) & (truth > 0) & inside).sum())}
            rows.append({"image": Path(sample.path).name, "sample_id": sample.sample_id,
                         **{k: round(v, 6) for k, v in scores.items()}, **counts,
                         "mask": mask_rel.as_posix(), "overlay": overlay_rel.as_posix()})
        return pd.DataFrame(rows)

    def predict(
        self, module: BaseModule, config: ExperimentConfig, inputs: Path, out: Path,
        trainer: L.Trainer, **options: Any,
    ) -> Path:
        """One mask per input image in ``out`` (``<stem>_mask.png``; volumes
        ``<stem>_mask.nii.gz``), plus ``<stem>_prob.png`` (16-bit foreground probability) with
        ``probabilities=True``.

        Runs trained with a field of view (DRIVE) blank predictions outside it, as the report
        does: the FOV comes from ``fov=DIR`` (a mask per image, paired by the run's key rule)
        or is estimated from the image (bright disc on black); ``fov.csv`` in ``out`` says
        which per image."""
        assert isinstance(module, SegmentationModule)
        data = segmentation_inputs(config)
        uses_fov = data.uses_field_of_view
        fov_dir = options.get("fov")
        files = [inputs] if inputs.is_file() else sorted(
            p for p in inputs.iterdir()
            if p.is_file() and is_image_file(p)
        )
        if not files:
            raise InputFileError(inputs, "no image files to predict")
        out.mkdir(parents=True, exist_ok=True)
        fov_rows = []
        for path in files:
            fov, how = (new_image_fov(path, data, fov_dir) if uses_fov
                        and module.spatial_dims == 2 else (None, "none"))
            fov_rows.append({"image": path.name, "fov": how})
            self._predict_one(module, data, path, out, bool(options.get("probabilities")), fov)
        if uses_fov:
            write_csv(pd.DataFrame(fov_rows), out / "fov.csv")
        return out

    def _predict_one(
        self, module: SegmentationModule, data: SegmentationInputs, path: Path, out: Path,
        probabilities: bool, fov: np.ndarray | None = None,
    ) -> None:
        from medilab.io.reader import read_image
        from medilab.io.volumes import write_nifti

        image_data = read_image(path)
        raw = image_data.array
        volume_in_2d = _is_nifti(path) and module.spatial_dims == 2 and raw.ndim == 3
        slices = list(raw) if volume_in_2d else [raw]
        probs = []
        for array in slices:
            image = seg_data.prepare_image(array, data.channels, module.spatial_dims,
                                           data.normalize, path)
            if image.shape[0] != module.in_channels:
                raise InputFileError(
                    path, f"has {image.shape[0]} channel(s) after data.channels="
                    f"{data.channels!r}; the model expects {module.in_channels}"
                )
            probs.append(module.probabilities(image))
        prob = np.stack(probs, axis=1) if volume_in_2d else probs[0]
        if fov is not None:  # nothing is foreground outside the field of view
            prob = prob * fov
            prob[0][~fov] = 1.0
        pred = mask_values(prob.argmax(axis=0), module.num_classes)
        stem = _stem(path)
        if _is_nifti(path) or pred.ndim == 3:  # volumes (any input format) → NIfTI
            affine = image_data.meta.get("affine")
            write_nifti(out / f"{stem}_mask.nii.gz", pred, image_data.spacing,
                        np.asarray(affine) if affine is not None else None)
            if probabilities:
                write_nifti(out / f"{stem}_prob.nii.gz", prob[1:].sum(0).astype(np.float32),
                            image_data.spacing, np.asarray(affine) if affine is not None else None)
            return
        write_png(out / f"{stem}_mask.png", pred)
        if probabilities:
            write_png(out / f"{stem}_prob.png", np.clip(prob[1:].sum(0), 0, 1), bits=16)

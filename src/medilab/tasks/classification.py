"""Image classification: LightningModule, scoring with (patient) bootstrap intervals, subgroup
and calibration audits, and predictions for new inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
import torchmetrics
from torch import nn

from medilab.config import ExperimentConfig
from medilab.data.datamodules.classification import ArrayClassificationDataModule, ArrayImageDataset
from medilab.data.sources.base import get_source
from medilab.errors import InputFileError, MedilabError
from medilab.io.atomic import write_csv
from medilab.models import create_model
from medilab.models.registry import checkpoint_model_args
from medilab.tasks.base import BaseModule, TaskFamily
from medilab.tasks.bootstrap import bootstrap
from medilab.tasks.classification_fusion import (
    CovariateFusion,
    auroc,
    choose_weight,
    fit_covariate_member,
    log_loss,
)
from medilab.tasks.classification_metrics import (
    binary_threshold,
    calibration_summary,
    decisions,
    score_table,
    subgroup_tables,
)
from medilab.tasks.registry import register_task
from medilab.tasks.tta import check_tta_axes, flip_views, mean_over_flips, tta_record

PROBABILITY_DECIMALS = 6  # probabilities as written to the prediction CSVs (and scored)


class ClassificationModule(BaseModule):
    """Cross-entropy training; logs loss, accuracy and macro-F1 per epoch (AUROC for binary)."""

    def __init__(
        self,
        config: ExperimentConfig,
        model: nn.Module,
        num_classes: int,
        input_shape: tuple[int, ...],
        class_names: list[str] | None = None,
        covariate_state: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(config, model)
        self.num_classes = num_classes
        self.input_shape = tuple(input_shape)
        self.class_names = list(class_names or [str(k) for k in range(num_classes)])
        self.covariate_state = covariate_state  # the fitted CovariateEncoder, for prediction
        self.temperature = 1.0  # logits are divided by this at prediction (calibration)
        self.threshold: float | None = None  # binary: predict class 1 where p1 >= threshold
        # fitted on val by evaluation (evaluation.covariate_fusion): blends a covariates-only
        # logistic regression into the predicted probabilities
        self.covariate_fusion: CovariateFusion | None = None
        weights = config.loss.class_weights
        self.loss_fn = nn.CrossEntropyLoss(
            weight=torch.tensor(weights, dtype=torch.float32) if weights else None,
            label_smoothing=config.loss.label_smoothing,
        )
        metrics = {
            "accuracy": torchmetrics.Accuracy("multiclass", num_classes=num_classes),
            "f1_macro": torchmetrics.F1Score("multiclass", num_classes=num_classes,
                                             average="macro"),
        }
        self.train_metrics = torchmetrics.MetricCollection(metrics).clone(prefix="train/")
        metrics["auroc"] = torchmetrics.AUROC("multiclass", num_classes=num_classes)
        self.val_metrics = torchmetrics.MetricCollection(metrics).clone(prefix="val/")

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if "covariates" in batch:
            return self.model(batch["image"], batch["covariates"])
        return self.model(batch["image"])

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self(batch)
        loss = self.loss_fn(logits.float(), batch["label"])
        self.train_metrics.update(logits.float(), batch["label"])
        size = len(batch["label"])
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=size, sync_dist=True)
        return loss

    def on_train_epoch_end(self) -> None:
        self.log_dict(self.train_metrics.compute(), sync_dist=True)
        self.train_metrics.reset()

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits = self(batch).float()
        loss = self.loss_fn(logits, batch["label"])
        self.val_metrics.update(torch.softmax(logits, dim=1), batch["label"])
        size = len(batch["label"])
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, batch_size=size, sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.val_metrics.compute(), prog_bar=True, sync_dist=True)
        self.val_metrics.reset()

    @property
    def backbone(self) -> nn.Module:
        """The image feature extractor (Lightning's BackboneFinetuning freezes this)."""
        if not isinstance(getattr(self.model, "backbone", None), nn.Module):
            raise MedilabError(f"trainer.freeze_backbone_epochs: model "
                               f"{self.config.model.name!r} has no separate backbone")
        return self.model.backbone

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.probabilities(batch).cpu()

    def probabilities(self, batch: dict[str, torch.Tensor], fused: bool = True) -> torch.Tensor:
        """Class probabilities as evaluated and deployed: softmax of logits / temperature,
        averaged over the flips of ``evaluation.tta``, then (``fused``) blended with the
        covariates-only member when evaluation fitted one."""
        covariates = batch.get("covariates")

        def image_probabilities(images: torch.Tensor) -> torch.Tensor:
            logits = self.model(images) if covariates is None else self.model(images, covariates)
            return torch.softmax(logits.float() / self.temperature, dim=1)

        flips = flip_views(self.config, len(self.input_shape) - 1)
        probs = mean_over_flips(image_probabilities, batch["image"], flips)
        if fused and self.covariate_fusion is not None and covariates is not None:
            probs = self.covariate_fusion.fuse(probs, covariates)
        return probs

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """The predicted class of each row of probabilities at the run's operating point
        (binary: class 1 where p1 >= the threshold fitted on val; else the argmax)."""
        return decisions(probs, self.threshold)


def prediction_frame(
    sample_ids: list[str], probs: np.ndarray, labels: np.ndarray | None,
    metadata: pd.DataFrame | None = None, threshold: float | None = None,
) -> pd.DataFrame:
    """``sample_id, [patient_id], [label], prediction, prob_0..prob_{K-1}``; ``prediction``
    is the decision at the operating point (binary: ``prob_1 >= threshold``; else argmax)."""
    frame = pd.DataFrame({"sample_id": sample_ids})
    if metadata is not None and "patient_id" in metadata.columns:
        frame["patient_id"] = metadata["patient_id"].to_numpy()
    if labels is not None:
        frame["label"] = labels
    frame["prediction"] = decisions(probs, threshold)
    for k in range(probs.shape[1]):
        frame[f"prob_{k}"] = probs[:, k].round(PROBABILITY_DECIMALS)
    return frame


def stacked(outputs: list[torch.Tensor]) -> np.ndarray:
    """``Trainer.predict`` batches of probabilities as one (N, K) array."""
    return torch.cat(outputs).float().numpy() if outputs else np.zeros((0, 0), np.float32)


@register_task
class ClassificationFamily(TaskFamily):
    """Classification of whole images (digits, medical images, 2.5D slices, volumes)."""

    name = "classification"
    summary_metrics = ("accuracy", "f1_macro", "auroc")
    report_plots = ("confusion_matrix", "f1_per_class", "roc", "calibration", "scores")
    export_kind = "per_sample"
    onnx_predict = True
    supports_tta = True

    @classmethod
    def check_config(cls, config: ExperimentConfig) -> None:
        dims = getattr(config.data, "spatial_dims", None)
        if isinstance(dims, int):
            check_tta_axes(config, dims)
        elif any(axis > 2 or axis < 0 for axis in config.evaluation.tta_axes or []):
            raise ValueError(f"evaluation.tta_axes {config.evaluation.tta_axes}: spatial axes "
                             "are 0 (rows), 1 (columns) and, for volumes, 2")

    def model_args(self, config: ExperimentConfig, datamodule: L.LightningDataModule) -> dict:
        assert isinstance(datamodule, ArrayClassificationDataModule)
        args: dict[str, Any] = {
            "in_channels": datamodule.in_channels,
            "num_classes": datamodule.num_classes,
            "image_size": list(datamodule.image_size),
            "class_names": datamodule.class_names,
        }
        if datamodule.encoder is not None:
            args["num_covariates"] = datamodule.num_covariates
            args["covariates"] = datamodule.encoder.to_dict()
        return {**args, **config.model.kwargs}

    def build_module(
        self, config: ExperimentConfig, model_args: dict, *, for_training: bool
    ) -> ClassificationModule:
        args = model_args if for_training else checkpoint_model_args(model_args)
        kwargs = {k: v for k, v in args.items() if k not in ("class_names", "covariates")}
        model = create_model(config.model.name, **kwargs)
        return ClassificationModule(
            config,
            model,
            num_classes=int(args["num_classes"]),
            input_shape=(args["in_channels"], *args["image_size"]),
            class_names=args.get("class_names"),
            covariate_state=args.get("covariates"),
        )

    def prediction_loader(
        self, datamodule: L.LightningDataModule, split: str
    ) -> torch.utils.data.DataLoader:
        assert isinstance(datamodule, ArrayClassificationDataModule)
        return datamodule.loader(split)

    def score_split(
        self, module: BaseModule, datamodule: L.LightningDataModule, split: str,
        outputs: list[Any], config: ExperimentConfig, run_dir: Path,
    ) -> tuple[pd.DataFrame, dict[str, Any]]:
        assert isinstance(datamodule, ArrayClassificationDataModule)
        assert isinstance(module, ClassificationModule)
        # scored as written to predictions_<split>.csv (6 decimals), so a recount agrees
        probs = np.round(stacked(outputs).astype(np.float64), PROBABILITY_DECIMALS)
        labels = datamodule.labels(split)
        metadata = datamodule.metadata(split)
        groups = (metadata["patient_id"].astype(str).to_numpy()
                  if metadata is not None and "patient_id" in metadata.columns else None)
        threshold = None
        if probs.shape[1] == 2:
            if split == "val":  # binary: the threshold is chosen on val (scored first) only
                module.threshold = binary_threshold(probs[:, 1], labels)
            threshold = 0.5 if module.threshold is None else module.threshold
        metrics = score_table(probs, labels, groups=groups, threshold=threshold,
                              evaluation=config.evaluation, seed=config.seed)
        subgroups = subgroup_tables(probs, labels, metadata, config.evaluation, seed=config.seed,
                                    threshold=threshold, groups=groups)
        self._audits[split] = {"calibration": calibration_summary(probs, labels),
                               "gap": subgroups.pop("largest_gap", None), "subgroups": subgroups}
        frame = prediction_frame(datamodule.sample_ids(split), probs, labels, metadata,
                                 threshold=threshold)
        if labels is not None:  # the true class by name, beside its index
            frame.insert(list(frame.columns).index("label") + 1, "label_name",
                         [datamodule.class_names[k] for k in labels])
        return frame, metrics

    def held_out_splits(self, datamodule: L.LightningDataModule) -> list[str]:
        """``val`` first: the threshold chosen there applies to the other splits."""
        return sorted(super().held_out_splits(datamodule), key=lambda s: s != "val")

    def evaluate(
        self, module: BaseModule, datamodule: L.LightningDataModule, config: ExperimentConfig,
        run_dir: Path, trainer: L.Trainer,
    ) -> dict[str, Any]:
        assert isinstance(datamodule, ArrayClassificationDataModule)
        assert isinstance(module, ClassificationModule)
        self._audits: dict[str, dict[str, Any]] = {}
        # everything fitted is fitted on val only, from scratch: a test part is scored once
        # with what val chose
        module.temperature, module.threshold, module.covariate_fusion = 1.0, None, None
        fusion = fit_fusion_weights(module, datamodule)
        temperature = None
        if config.evaluation.temperature_scaling and "val" in datamodule.split_names:
            probs = stacked(trainer.predict(module, dataloaders=datamodule.loader("val")))
            temperature = fit_temperature(probs, datamodule.labels("val"))
            module.temperature = temperature
        branches = fit_covariate_fusion(module, datamodule, config, trainer)
        body = super().evaluate(module, datamodule, config, run_dir, trainer)
        body["tta"] = tta_record(flip_views(config, len(module.input_shape) - 1))
        if temperature is not None:
            body["temperature"] = {"value": temperature, "fitted_on": "val (NLL)"}
        if fusion is not None:
            body["fusion_weights"] = fusion
        if branches is not None:
            body["covariate_fusion"] = branches
        if module.num_classes == 2:
            chosen = module.threshold is not None
            body["threshold"] = {
                "value": module.threshold if chosen else 0.5,
                "chosen_on": "val" if chosen else "none (no val split): the default 0.5",
                "rule": "Youden's J (sensitivity + specificity - 1) maximal"
                if chosen else "default",
                "applied_as": "predicted positive where prob_1 >= threshold",
            }
            module.threshold = body["threshold"]["value"]
            body["operating_point"] = operating_point(module, "val" if chosen else "none: default")
        else:
            body["operating_point"] = operating_point(module)
        audits = self._audits
        body["calibration"] = {s: a["calibration"] for s, a in audits.items()}
        if any(a["subgroups"] for a in audits.values()):
            body["subgroups"] = {s: a["subgroups"] for s, a in audits.items() if a["subgroups"]}
            body["subgroup_gaps"] = {s: a["gap"] for s, a in audits.items() if a["gap"]}
        return body

    def fitted_state(self, module: BaseModule) -> dict[str, Any]:
        """Temperature, binary threshold and late-fusion weights in use."""
        assert isinstance(module, ClassificationModule)
        state: dict[str, Any] = {"temperature": module.temperature,
                                 "threshold": module.threshold}
        if hasattr(module.model, "fusion_weights"):
            state["fusion_weights"] = module.model.fusion_weights()
        if module.covariate_fusion is not None:
            state["covariate_fusion"] = module.covariate_fusion.to_dict()
        return state

    def apply_fitted(self, module: BaseModule, state: dict[str, Any]) -> None:
        assert isinstance(module, ClassificationModule)
        module.temperature = float(state.get("temperature") or 1.0)
        threshold = state.get("threshold")
        module.threshold = None if threshold is None else float(threshold)
        if state.get("fusion_weights") and hasattr(module.model, "set_fusion_weights"):
            module.model.set_fusion_weights(state["fusion_weights"])
        covariate = state.get("covariate_fusion")
        module.covariate_fusion = CovariateFusion.from_dict(covariate) if covariate else None

    def summary(
        self, module: BaseModule, datamodule: L.LightningDataModule, config: ExperimentConfig
    ) -> dict[str, Any]:
        assert isinstance(datamodule, ArrayClassificationDataModule)
        has_groups = datamodule.table is not None and "patient_id" in datamodule.table.columns
        names = datamodule.class_names
        return {
            "class_names": names,
            **({"positive_class": names[1]} if len(names) == 2 else {}),
            "notes": [
                "Intervals: percentile bootstrap over "
                + ("patients (all images of a drawn patient kept)." if has_groups
                   else "images."),
            ],
        }

    def predict(
        self, module: BaseModule, config: ExperimentConfig, inputs: Path, out: Path,
        trainer: L.Trainer, **options: Any,
    ) -> Path:
        assert isinstance(module, ClassificationModule)
        source = get_source(config.data.source)
        unlabelled = source.read_unlabelled(config, inputs)
        if unlabelled is not None:  # a pixel table: a Kaggle submission
            return write_submission(module, unlabelled, inputs, out, trainer)
        return source.predict_table(module, config, inputs, out, trainer, **options)

    def explain(
        self, module: BaseModule, config: ExperimentConfig, inputs: Path, out: Path,
        method: str, **options: Any,
    ) -> list[Path]:
        assert isinstance(module, ClassificationModule)
        if options.pop("min_score", None) is not None:
            raise MedilabError("explain: --min-score is for detection runs (the box score "
                               "threshold); a classifier has no boxes")
        return explain_images(module, config, inputs, out, method, **options)


def operating_point(module: ClassificationModule, chosen_on: str = "val") -> str:
    """How ``prediction``, the confusion matrix and every decision metric decide, in words."""
    if module.num_classes == 2 and module.threshold is not None:
        return (f"class {module.class_names[1]!r} where prob_1 >= {module.threshold:.4g} "
                f"(threshold chosen on {chosen_on})")
    return "the class of highest probability (argmax)"


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T minimising the NLL of softmax(log p / T) (temperature scaling)."""
    from scipy.optimize import minimize_scalar

    logits = torch.from_numpy(np.log(np.clip(probs, 1e-12, 1.0)))
    target = torch.from_numpy(np.asarray(labels, dtype=np.int64))

    def nll(log_t: float) -> float:
        return float(nn.functional.cross_entropy(logits / float(np.exp(log_t)), target))

    result = minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded")
    return float(np.exp(result.x))


def fit_fusion_weights(
    module: BaseModule, datamodule: ArrayClassificationDataModule
) -> dict[str, Any] | None:
    """Late fusion: with ``fusion_weights: fitted`` fit the slice weights on ``val``
    (maximum likelihood on the simplex) and use them; return the weights in use, or None for
    models without slice weights."""
    from medilab.models.fusion import fit_late_weights

    model = module.model
    if not hasattr(model, "fusion_weights"):
        return None
    chosen = "learned" if getattr(model, "learned", False) else "fixed"
    if getattr(model, "fit_on_validation", False) and "val" in datamodule.split_names:
        model.eval()
        with torch.inference_mode():
            probs = torch.cat([model.per_slice_probabilities(batch["image"]).float()
                               for batch in datamodule.loader("val")])
        model.set_fusion_weights(fit_late_weights(probs, datamodule.labels("val")))
        chosen = "fitted on val (maximum likelihood)"
    return {"weights": [round(w, 4) for w in model.fusion_weights()], "chosen": chosen}


def explain_images(
    module: ClassificationModule, config: ExperimentConfig, inputs: Path, out: Path,
    method: str, target_class: int | None = None, save_raw: bool = False,
) -> list[Path]:
    """One CAM overlay PNG per input image (``<stem>_<method>.png``) in ``out``."""
    from medilab.explain import explain_classifier, overlay_png

    source = get_source(config.data.source)
    written = []
    out.mkdir(parents=True, exist_ok=True)
    for name, image, display, covariates in source.explain_inputs(
            config, inputs, module.covariate_state, tuple(module.input_shape)):
        probs = class_probabilities(module, image, covariates)
        predicted = int(module.decide(probs[None])[0])  # at the operating point (threshold)
        cam = explain_classifier(module.model, image, method,
                                 target_class=predicted if target_class is None else target_class,
                                 covariates=covariates)
        title = f"{method}: predicted {module.class_names[predicted]} (p {probs[predicted]:.2f})"
        if target_class is not None and target_class != predicted:
            title = (f"{method} of {module.class_names[target_class]}; predicted "
                     f"{module.class_names[predicted]} (p {probs[predicted]:.2f})")
        written.append(overlay_png(display, cam, out / f"{Path(name).stem}_{method}.png",
                                   save_raw=save_raw, title=title, min_size=OVERLAY_MIN_SIZE,
                                   colorbar=True))
    return written


OVERLAY_MIN_SIZE = 256  # CAM overlays of smaller images are enlarged to this (shorter side)


def class_probabilities(module: ClassificationModule, image: torch.Tensor,
                        covariates: torch.Tensor | None) -> np.ndarray:
    """The module's class probabilities (temperature applied) for one (C, ...) image."""
    model = module.model
    device = next(model.parameters()).device
    batch = {"image": image.detach().float().unsqueeze(0).to(device)}
    if covariates is not None:
        batch["covariates"] = torch.as_tensor(covariates, dtype=torch.float32).reshape(1, -1).to(
            device)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        probs = module.probabilities(batch)
    model.train(was_training)
    return probs[0].cpu().numpy()


def write_submission(
    module: ClassificationModule, arrays: Any, inputs: Path, out: Path, trainer: L.Trainer
) -> Path:
    """Kaggle submission ``ImageId,Label`` (ImageId from 1) for an unlabelled pixel table."""
    expected = module.input_shape
    if arrays.image_shape != expected:
        raise InputFileError(
            inputs,
            f"images are {arrays.image_shape[1]}x{arrays.image_shape[2]} pixels, "
            f"the model was trained on {expected[1]}x{expected[2]}",
        )
    dataset = ArrayImageDataset(arrays.images, None, np.arange(len(arrays.images)))
    loader = torch.utils.data.DataLoader(dataset, batch_size=256)
    predictions = module.decide(stacked(trainer.predict(module, dataloaders=loader)))
    frame = pd.DataFrame({"ImageId": np.arange(1, len(predictions) + 1), "Label": predictions})
    return write_csv(frame, out)


def fit_covariate_fusion(
    module: ClassificationModule, datamodule: ArrayClassificationDataModule,
    config: ExperimentConfig, trainer: L.Trainer,
) -> dict[str, Any] | None:
    """``evaluation.covariate_fusion``: fit the covariates-only member on train, choose the
    image weight on val (:mod:`medilab.tasks.classification_fusion`), put the fusion on the
    module and return its metrics.json record: the weight, the val grid, and per held-out split
    the AUROC (with its interval) and log loss of image-only, covariates-only and fused. None
    when off, without covariates or val, or when train holds one class."""
    train = datamodule.split_covariates("train")
    if (config.evaluation.covariate_fusion == "off" or train is None
            or "val" not in datamodule.split_names):
        return None
    fitted = fit_covariate_member(train, datamodule.labels("train"), module.num_classes)
    if fitted is None:
        return None
    coef, intercept = fitted
    module.covariate_fusion = None
    splits = [s for s in datamodule.split_names if s != "train"]
    image = {s: stacked(trainer.predict(module, dataloaders=datamodule.loader(s)))
             .astype(np.float64) for s in splits}
    member = CovariateFusion(0.0, coef, intercept)
    covariate = {s: member.covariate_probabilities(torch.from_numpy(
        datamodule.split_covariates(s))).double().numpy() for s in splits}
    weight, grid = choose_weight(image["val"], covariate["val"], datamodule.labels("val"))
    module.covariate_fusion = CovariateFusion(weight, coef, intercept)
    metadata = {s: datamodule.metadata(s) for s in splits}
    table = {}
    for split in sorted(splits, key=lambda s: s != "test"):  # the held-out part first
        labels = datamodule.labels(split)
        frame = metadata[split]
        groups = (frame["patient_id"].astype(str).to_numpy()
                  if frame is not None and "patient_id" in frame.columns else None)
        probs = {"image": image[split], "covariates": covariate[split],
                 "fused": weight * image[split] + (1 - weight) * covariate[split]}
        table[split] = {name: {"auroc": bootstrap(
            lambda idx, p=p, y=labels: auroc(p[idx], y[idx]), len(labels), groups=groups,
            num_bootstraps=config.evaluation.bootstrap_samples,
            confidence=config.evaluation.confidence, seed=config.seed),
            "log_loss": log_loss(p, labels)} for name, p in probs.items()}
    encoder = datamodule.encoder
    return {
        "weight_image": weight,
        "weight_covariates": round(1.0 - weight, 4),
        "chosen_on": "val (AUROC; ties: log loss)",
        "rule": "p = weight_image · p_image + weight_covariates · p_covariates",
        "covariates_member": "logistic regression (scikit-learn, L2, C=1) on the train split's "
                             "encoded covariates"
                             + (f": {', '.join(encoder.feature_names)}" if encoder else ""),
        "grid": grid,
        "branches": table,
    }
